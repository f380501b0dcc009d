/**
 * Small seeded synthetic classification problems for the logistic/influence unit tests:
 * random sparse rows whose label depends (noisily) on a few features.
 */
import { type CsrMatrix, type SparseVector, toCsr } from "../features.ts";
import { mulberry32 } from "./spam-assassin.ts";

export interface SyntheticOptions {
  /** Most non-zeros per row (at least 1). Default 6. */
  maxNnz?: number;
  /** Fraction of rows given a random label. Default 0.15. */
  noise?: number;
}

export function syntheticProblem(
  rows: number,
  dim: number,
  classes: number,
  seed: number,
  options: SyntheticOptions = {},
): { x: CsrMatrix; y: Int32Array } {
  const maxNnz = options.maxNnz ?? 6;
  const noise = options.noise ?? 0.15;
  const rnd = mulberry32(seed);
  const vecs: SparseVector[] = [];
  const y = new Int32Array(rows);
  for (let r = 0; r < rows; r++) {
    const set = new Map<number, number>();
    const nnz = 1 + Math.floor(rnd() * maxNnz);
    for (let i = 0; i < nnz; i++) set.set(Math.floor(rnd() * dim), rnd() * 2 - 0.5);
    const idx = [...set.keys()].sort((a, b) => a - b);
    vecs.push({ indices: Int32Array.from(idx), values: Float64Array.from(idx.map((j) => set.get(j)!)) });
    const signal = idx.reduce((s, j) => s + (j % classes) * set.get(j)!, 0);
    y[r] = rnd() < noise ? Math.floor(rnd() * classes) : Math.abs(Math.floor(signal * 3)) % classes;
  }
  return { x: toCsr(vecs, dim), y };
}
