import { Rng } from "./rng.ts";

/** One training document: its token ids and who it came from (a contributor, a row id...). */
export interface TrainDocument {
  tokens: ArrayLike<number>;
  /** Opaque owner key; the dataset counts trained tokens per source (fees by tokens trained). */
  source?: string;
}

/** One step's inputs in the layout of `buildTrainGraph` (row-major [batch, seq]). */
export interface TrainBatch {
  batch: number;
  seq: number;
  inputIds: BigInt64Array;
  positionIds: BigInt64Array;
  attnBias: Float32Array;
  labels: BigInt64Array;
  labelWeights: Float32Array;
  /** Label tokens (weight > 0) per document source in this batch. */
  tokensBySource: Map<string, number>;
  /** Label tokens with weight > 0. */
  tokens: number;
}

export interface PackedDatasetOptions {
  seq: number;
  /** Token placed after every document (EOS), so the model learns where a document ends. */
  separator: number;
  /** Seeds the order of windows; epoch e is a fresh permutation drawn from (seed, e). */
  seed: number | string;
}

const NEG = -1e9;

/**
 * Documents concatenated (each followed by the separator) into one token stream, cut into
 * windows of `seq + 1` tokens that overlap by one (inputs = window[0..seq), labels =
 * window[1..seq]), the usual causal-LM packing. The order is a seeded permutation per
 * epoch, and sample i of the whole run is a pure function of (seed, i): a resumed run
 * reads exactly the batches the uninterrupted run would have read, with no iterator state
 * to save.
 */
export class PackedDataset {
  readonly seq: number;
  readonly windows: number;
  readonly totalTokens: number;
  private readonly stream: Int32Array;
  private readonly owner: Int32Array;
  private readonly sources: string[];
  private readonly seed: number | string;
  private readonly perms = new Map<number, Uint32Array>();

  constructor(documents: TrainDocument[], options: PackedDatasetOptions) {
    if (!(options.seq >= 1)) throw new Error("seq must be >= 1");
    this.seq = options.seq;
    this.seed = options.seed;
    const sourceIndex = new Map<string, number>();
    let total = 0;
    for (const d of documents) total += d.tokens.length + 1;
    this.stream = new Int32Array(total);
    this.owner = new Int32Array(total);
    this.sources = [];
    let at = 0;
    for (const d of documents) {
      const key = d.source ?? "";
      let s = sourceIndex.get(key);
      if (s === undefined) {
        s = this.sources.length;
        sourceIndex.set(key, s);
        this.sources.push(key);
      }
      for (let i = 0; i < d.tokens.length; i++) {
        this.stream[at] = d.tokens[i]!;
        this.owner[at++] = s;
      }
      this.stream[at] = options.separator;
      this.owner[at++] = s;
    }
    this.totalTokens = total;
    // The last window may be short; it is padded with zero-weight labels.
    this.windows = total <= 1 ? 0 : Math.ceil((total - 1) / this.seq);
    if (this.windows === 0) throw new Error("dataset has no tokens to train on");
  }

  /** Window index of sample `i` of the run (epoch = floor(i / windows)). */
  sampleWindow(i: number): number {
    const epoch = Math.floor(i / this.windows);
    let perm = this.perms.get(epoch);
    if (!perm) {
      perm = Uint32Array.from({ length: this.windows }, (_, k) => k);
      const rng = new Rng(`${String(this.seed)}:epoch:${epoch}`);
      for (let k = perm.length - 1; k > 0; k--) {
        const j = rng.nextU32() % (k + 1);
        const t = perm[k]!;
        perm[k] = perm[j]!;
        perm[j] = t;
      }
      if (this.perms.size > 4) this.perms.delete(this.perms.keys().next().value!);
      this.perms.set(epoch, perm);
    }
    return perm[i % this.windows]!;
  }

  /**
   * Label tokens per document source that samples `0 … samples − 1` of the run train on (what
   * `batchAt` would count over those steps, without building the batches): the factory prices a
   * job and splits its fee by these before the first step.
   */
  tokensBySourceOfRun(samples: number): Map<string, number> {
    const perWindow: Map<number, number>[] = [];
    const counts = new Map<number, number>();
    for (let i = 0; i < samples; i++) {
      const w = this.sampleWindow(i);
      let c = perWindow[w];
      if (!c) {
        c = new Map();
        const start = w * this.seq;
        const end = Math.min(start + this.seq + 1, this.totalTokens);
        for (let t = start + 1; t < end; t++) {
          const s = this.owner[t]!;
          c.set(s, (c.get(s) ?? 0) + 1);
        }
        perWindow[w] = c;
      }
      for (const [s, n] of c) counts.set(s, (counts.get(s) ?? 0) + n);
    }
    const out = new Map<string, number>();
    for (const [s, n] of [...counts].sort((a, b) => a[0] - b[0])) out.set(this.sources[s]!, n);
    return out;
  }

  /** The batch of training step `step` (samples step·batch … step·batch + batch − 1). */
  batchAt(step: number, batch: number): TrainBatch {
    const windows = Array.from({ length: batch }, (_, j) => this.sampleWindow(step * batch + j));
    return this.batchOf(windows, batch);
  }

  /** A batch of the given windows (padded with empty rows up to `batch`); the loss is the mean over its tokens. */
  batchOf(windows: number[], batch: number): TrainBatch {
    const T = this.seq;
    const b = emptyBatch(batch, T);
    let count = 0;
    const bySource = new Map<number, number>();
    for (let r = 0; r < windows.length; r++) {
      const start = windows[r]! * T;
      const end = Math.min(start + T + 1, this.totalTokens);
      for (let t = 0; start + t < end; t++) b.inputIds[r * T + t] = BigInt(this.stream[start + t]!);
      for (let t = 0; start + t + 1 < end; t++) {
        b.labels[r * T + t] = BigInt(this.stream[start + t + 1]!);
        b.labelWeights[r * T + t] = 1;
        const s = this.owner[start + t + 1]!;
        bySource.set(s, (bySource.get(s) ?? 0) + 1);
        count++;
      }
    }
    if (count > 0) for (let i = 0; i < b.labelWeights.length; i++) b.labelWeights[i]! /= count;
    b.tokens = count;
    for (const [s, n] of bySource) b.tokensBySource.set(this.sources[s]!, n);
    return b;
  }
}

/** A batch of empty rows: causal masks, positions 0..T-1, labels 0 with weight 0. */
export function emptyBatch(batch: number, seq: number): TrainBatch {
  const attnBias = new Float32Array(batch * seq * seq);
  for (let r = 0; r < batch; r++) {
    for (let i = 0; i < seq; i++) {
      for (let j = i + 1; j < seq; j++) attnBias[(r * seq + i) * seq + j] = NEG;
    }
  }
  const positionIds = new BigInt64Array(batch * seq);
  for (let i = 0; i < positionIds.length; i++) positionIds[i] = BigInt(i % seq);
  return {
    batch,
    seq,
    inputIds: new BigInt64Array(batch * seq),
    positionIds,
    attnBias,
    labels: new BigInt64Array(batch * seq),
    labelWeights: new Float32Array(batch * seq),
    tokensBySource: new Map(),
    tokens: 0,
  };
}

/** A batch from explicit token rows (each row: inputs and next-token labels, mean loss). */
export function batchFromRows(rows: ArrayLike<number>[], batch: number, seq: number): TrainBatch {
  const b = emptyBatch(batch, seq);
  let count = 0;
  rows.forEach((row, r) => {
    const n = Math.min(row.length, seq + 1);
    for (let t = 0; t < n; t++) if (t < seq) b.inputIds[r * seq + t] = BigInt(row[t]!);
    for (let t = 0; t + 1 < n; t++) {
      b.labels[r * seq + t] = BigInt(row[t + 1]!);
      b.labelWeights[r * seq + t] = 1;
      count++;
    }
  });
  if (count > 0) for (let i = 0; i < b.labelWeights.length; i++) b.labelWeights[i]! /= count;
  b.tokens = count;
  return b;
}
