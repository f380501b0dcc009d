import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { Worker } from "node:worker_threads";
import type { LoraAdapter } from "./adapter.ts";
import { type LlamaConfig, type LoraModule, parseHfConfig, TINY_CONFIG } from "./config.ts";
import { ModelRuntimeError, type ModelRuntimeErrorCode } from "./errors.ts";
import type { RuntimeOptions, SampledStepRow, StepRow, StepRuntime, StepTimings } from "./runtime.ts";
import { noStepYet } from "./runtime.ts";
import type {
  FromWorker,
  RuntimeWorkerData,
  ToWorker,
  WorkerError,
  WorkerModelSource,
} from "./runtime-worker.ts";
import {
  checkSlotWrite,
  isPreparedAdapter,
  type PreparedAdapter,
  prepareSlotAdapter,
  type SlotLayout,
  slotByteLength,
} from "./slots.ts";

function rebuild(e: WorkerError): Error {
  return e.code !== undefined
    ? new ModelRuntimeError(e.code as ModelRuntimeErrorCode, e.message, e.details)
    : new Error(`model runtime thread: ${e.message}`);
}

/**
 * A `ModelRuntime` on its own worker thread. onnxruntime-node runs `session.run` synchronously
 * on the JS thread that calls it, so a runtime on the main thread blocks HTTP, SSE and
 * admission for a whole step (~0.1-1 s for SmolLM-class models). Here the thread loads the
 * weights itself (the main thread never holds them), steps run there, and the main thread
 * only posts rows and receives logits (one transferred buffer per step) or, with `stepSample`,
 * one token id per row (the sampling runs there too); it schedules and streams meanwhile.
 *
 * Same API as `ModelRuntime` for the serving side (`StepRuntime`): `step` resolves with each
 * row's logits, `release` / `loadAdapter` / `clearSlot` are posted and applied in order, before
 * any later step. Slot writes are validated here (same errors as `ModelRuntime`, synchronously);
 * a `PreparedAdapter` in a SharedArrayBuffer (`AdapterLoadPool` with `shared: true`) reaches the
 * thread without a copy (anything else is copied once on the way), and the thread copies it into
 * the slot's stack entry.
 */
export class WorkerRuntime implements StepRuntime {
  lastTimings: StepTimings = noStepYet();
  readonly #worker: Worker;
  readonly #layout: SlotLayout;
  readonly #slotCount: number;
  readonly #lengths = new Map<string | number, number>();
  readonly #pending = new Map<number, { resolve: (m: FromWorker) => void; reject: (e: Error) => void }>();
  /** Steps the thread has finished (written by the thread with Atomics, readable while this thread is busy). */
  readonly #stepsDone: Int32Array;
  #nextId = 0;
  #dead: Error | null = null;

  private constructor(
    readonly config: LlamaConfig,
    worker: Worker,
    layout: { targetModules: LoraModule[]; rankBuckets: number[]; slots: number },
    stepsDone: Int32Array,
  ) {
    this.#worker = worker;
    this.#stepsDone = stepsDone;
    this.#layout = { targetModules: layout.targetModules, rankBuckets: layout.rankBuckets };
    this.#slotCount = layout.slots;
    worker.on("message", (msg: FromWorker) => {
      if (msg.type === "stepped" || msg.type === "disposed") {
        const p = this.#pending.get(msg.id);
        this.#pending.delete(msg.id);
        p?.resolve(msg);
      } else if (msg.type === "fatal") {
        this.#fail(rebuild(msg.error));
      }
    });
    worker.on("error", (err) => this.#fail(err));
    worker.on("exit", (code) => this.#fail(new Error(`model runtime thread exited (${code})`)));
  }

  /** Starts the thread, which loads the model (a Hugging Face directory, or the tiny model) and builds the session. */
  static async create(
    source: WorkerModelSource,
    options: Omit<RuntimeOptions, "releaseWeights"> = {},
  ): Promise<WorkerRuntime> {
    const config =
      "dir" in source
        ? parseHfConfig(JSON.parse(await readFile(join(source.dir, "config.json"), "utf8")))
        : TINY_CONFIG;
    const stepsDone = new Int32Array(new SharedArrayBuffer(4));
    // The thread is TypeScript, loaded through the process's own `--import tsx` (see the entry file).
    const worker = new Worker(new URL("./runtime-worker-entry.cjs", import.meta.url), {
      workerData: { source, options, stepsDone } satisfies RuntimeWorkerData,
    });
    let onMessage!: (m: FromWorker) => void;
    let onError!: (e: Error) => void;
    let onExit!: (code: number) => void;
    const ready = await new Promise<FromWorker>((resolve, reject) => {
      onMessage = resolve;
      onError = reject;
      onExit = (code) => reject(new Error(`model runtime thread exited (${code}) while starting`));
      worker.once("message", onMessage);
      worker.once("error", onError);
      worker.once("exit", onExit);
    }).finally(() => {
      // Only our own listeners: removeAllListeners() would also drop the port's internal ones.
      worker.off("message", onMessage);
      worker.off("error", onError);
      worker.off("exit", onExit);
    });
    if (ready.type !== "ready") {
      await worker.terminate();
      throw ready.type === "fatal" ? rebuild(ready.error) : new Error("model runtime thread did not start");
    }
    return new WorkerRuntime(
      config,
      worker,
      {
        targetModules: options.targetModules ?? ["q_proj", "k_proj", "v_proj", "o_proj"],
        rankBuckets: [...(options.rankBuckets ?? [16])].sort((a, b) => a - b),
        slots: options.slots ?? 16,
      },
      stepsDone,
    );
  }

  /** Steps the runtime thread has completed so far (read atomically; moves while this thread is blocked). */
  get completedSteps(): number {
    return Atomics.load(this.#stepsDone, 0);
  }

  get slotLayout(): SlotLayout {
    return this.#layout;
  }

  #fail(err: Error): void {
    if (this.#dead) return;
    this.#dead = err;
    for (const p of this.#pending.values()) p.reject(err);
    this.#pending.clear();
  }

  #post(msg: ToWorker, transfer: ArrayBuffer[] = []): void {
    if (this.#dead) throw this.#dead;
    this.#worker.postMessage(msg, transfer);
  }

  #request(msg: ToWorker & { id: number }): Promise<FromWorker> {
    return new Promise((resolve, reject) => {
      if (this.#dead) {
        reject(this.#dead);
        return;
      }
      this.#pending.set(msg.id, { resolve, reject });
      this.#worker.postMessage(msg);
    });
  }

  /** Posts a step (either kind) and records its timings and what it appended to each sequence. */
  async #stepped(
    msg: Extract<ToWorker, { type: "step" | "stepSample" }>,
  ): Promise<Extract<FromWorker, { type: "stepped" }>> {
    const reply = await this.#request(msg);
    if (reply.type !== "stepped") throw new Error("model runtime thread: unexpected reply");
    if (reply.error) throw rebuild(reply.error);
    for (const r of msg.rows) this.#lengths.set(r.seqId, (this.#lengths.get(r.seqId) ?? 0) + r.tokens.length);
    this.lastTimings = reply.timings!;
    return reply;
  }

  async step(rows: StepRow[]): Promise<Float32Array[]> {
    const reply = await this.#stepped({
      type: "step",
      id: this.#nextId++,
      rows: rows.map((r) => ({ seqId: r.seqId, tokens: [...r.tokens], slot: r.slot })),
    });
    const V = this.config.vocabSize;
    const logits = reply.logits!;
    return rows.map((_, i) => logits.subarray(i * V, (i + 1) * V));
  }

  /**
   * A step whose sampling runs on the runtime thread (each sequence's sampler lives there until
   * `release`): only the rows go out and one token id per row comes back — no logits cross
   * threads and this thread does no per-step work over the vocabulary.
   */
  async stepSample(rows: SampledStepRow[]): Promise<Int32Array> {
    const reply = await this.#stepped({
      type: "stepSample",
      id: this.#nextId++,
      // Only the row's own fields (postMessage copies them; a caller's extra fields stay here).
      rows: rows.map((r) => ({
        seqId: r.seqId,
        tokens: r.tokens,
        slot: r.slot,
        ...(r.sample ? { sample: r.sample } : {}),
      })),
    });
    return reply.tokens!;
  }

  release(seqId: string | number): void {
    this.#lengths.delete(seqId);
    this.#post({ type: "release", seqId });
  }

  loadAdapter(slot: number, adapter: LoraAdapter | PreparedAdapter): number {
    const p = isPreparedAdapter(adapter)
      ? adapter
      : prepareSlotAdapter(this.config, this.#layout, adapter, { shared: true });
    checkSlotWrite(this.config, this.#layout, this.#slotCount, slot, p);
    this.#post({ type: "load", slot, rank: p.rank, bucket: p.bucket, buffer: p.buffer });
    return slotByteLength(this.config, this.#layout.targetModules, p.bucket);
  }

  clearSlot(slot: number): void {
    this.#post({ type: "clear", slot });
  }

  hasSequence(seqId: string | number): boolean {
    return this.#lengths.has(seqId);
  }

  sequenceLength(seqId: string | number): number {
    return this.#lengths.get(seqId) ?? 0;
  }

  get activeSequences(): number {
    return this.#lengths.size;
  }

  /** Releases the session and ends the thread. */
  async dispose(): Promise<void> {
    if (this.#dead) {
      await this.#worker.terminate();
      return;
    }
    await this.#request({ type: "dispose", id: this.#nextId++ }).catch(() => undefined);
    this.#dead = new Error("model runtime disposed");
    await this.#worker.terminate();
  }
}
