/**
 * The thread side of `WorkerRuntime`: owns the model's weights (onnxruntime's copy only),
 * the ONNX session, the adapter slots and every sequence's KV cache. onnxruntime-node runs a
 * session synchronously on the calling JS thread, so running it here keeps the main
 * thread's event loop free while a step computes. Messages are handled one at a time, in
 * order (a slot write never lands inside a step).
 */
import { parentPort, workerData } from "node:worker_threads";
import { TINY_CONFIG } from "./config.ts";
import { ModelRuntimeError } from "./errors.ts";
import { generateBaseModel, loadBaseModelDir } from "./model.ts";
import { ModelRuntime, type RuntimeOptions, type SampledStepRow, type StepRow } from "./runtime.ts";
import { type PreparedAdapter, slotViews } from "./slots.ts";

export type WorkerModelSource = { dir: string } | { tiny: true; seed?: number | string };

export interface RuntimeWorkerData {
  source: WorkerModelSource;
  options: Omit<RuntimeOptions, "releaseWeights">;
  /** [0]: steps finished, incremented with Atomics after each step. */
  stepsDone: Int32Array;
}

export type ToWorker =
  | { type: "step"; id: number; rows: StepRow[] }
  | { type: "stepSample"; id: number; rows: SampledStepRow[] }
  | { type: "release"; seqId: string | number }
  | {
      type: "load";
      slot: number;
      rank: number;
      bucket: number;
      buffer: ArrayBuffer | SharedArrayBuffer;
    }
  | { type: "clear"; slot: number }
  | { type: "dispose"; id: number };

export interface WorkerError {
  code?: string;
  message: string;
  details?: Record<string, unknown>;
}

export type FromWorker =
  | { type: "ready" }
  | { type: "fatal"; error: WorkerError }
  | {
      type: "stepped";
      id: number;
      /** rows x vocab, row-major; the buffer is transferred ("step") */
      logits?: Float32Array;
      /** per row, the drawn token or -1 ("stepSample"); the buffer is transferred */
      tokens?: Int32Array;
      timings?: ModelRuntime["lastTimings"];
      error?: WorkerError;
    }
  | { type: "disposed"; id: number };

const toError = (err: unknown): WorkerError =>
  err instanceof ModelRuntimeError
    ? { code: err.code, message: err.message, ...(err.details ? { details: err.details } : {}) }
    : { message: err instanceof Error ? (err.stack ?? err.message) : String(err) };

async function main(): Promise<void> {
  const port = parentPort!;
  const data = workerData as RuntimeWorkerData;
  let rt: ModelRuntime;
  try {
    const model =
      "dir" in data.source
        ? await loadBaseModelDir(data.source.dir, { lazy: true })
        : generateBaseModel(TINY_CONFIG, data.source.seed ?? 1);
    rt = await ModelRuntime.create(model, { ...data.options, releaseWeights: true });
  } catch (err) {
    port.postMessage({ type: "fatal", error: toError(err) } satisfies FromWorker);
    return;
  }
  const c = rt.model.config;
  const modules = rt.targetModules;
  let queue: Promise<void> = Promise.resolve();
  const handle = async (msg: ToWorker): Promise<void> => {
    switch (msg.type) {
      case "step": {
        try {
          const out = await rt.step(msg.rows);
          const logits = new Float32Array(out.length * c.vocabSize);
          out.forEach((l, i) => {
            logits.set(l, i * c.vocabSize);
          });
          Atomics.add(data.stepsDone, 0, 1);
          const reply: FromWorker = { type: "stepped", id: msg.id, logits, timings: rt.lastTimings };
          port.postMessage(reply, [logits.buffer]);
        } catch (err) {
          port.postMessage({ type: "stepped", id: msg.id, error: toError(err) } satisfies FromWorker);
        }
        return;
      }
      case "stepSample": {
        try {
          const tokens = await rt.stepSample(msg.rows);
          Atomics.add(data.stepsDone, 0, 1);
          const reply: FromWorker = { type: "stepped", id: msg.id, tokens, timings: rt.lastTimings };
          port.postMessage(reply, [tokens.buffer as ArrayBuffer]);
        } catch (err) {
          port.postMessage({ type: "stepped", id: msg.id, error: toError(err) } satisfies FromWorker);
        }
        return;
      }
      case "release":
        rt.release(msg.seqId);
        return;
      case "load": {
        // Views over the memory the main thread holds (a SharedArrayBuffer): loadAdapter copies it
        // into the slot's stack entry, once.
        const views = slotViews(c, modules, msg.bucket, msg.buffer);
        const prepared: PreparedAdapter = {
          kind: "prepared",
          rank: msg.rank,
          bucket: msg.bucket,
          targetModules: [...modules],
          a: views.a,
          b: views.b,
          buffer: msg.buffer,
          byteLength: msg.buffer.byteLength,
        };
        rt.loadAdapter(msg.slot, prepared);
        return;
      }
      case "clear":
        rt.clearSlot(msg.slot);
        return;
      case "dispose":
        await rt.dispose();
        port.postMessage({ type: "disposed", id: msg.id } satisfies FromWorker);
        port.close();
        return;
    }
  };
  port.on("message", (msg: ToWorker) => {
    queue = queue
      .then(() => handle(msg))
      .catch((err: unknown) => {
        // Only a bug reaches here (steps report their own errors; loads are validated on the
        // main thread first): say so and keep serving the following messages.
        port.postMessage({ type: "fatal", error: toError(err) } satisfies FromWorker);
      });
  });
  port.postMessage({ type: "ready" } satisfies FromWorker);
}

// Not a top-level await: the thread loads this module with require() (runtime-worker-entry.cjs).
main().catch((err: unknown) => {
  parentPort?.postMessage({ type: "fatal", error: toError(err) } satisfies FromWorker);
});
