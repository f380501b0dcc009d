// Shared by bench/factory.ts and bench/decode-profile.ts: onnxruntime's profiler output, summed per op type.
import { readFileSync } from "node:fs";
import { readdir, unlink } from "node:fs/promises";
import { join } from "node:path";
import { round } from "./peers-common.ts";

interface ProfileEvent {
  cat: string;
  name: string;
  dur: number;
  ts: number;
  args?: { op_name?: string; output_type_shape?: Record<string, number[]>[] };
}

export interface ProfileRow {
  op: string;
  /** kernel time per run, ms */
  ms: number;
  share: number;
  /** nodes of this op type per run */
  nodes: number;
}

export interface OrtProfileSummary {
  runs: number;
  /** onnxruntime's own `model_run` time per run, ms (median over the runs summed) */
  modelRunMs: number;
  /** summed kernel time per run, ms */
  kernelMs: number;
  /** nodes executed per run (an `If`'s branch nodes are counted inside it, not here) */
  nodesPerRun: number;
  ops: ProfileRow[];
  /** The slowest single nodes of the last run: op type, time, output shapes. */
  topNodes: { op: string; ms: number; output: unknown[] }[];
}

/**
 * Reads (and deletes) the profile onnxruntime wrote as `<dir>/<prefix>*.json` and sums the
 * node kernel times of the last `lastRuns` session runs per op type (per run).
 */
export async function summarizeOrtProfile(
  dir: string,
  prefix: string,
  lastRuns = 1,
): Promise<OrtProfileSummary> {
  const file = (await readdir(dir)).find((f) => f.startsWith(prefix) && f.endsWith(".json"));
  if (!file) throw new Error("onnxruntime wrote no profile");
  const events = JSON.parse(readFileSync(join(dir, file), "utf8")) as ProfileEvent[];
  await unlink(join(dir, file));
  const runs = events.filter((e) => e.cat === "Session" && e.name === "model_run").slice(-lastRuns);
  const inRun = (e: ProfileEvent) => runs.some((r) => e.ts >= r.ts && e.ts <= r.ts + r.dur);
  const nodes = events.filter((e) => e.cat === "Node" && e.name.endsWith("_kernel_time") && inRun(e));
  const n = Math.max(1, runs.length);
  const byOp = new Map<string, { us: number; nodes: number }>();
  let total = 0;
  for (const e of nodes) {
    const op = e.args?.op_name ?? "?";
    const row = byOp.get(op) ?? { us: 0, nodes: 0 };
    row.us += e.dur;
    row.nodes++;
    byOp.set(op, row);
    total += e.dur;
  }
  const ops = [...byOp]
    .map(([op, r]) => ({
      op,
      ms: round(r.us / n / 1000, 3),
      share: round(r.us / total, 3),
      nodes: Math.round(r.nodes / n),
    }))
    .sort((a, b) => b.ms - a.ms);
  const last = runs.at(-1);
  const topNodes = nodes
    .filter((e) => !last || e.ts >= last.ts)
    .sort((a, b) => b.dur - a.dur)
    .slice(0, 12)
    .map((e) => ({
      op: e.args?.op_name ?? "?",
      ms: round(e.dur / 1000, 3),
      output: (e.args?.output_type_shape ?? []).map((o) => Object.values(o)[0]),
    }));
  const runMs = runs.map((r) => r.dur / 1000).sort((a, b) => a - b);
  return {
    runs: runs.length,
    modelRunMs: round(runMs[runMs.length >> 1] ?? 0, 3),
    kernelMs: round(total / n / 1000, 3),
    nodesPerRun: Math.round(nodes.length / n),
    ops,
    topNodes,
  };
}
