import { Worker } from "node:worker_threads";
import type { FeatureOptions, IndexStats, LabelledRow } from "@openledger/attribution-core";

export type BuildTask =
  | {
      kind: "span";
      tokenizer: string;
      rows: Array<{ rowId: string; contributionId: string; contributorId: string; text: string }>;
      meta: Record<string, unknown>;
    }
  | {
      kind: "influence";
      rows: LabelledRow[];
      features: FeatureOptions;
      classes: number;
      lambda: number;
      meta: Record<string, unknown>;
    }
  | {
      kind: "lora-gradients";
      /** Base model and adapter directories (the adapter already checked against its content hash). */
      modelDir: string;
      adapterDir: string;
      seq: number;
      rows: Array<{ rowId: string; contributionId: string; contributorId: string; text: string }>;
      meta: Record<string, unknown>;
    };

export type BuildResult =
  | { kind: "span"; chunks: Uint8Array[]; stats: Omit<IndexStats, "meta"> }
  | { kind: "influence"; chunks: Uint8Array[]; onnx: Uint8Array; iterations: number }
  | {
      kind: "lora-gradients";
      chunks: Uint8Array[];
      stats: { rows: number; seq: number; blocks: number; dim: number; tokens: number };
    };

export type BuildThreadMessage =
  | { type: "progress"; phase: string; percent: number }
  | { type: "done"; result: BuildResult }
  | { type: "error"; message: string };

// Workspace code is TypeScript run by tsx: register its loader in the thread, then import the entry.
const TSX_API = import.meta.resolve("tsx/esm/api");
const ENTRY = new URL("./build-thread.ts", import.meta.url).href;
const BOOT = `import(${JSON.stringify(TSX_API)}).then((m) => { m.register(); return import(${JSON.stringify(ENTRY)}); })`;

/** Runs one build in its own worker thread; progress is forwarded; `signal` terminates it. */
export function runBuildTask<K extends BuildTask["kind"]>(
  task: Extract<BuildTask, { kind: K }>,
  options: { onProgress?: (p: { phase: string; percent: number }) => void; signal?: AbortSignal } = {},
): Promise<Extract<BuildResult, { kind: K }>> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(BOOT, { eval: true, workerData: task });
    let settled = false;
    const finish = (fn: () => void) => {
      if (settled) return;
      settled = true;
      options.signal?.removeEventListener("abort", onAbort);
      fn();
      void worker.terminate();
    };
    const onAbort = () => finish(() => reject(options.signal?.reason ?? new Error("build aborted")));
    if (options.signal?.aborted) return onAbort();
    options.signal?.addEventListener("abort", onAbort, { once: true });
    worker.on("message", (m: BuildThreadMessage) => {
      if (m.type === "progress") options.onProgress?.({ phase: m.phase, percent: m.percent });
      else if (m.type === "done") finish(() => resolve(m.result as Extract<BuildResult, { kind: K }>));
      else finish(() => reject(new Error(`build thread failed: ${m.message}`)));
    });
    worker.on("error", (err) => finish(() => reject(err)));
    worker.on("exit", (code) => finish(() => reject(new Error(`build thread exited with code ${code}`))));
  });
}
