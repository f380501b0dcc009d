import type { AdapterCache, CacheMetrics } from "./adapter-cache.ts";
import type { Clock } from "./clock.ts";
import { ServingError } from "./errors.ts";
import type {
  CommitResult,
  CompletionResult,
  InferenceRequest,
  Scheduler,
  SchedulerEvent,
  SchedulerStats,
  StepBatch,
} from "./scheduler.ts";

/**
 * Runs one batched forward step. The gateway implements it with the model runtime:
 * rows carry the device slot (`adapter_index`), the tokens to feed and the KV position;
 * the executor keeps each sequence's KV cache by `seqId` and samples (using the row's
 * `context` for sampling parameters). It must return a token for every row with
 * `sample: true`, and the result for a row must not depend on the other rows (greedy
 * outputs are then identical alone or batched).
 */
export interface StepExecutor<C = unknown> {
  step(batch: StepBatch<C>): Promise<ReadonlyMap<string, number>> | ReadonlyMap<string, number>;
  /** Drop the KV caches of these sequences (finished, cancelled or preempted). */
  release(seqIds: readonly string[]): void;
}

export interface StepStats {
  step: number;
  prefillRows: number;
  decodeRows: number;
  /** Tokens fed through the model this step. */
  tokens: number;
  /** Tokens sampled (emitted or stop tokens). */
  sampled: number;
  /** Distinct adapters among the rows (the base model not counted). */
  distinctAdapters: number;
  startedAt: number;
  durationMs: number;
}

export interface EngineTotals {
  steps: number;
  rows: number;
  tokens: number;
  sampled: number;
  /** Sum over steps of distinct adapters (divide by `steps` for the mean). */
  distinctAdapters: number;
  busyMs: number;
}

export interface EngineMetrics {
  scheduler: SchedulerStats;
  cache: CacheMetrics;
  totals: EngineTotals;
}

export interface EngineOptions<C, W> {
  scheduler: Scheduler<C, W>;
  cache: AdapterCache<W>;
  executor: StepExecutor<C>;
  clock: Clock;
  onStep?: (stats: StepStats) => void;
  onFinished?: (result: CompletionResult) => void;
  /** Unexpected errors of the background loop (a bug); the loop stops after reporting. */
  onError?: (error: unknown) => void;
}

export interface SubmitOptions {
  /** Called synchronously for every token, before async iterators see it. */
  onToken?: (token: number, index: number) => void;
}

/**
 * A submitted request. Iterate it for tokens (the iteration throws the ServingError if
 * the request ends with reason "error"); `result` always resolves, whatever the outcome.
 */
export interface RequestHandle extends AsyncIterable<number> {
  readonly id: string;
  readonly result: Promise<CompletionResult>;
  cancel(): void;
}

interface HandleState {
  readonly tokens: number[];
  done: CompletionResult | undefined;
  /** Iterators waiting for the next token (a handle may be iterated more than once). */
  readonly waiters: (() => void)[];
  readonly onToken: ((token: number, index: number) => void) | undefined;
  readonly resolve: (r: CompletionResult) => void;
}

/**
 * The engine loop: schedule -> release KV -> execute -> commit -> stream, while there is
 * work; sleeps when nothing is runnable and wakes on submit, cancel or an adapter
 * becoming resident. Adapter loads run concurrently with steps (they are promises the
 * loop never awaits), which is how a cold adapter never stalls warm rows.
 */
export class Engine<C = unknown, W = unknown> {
  readonly #scheduler: Scheduler<C, W>;
  readonly #cache: AdapterCache<W>;
  readonly #executor: StepExecutor<C>;
  readonly #clock: Clock;
  readonly #onStep: ((s: StepStats) => void) | undefined;
  readonly #onFinished: ((r: CompletionResult) => void) | undefined;
  readonly #onError: ((e: unknown) => void) | undefined;
  readonly #handles = new Map<string, HandleState>();
  readonly #totals: EngineTotals = {
    steps: 0,
    rows: 0,
    tokens: 0,
    sampled: 0,
    distinctAdapters: 0,
    busyMs: 0,
  };
  #wakeup: (() => void) | undefined;
  #woken = false;
  #loop: Promise<void> | undefined;
  #closing = false;

  constructor(options: EngineOptions<C, W>) {
    this.#scheduler = options.scheduler;
    this.#cache = options.cache;
    this.#executor = options.executor;
    this.#clock = options.clock;
    this.#onStep = options.onStep;
    this.#onFinished = options.onFinished;
    this.#onError = options.onError;
    this.#cache.addListener({ onChange: () => this.#wake() });
  }

  /**
   * Queue a request. Throws a ServingError synchronously when it is refused
   * (validation, limits, rate limit, queue full, shutting down): nothing was queued.
   */
  submit(request: InferenceRequest<C>, options: SubmitOptions = {}): RequestHandle {
    if (this.#closing) throw new ServingError("shutting_down", "the engine is shutting down");
    this.#scheduler.submit(request);
    let resolve!: (r: CompletionResult) => void;
    const result = new Promise<CompletionResult>((r) => {
      resolve = r;
    });
    const state: HandleState = {
      tokens: [],
      done: undefined,
      waiters: [],
      onToken: options.onToken,
      resolve,
    };
    this.#handles.set(request.id, state);
    this.#wake();
    const id = request.id;
    return {
      id,
      result,
      cancel: () => {
        this.cancel(id);
      },
      [Symbol.asyncIterator]: () => iterate(state),
    };
  }

  /** Cancel (client went away): the request leaves the queue or batch at the next step. */
  cancel(id: string): boolean {
    const ok = this.#scheduler.cancel(id, "cancelled");
    if (ok) this.#wake();
    return ok;
  }

  /** Finish with reason "stop" (the gateway matched a text stop sequence). */
  stop(id: string): boolean {
    const ok = this.#scheduler.cancel(id, "stop");
    if (ok) this.#wake();
    return ok;
  }

  /** Run the loop in the background until `close()`. */
  start(): void {
    if (this.#loop !== undefined) throw new Error("engine already running");
    this.#loop = this.#run(false).catch((e: unknown) => {
      if (this.#onError !== undefined) this.#onError(e);
      else throw e;
    });
  }

  /** Run until no request is left (tests, benchmarks, batch jobs). */
  async runUntilIdle(): Promise<void> {
    if (this.#loop !== undefined) throw new Error("engine loop already running");
    this.#loop = this.#run(true);
    try {
      await this.#loop;
    } finally {
      this.#loop = undefined;
    }
  }

  /** Stop: pending requests finish with `shutting_down`; resolves when the loop has exited. */
  async close(): Promise<void> {
    this.#closing = true;
    this.#scheduler.failAll(new ServingError("shutting_down", "the engine is shutting down"));
    this.#wake();
    const loop = this.#loop;
    if (loop !== undefined) await loop;
    else await this.#run(true);
  }

  metrics(): EngineMetrics {
    return { scheduler: this.#scheduler.stats(), cache: this.#cache.metrics(), totals: { ...this.#totals } };
  }

  async #run(untilIdle: boolean): Promise<void> {
    for (;;) {
      // Let I/O callbacks run between steps (adapter loads finishing, client disconnects,
      // new HTTP requests): with an executor that completes synchronously or on the
      // microtask queue, a tight loop would otherwise starve them until the queue drains.
      await yieldToEventLoop();
      if (!this.#scheduler.hasWork()) {
        if (untilIdle || this.#closing) return;
        await this.#sleep();
        continue;
      }
      const plan = this.#scheduler.schedule();
      if (plan.release.length > 0) this.#executor.release(plan.release);
      this.#dispatch(plan.events);
      const rows = plan.batch.prefill.length + plan.batch.decode.length;
      if (rows === 0) {
        if (this.#scheduler.hasWork()) await this.#sleep(); // waiting for adapter loads
        continue;
      }
      const startedAt = this.#clock.now();
      let out: CommitResult;
      try {
        const next = await this.#executor.step(plan.batch);
        out = this.#scheduler.commit(plan, next);
      } catch (cause) {
        const error =
          cause instanceof ServingError
            ? cause
            : new ServingError("executor_failed", `model step failed: ${describe(cause)}`, { cause });
        out = this.#scheduler.abort(plan, error);
      }
      if (out.release.length > 0) this.#executor.release(out.release);
      const stats = stepStats(plan.batch, startedAt, this.#clock.now());
      this.#totals.steps += 1;
      this.#totals.rows += stats.prefillRows + stats.decodeRows;
      this.#totals.tokens += stats.tokens;
      this.#totals.sampled += stats.sampled;
      this.#totals.distinctAdapters += stats.distinctAdapters;
      this.#totals.busyMs += stats.durationMs;
      this.#onStep?.(stats);
      this.#dispatch(out.events);
    }
  }

  #dispatch(events: readonly SchedulerEvent[]): void {
    for (const e of events) {
      const h = this.#handles.get(e.id);
      if (h === undefined) continue;
      if (e.type === "token") {
        h.tokens.push(e.token);
        h.onToken?.(e.token, e.index);
      } else {
        h.done = e.result;
        this.#handles.delete(e.id);
        h.resolve(e.result);
        this.#onFinished?.(e.result);
      }
      for (const wake of h.waiters.splice(0)) wake();
    }
  }

  #sleep(): Promise<void> {
    if (this.#woken) {
      this.#woken = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      this.#wakeup = () => {
        this.#wakeup = undefined;
        this.#woken = false;
        resolve();
      };
    });
  }

  #wake(): void {
    this.#woken = true;
    this.#wakeup?.();
  }
}

function stepStats<C>(batch: StepBatch<C>, startedAt: number, endedAt: number): StepStats {
  const adapters = new Set<string>();
  let tokens = 0;
  let sampled = 0;
  for (const row of batch.rows) {
    tokens += row.tokens.length;
    if (row.sample) sampled += 1;
    if (row.adapterId !== null) adapters.add(row.adapterId);
  }
  return {
    step: batch.step,
    prefillRows: batch.prefill.length,
    decodeRows: batch.decode.length,
    tokens,
    sampled,
    distinctAdapters: adapters.size,
    startedAt,
    durationMs: endedAt - startedAt,
  };
}

async function* iterate(state: HandleState): AsyncGenerator<number> {
  let i = 0;
  for (;;) {
    while (i < state.tokens.length) yield state.tokens[i++] as number;
    const done = state.done;
    if (done !== undefined) {
      if (done.reason === "error" && done.error !== undefined) throw done.error;
      return;
    }
    await new Promise<void>((resolve) => {
      state.waiters.push(resolve);
    });
  }
}

function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

function describe(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
