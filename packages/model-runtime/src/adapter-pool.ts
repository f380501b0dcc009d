import { stat } from "node:fs/promises";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import { threadId } from "node:worker_threads";
import { Piscina } from "piscina";
import type { LoadReply, LoadTask } from "./adapter-load-worker.ts";
import type { LlamaConfig } from "./config.ts";
import { ModelRuntimeError, type ModelRuntimeErrorCode } from "./errors.ts";
import { loadSlotAdapter } from "./slot-file.ts";
import { type PreparedAdapter, type SlotLayout, slotViews } from "./slots.ts";

export interface AdapterLoadPoolOptions {
  /** Worker threads (default: 2, or 1 on a one-core machine). */
  threads?: number;
  /**
   * Adapters whose weights file is smaller than this are decoded on the calling thread
   * (default 1 MiB; 0 = always on a worker). For a small file the thread hop costs more
   * than the decode (~0.1 ms for a 65 KB tiny-model adapter), and on a busy machine the
   * worker may wait to be scheduled; a 7.4 MB SmolLM adapter takes tens of ms to decode.
   */
  inlineBelowBytes?: number;
  /**
   * Lay adapters out in SharedArrayBuffers (default false), so a `WorkerRuntime` on another
   * thread stores the same memory the RAM tier holds instead of a copy.
   */
  shared?: boolean;
  /**
   * Read and write adapters' slot files (default true; slot-file.ts): after its first load an
   * adapter loads with one read. false: decode the PEFT files every time, write nothing.
   */
  slotFiles?: boolean;
}

/**
 * Loads PEFT adapters on worker threads (piscina): file read, validation, f16/bf16
 * widening and the transpose into slot layout all happen off the main thread (after an
 * adapter's first load, one read of its slot file: slot-file.ts), and the
 * result comes back as one transferred ArrayBuffer (no copy), ready for
 * `ModelRuntime.loadAdapter` to store by reference. The main thread only wraps views
 * around it, so decode steps keep running while adapters load.
 */
export class AdapterLoadPool {
  readonly #pool: Piscina;
  readonly #config: LlamaConfig;
  readonly #layout: SlotLayout;
  readonly #inlineBelow: number;
  readonly #shared: boolean;
  readonly #slotFiles: boolean;
  #closed = false;
  /** Loads decoded on a worker thread, and on the calling thread (small files). */
  offThreadLoads = 0;
  inlineLoads = 0;
  /** Loads read from the adapter's slot file (one read), and decoded from its PEFT files (slot-file.ts). */
  slotFileLoads = 0;
  peftLoads = 0;

  constructor(config: LlamaConfig, layout: SlotLayout, options: AdapterLoadPoolOptions = {}) {
    const threads = options.threads ?? Math.min(2, availableParallelism());
    if (!Number.isInteger(threads) || threads < 1) throw new RangeError("threads must be an integer >= 1");
    this.#config = config;
    this.#inlineBelow = options.inlineBelowBytes ?? 1 << 20;
    this.#shared = options.shared ?? false;
    this.#slotFiles = options.slotFiles ?? true;
    this.#layout = { targetModules: [...layout.targetModules], rankBuckets: [...layout.rankBuckets] };
    // The worker is TypeScript: it runs through the same loader as this process
    // (`node --import tsx` passes its execArgv on to worker threads).
    this.#pool = new Piscina({
      filename: new URL("./adapter-load-worker.ts", import.meta.url).href,
      minThreads: threads,
      maxThreads: threads,
      idleTimeout: Number.POSITIVE_INFINITY,
    });
  }

  get threads(): number {
    return this.#pool.threads.length;
  }

  /**
   * Starts every worker and loads its code (the first task otherwise pays ~1 s of
   * thread start-up and TypeScript compilation), so the first cold adapter is not slower.
   */
  async warmUp(): Promise<void> {
    const warm: LoadTask = { config: this.#config, targetModules: [], rankBuckets: [] };
    await Promise.all(Array.from({ length: this.threads }, () => this.#pool.run(warm)));
  }

  /**
   * Reads the adapter in `dir` in slot layout: from its slot file, or decoded from its PEFT
   * files (then the slot file is written into `dir`). Throws ModelRuntimeError on bad files.
   */
  async load(dir: string): Promise<PreparedAdapter> {
    if (this.#closed) throw new Error("adapter load pool is closed");
    if (this.#inlineBelow > 0) {
      // A file that cannot be stat'ed goes to the worker, which reports the proper error.
      const size = await stat(join(dir, "adapter_model.safetensors")).then(
        (s) => (s.isFile() ? s.size : Number.POSITIVE_INFINITY),
        () => Number.POSITIVE_INFINITY,
      );
      if (size < this.#inlineBelow) {
        const { adapter, source } = await loadSlotAdapter(this.#config, this.#layout, dir, {
          shared: this.#shared,
          slotFiles: this.#slotFiles,
        });
        this.inlineLoads += 1;
        this.#count(source);
        return adapter;
      }
    }
    const task: LoadTask = {
      dir,
      config: this.#config,
      targetModules: [...this.#layout.targetModules],
      rankBuckets: [...this.#layout.rankBuckets],
      shared: this.#shared,
      slotFiles: this.#slotFiles,
    };
    const reply = (await this.#pool.run(task)) as LoadReply;
    if (!reply.ok) {
      if (reply.code !== undefined) {
        throw new ModelRuntimeError(reply.code as ModelRuntimeErrorCode, reply.message, reply.details);
      }
      throw new Error(`adapter load failed: ${reply.message}`);
    }
    if (reply.threadId !== threadId) this.offThreadLoads += 1;
    this.#count(reply.source);
    const views = slotViews(this.#config, this.#layout.targetModules, reply.bucket, reply.buffer);
    return {
      kind: "prepared",
      rank: reply.rank,
      bucket: reply.bucket,
      targetModules: [...this.#layout.targetModules],
      a: views.a,
      b: views.b,
      buffer: reply.buffer,
      byteLength: reply.buffer.byteLength,
    };
  }

  #count(source: "slot-file" | "peft"): void {
    if (source === "slot-file") this.slotFileLoads += 1;
    else this.peftLoads += 1;
  }

  /** Ends the worker threads; loads not finished by then are rejected. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#pool.close({ force: true });
  }
}
