import type { AdapterCache, AdapterTier } from "./adapter-cache.ts";
import type { Clock } from "./clock.ts";
import { BASE_SLOT } from "./device-slots.ts";
import { ServingError } from "./errors.ts";
import { AccountRateLimiter, type AccountRateLimits } from "./rate-limit.ts";

export type FinishReason =
  /** A stop token was sampled, or the caller called `stop` (e.g. a text stop sequence matched). */
  | "stop"
  /** max new tokens reached. */
  | "length"
  /** The caller cancelled (client disconnected). */
  | "cancelled"
  /** See `error`. */
  | "error";

export interface InferenceRequest<C = unknown> {
  /** Unique among live requests. */
  id: string;
  /** The paying account (tenant); fairness and rate limits are per account. */
  account: string;
  /** Adapter to run, or null for the base model. */
  adapterId: string | null;
  promptTokens: readonly number[];
  maxNewTokens: number;
  /** Order among this account's own requests: higher first (default 0). Never across accounts. */
  priority?: number;
  /** Sampling one of these ends the sequence with "stop"; the token is not part of the output. */
  stopTokenIds?: readonly number[];
  /** Opaque, handed to the executor on every row of this sequence (sampling parameters...). */
  context?: C;
}

export interface RequestTimings {
  queuedAt: number;
  /** First admission into the running batch. */
  admittedAt: number | undefined;
  firstTokenAt: number | undefined;
  finishedAt: number | undefined;
  /**
   * The same moments counted in scheduler steps (`schedule()` calls; the step that was last
   * planned when the request arrived, the step that admitted it, the step that sampled its
   * first token): what a wait costs in steps does not depend on how fast the machine is.
   */
  queuedStep: number;
  admittedStep: number | undefined;
  firstTokenStep: number | undefined;
  /** Where the request's adapter was when it arrived (see AdapterTier). */
  adapterTier: AdapterTier;
}

export interface CompletionResult {
  id: string;
  account: string;
  adapterId: string | null;
  reason: FinishReason;
  error: ServingError | undefined;
  outputTokens: number[];
  promptTokens: number;
  completionTokens: number;
  timings: RequestTimings;
  /** Times this sequence was preempted (recomputed) to respect the KV budget. */
  preemptions: number;
}

export type SchedulerEvent =
  | { type: "token"; id: string; token: number; index: number }
  | { type: "finished"; id: string; result: CompletionResult };

/** One row of a batched step. */
export interface StepRow<C = unknown> {
  seqId: string;
  adapterId: string | null;
  /** Device slot holding the adapter (BASE_SLOT = no adapter). Goes into `adapter_index`. */
  slot: number;
  /** Tokens to feed now: a prompt chunk (prefill) or the last sampled token (decode). */
  tokens: readonly number[];
  /** Tokens already in this sequence's KV cache (the position of `tokens[0]`). */
  position: number;
  /** True when the row reaches the end of the sequence: the executor must return its next token. */
  sample: boolean;
  context: C | undefined;
}

export interface StepBatch<C = unknown> {
  step: number;
  /**
   * Every row, in admission order of the sequences. The order is stable from step to step
   * while the membership does not change, which lets a runtime keep its batched KV cache
   * resident (model-runtime reuses it when the same sequences come in the same order).
   */
  rows: StepRow<C>[];
  /** The same rows split by kind (views for stats and executors that care). */
  prefill: StepRow<C>[];
  decode: StepRow<C>[];
}

export interface StepPlan<C = unknown> {
  batch: StepBatch<C>;
  /** Sequences whose KV cache the executor must drop (cancelled, failed or preempted). */
  release: string[];
  /** Finishes decided while planning (cancellations, adapter failures). */
  events: SchedulerEvent[];
}

export interface CommitResult {
  events: SchedulerEvent[];
  /** Finished sequences whose KV cache the executor must drop. */
  release: string[];
}

export interface SchedulerOptions {
  /** Tokens fed through the model per step (prefill chunks + decode rows). */
  maxBatchTokens: number;
  /** Sequences in the running batch; must be <= maxBatchTokens so every decode fits. */
  maxRunningSequences: number;
  maxPromptTokens: number;
  /** Upper bound on a request's max new tokens. */
  maxNewTokens: number;
  /** prompt + max new tokens per request; default maxPromptTokens + maxNewTokens. */
  maxContextTokens?: number;
  /** Sum of context lengths held in KV caches by running sequences; default unlimited. */
  maxKvTokens?: number;
  /** Split long prompts over several steps (default true). Off: a prompt is prefilled in one step. */
  chunkedPrefill?: boolean;
  /**
   * Prompt tokens one step may feed, counted like maxBatchTokens (see costModel) over the
   * step's prefill rows only (default maxBatchTokens: no limit beyond it). The per-step
   * prefill budget of chunked prefill (vLLM's `max_num_batched_tokens`, Sarathi-Serve's
   * token budget): a long prompt is split into chunks of at most this, and a burst of
   * arrivals into several steps, so no step is long (an arrival waits behind short steps, not
   * behind a long prompt's whole prefill). Independent of maxBatchTokens so it can sit below
   * maxRunningSequences (every running sequence's decode row must still fit a step). It costs
   * steps where prompts are short: bench/RESULTS.md, "Gateway", has the gateway's A/B.
   */
  maxPrefillTokens?: number;
  /**
   * How a step's cost is counted against maxBatchTokens:
   * - "tokens" (default): the sum of the rows' tokens (runtimes with ragged batches);
   * - "padded": rows x the longest row, for runtimes that pad every row of a step to the
   *   longest one (the model-runtime ONNX graph does): a long prefill chunk next to 63
   *   decode rows would cost 64 x chunk, so chunks shrink as the batch grows.
   */
  costModel?: "tokens" | "padded";
  /**
   * "mixed" (default): prefill chunks ride along with decode rows in one step.
   * "separate": a step is either prefill rows or decode rows; with decodes pending,
   * prefill steps alternate with decode steps so neither starves.
   */
  prefillMode?: "mixed" | "separate";
  /** Distinct cold adapters at the front of the fair order to fetch ahead (default 8). */
  prefetchDepth?: number;
  maxQueuedPerAccount?: number;
  maxQueued?: number;
  /** Fair-share cost of a prompt token and of a generated token (default 1 and 2, as in VTC). */
  inputTokenCost?: number;
  outputTokenCost?: number;
  rateLimits?: (account: string) => AccountRateLimits | undefined;
  /**
   * Fair-share weight of an account (default 1): its counter grows by cost / weight, so a
   * weight-3 account gets about 3x the tokens of a weight-1 account while both are
   * backlogged (paid tiers). Read when the account's fairness state is created.
   */
  accountWeight?: (account: string) => number;
}

export interface SchedulerStats {
  step: number;
  waiting: number;
  running: number;
  kvTokens: number;
  backloggedAccounts: number;
  /** Accounts with fairness state kept (active ones plus idle ones still owing service). */
  trackedAccounts: number;
  admitted: number;
  preemptions: number;
  drains: number;
  finished: Record<FinishReason, number>;
  rejected: number;
}

type Status = "waiting" | "running" | "finished";

interface Seq<C> {
  readonly id: string;
  readonly account: AccountState<C>;
  readonly adapterId: string | null;
  readonly key: string;
  readonly priority: number;
  readonly arrival: number;
  readonly maxNewTokens: number;
  readonly promptLength: number;
  readonly stop: ReadonlySet<number> | undefined;
  readonly context: C | undefined;
  readonly tokens: number[];
  readonly timings: RequestTimings;
  computed: number;
  generated: number;
  status: Status;
  slot: number;
  runOrder: number;
  promptCharged: boolean;
  pendingFinish: { reason: FinishReason; error: ServingError | undefined } | undefined;
  preemptions: number;
}

interface AdapterQueue<C> {
  readonly key: string;
  readonly adapterId: string | null;
  /** Sorted by (priority desc, arrival asc). */
  readonly items: Seq<C>[];
}

interface AccountState<C> {
  readonly id: string;
  readonly weight: number;
  /** Virtual token counter (weighted tokens served). */
  counter: number;
  waiting: number;
  running: number;
  readonly queues: Map<string, AdapterQueue<C>>;
  /** Per-adapter counters inside the account (second level of fairness). */
  readonly adapterCounters: Map<string, number>;
  adapterFloor: number;
}

const BASE_KEY = "\u0000base";

function keyOf(adapterId: string | null): string {
  return adapterId === null ? BASE_KEY : adapterId;
}

/**
 * Continuous-batching scheduler. Synchronous and deterministic: `schedule()` plans one
 * step, the caller runs it, `commit()` applies the sampled tokens. Time comes from the
 * injected clock only.
 *
 * Policies (README.md has the long form):
 * - Admission: a waiting sequence joins the running batch only when its adapter is in a
 *   ready device slot, a running place is free, the step has token budget left and the
 *   KV budget can hold its whole context. Adapters not in a slot are loaded off the
 *   step path and their requests are skipped meanwhile, so warm rows never wait.
 * - Fairness: virtual token counters (VTC, Sheng et al. 2024) over accounts, then over
 *   the adapters of the chosen account; FIFO by (priority, arrival) inside an adapter.
 * - Budget per step: decode rows first (one token each), then unfinished prefill chunks,
 *   then new admissions (chunked prefill by default).
 * - Preemption: only when the KV budget is exceeded; the most recently admitted
 *   sequence is preempted by recomputation (its KV is dropped; it goes back to the front
 *   of its queue with its generated tokens and is re-prefilled later), as in vLLM.
 */
export class Scheduler<C = unknown, W = unknown> {
  readonly #cache: AdapterCache<W>;
  readonly #clock: Clock;
  readonly #o: Required<Omit<SchedulerOptions, "rateLimits" | "accountWeight">>;
  readonly #limiter: AccountRateLimiter | undefined;
  readonly #weightOf: ((account: string) => number) | undefined;
  readonly #live = new Map<string, Seq<C>>();
  readonly #accounts = new Map<string, AccountState<C>>();
  readonly #backlogged = new Set<AccountState<C>>();
  #running: Seq<C>[] = [];
  readonly #pendingCancels: string[] = [];
  readonly #pendingFailures: { adapterId: string; error: ServingError; cutoff: number }[] = [];
  #arrivals = 0;
  #runOrders = 0;
  #step = 0;
  #waiting = 0;
  #kvTokens = 0;
  /** Highest counter ever reached: the lift for an arrival when nobody is backlogged. */
  #virtualTime = 0;
  #admitted = 0;
  #preemptions = 0;
  #drains = 0;
  #rejected = 0;
  #lastStepPrefill = false;
  /**
   * Separate mode: adapters whose requests the last prefill step had to pass over because the
   * adapter was not resident yet (loading, or cold). The step after a prefill step decodes, so
   * without this such a request, its load landing during the prefill step, waited for the next
   * prefill step: 2 steps after the load landed, on top of the load. The decode step right
   * after admits those requests if their adapter is ready by then (their prompt rows run beside
   * the decode rows, as in mixed mode), so a load costs its own time and at most one step.
   * Requests that arrived during the prefill step wait, as before, for the next prefill step
   * (unless that prefill step started the whole running batch: see `freshWave` in schedule()),
   * and the decode rows still decode at least every other step.
   */
  #heldByLoad = new Set<string>();
  #lastSweep = 0;
  readonly #finished: Record<FinishReason, number> = { stop: 0, length: 0, cancelled: 0, error: 0 };

  constructor(options: SchedulerOptions & { cache: AdapterCache<W>; clock: Clock }) {
    const o = {
      maxBatchTokens: options.maxBatchTokens,
      maxRunningSequences: options.maxRunningSequences,
      maxPromptTokens: options.maxPromptTokens,
      maxNewTokens: options.maxNewTokens,
      maxContextTokens: options.maxContextTokens ?? options.maxPromptTokens + options.maxNewTokens,
      maxKvTokens: options.maxKvTokens ?? Number.POSITIVE_INFINITY,
      chunkedPrefill: options.chunkedPrefill ?? true,
      maxPrefillTokens: options.maxPrefillTokens ?? options.maxBatchTokens,
      costModel: options.costModel ?? "tokens",
      prefillMode: options.prefillMode ?? "mixed",
      prefetchDepth: options.prefetchDepth ?? 8,
      maxQueuedPerAccount: options.maxQueuedPerAccount ?? Number.POSITIVE_INFINITY,
      maxQueued: options.maxQueued ?? Number.POSITIVE_INFINITY,
      inputTokenCost: options.inputTokenCost ?? 1,
      outputTokenCost: options.outputTokenCost ?? 2,
    };
    for (const k of [
      "maxBatchTokens",
      "maxPrefillTokens",
      "maxRunningSequences",
      "maxPromptTokens",
      "maxNewTokens",
    ] as const) {
      if (!Number.isInteger(o[k]) || o[k] < 1) throw new RangeError(`${k} must be an integer >= 1`);
    }
    if (o.maxRunningSequences > o.maxBatchTokens) {
      throw new RangeError(
        "maxRunningSequences must be <= maxBatchTokens (every running sequence decodes each step)",
      );
    }
    if (!o.chunkedPrefill) {
      // A whole prompt (a whole context when preemption may recompute it) must fit one step.
      const whole = o.maxKvTokens === Number.POSITIVE_INFINITY ? o.maxPromptTokens : o.maxContextTokens;
      if (whole > Math.min(o.maxBatchTokens, o.maxPrefillTokens)) {
        throw new RangeError(
          "without chunked prefill, maxBatchTokens and maxPrefillTokens must hold a whole prompt (or context if preempting)",
        );
      }
    }
    if (o.maxKvTokens < o.maxContextTokens) throw new RangeError("maxKvTokens must be >= maxContextTokens");
    if (!(o.inputTokenCost >= 0) || !(o.outputTokenCost >= 0))
      throw new RangeError("token costs must be >= 0");
    this.#o = o;
    this.#cache = options.cache;
    this.#clock = options.clock;
    this.#limiter = options.rateLimits === undefined ? undefined : new AccountRateLimiter(options.rateLimits);
    this.#weightOf = options.accountWeight;
    this.#cache.addListener({
      onAdapterFailed: (adapterId, error) => {
        // Fail the requests that were waiting when the load failed; later ones retry.
        this.#pendingFailures.push({ adapterId, error, cutoff: this.#arrivals });
      },
    });
  }

  get options(): Readonly<Required<Omit<SchedulerOptions, "rateLimits" | "accountWeight">>> {
    return this.#o;
  }

  /**
   * Validate, rate-limit and enqueue. Throws a ServingError (invalid_request,
   * prompt_too_long, max_tokens_too_large, context_length_exceeded, queue_full,
   * rate_limited) and then nothing was enqueued or charged.
   */
  submit(request: InferenceRequest<C>): void {
    try {
      this.#validate(request);
    } catch (e) {
      this.#rejected += 1;
      throw e;
    }
    const now = this.#clock.now();
    const queued = this.#accounts.get(request.account)?.waiting ?? 0;
    if (this.#waiting >= this.#o.maxQueued || queued >= this.#o.maxQueuedPerAccount) {
      this.#rejected += 1;
      throw new ServingError("queue_full", "too many queued requests; retry later");
    }
    if (this.#limiter !== undefined) {
      try {
        this.#limiter.admit(request.account, request.promptTokens.length + request.maxNewTokens, now);
      } catch (e) {
        this.#rejected += 1;
        throw e;
      }
    }
    const account = this.#accountOf(request.account);
    const seq: Seq<C> = {
      id: request.id,
      account,
      adapterId: request.adapterId,
      key: keyOf(request.adapterId),
      priority: request.priority ?? 0,
      arrival: this.#arrivals++,
      maxNewTokens: request.maxNewTokens,
      promptLength: request.promptTokens.length,
      stop:
        request.stopTokenIds === undefined || request.stopTokenIds.length === 0
          ? undefined
          : new Set(request.stopTokenIds),
      context: request.context,
      tokens: [...request.promptTokens],
      timings: {
        queuedAt: now,
        admittedAt: undefined,
        firstTokenAt: undefined,
        finishedAt: undefined,
        queuedStep: this.#step,
        admittedStep: undefined,
        firstTokenStep: undefined,
        adapterTier: this.#cache.tier(request.adapterId),
      },
      computed: 0,
      generated: 0,
      status: "waiting",
      slot: -1,
      runOrder: -1,
      promptCharged: false,
      pendingFinish: undefined,
      preemptions: 0,
    };
    this.#live.set(seq.id, seq);
    this.#enqueue(seq, true);
    // Start a cold adapter's load now rather than at the next schedule(), which may be a
    // whole model step away. Only while at most prefetchDepth requests wait (then this adapter
    // is certainly among the first prefetchDepth in fair order, i.e. one the next step's
    // prefetch would start anyway), or while every waiting request fits in the running batch
    // (then each is admitted as soon as its adapter is resident, so this load is needed next
    // whatever the fair order: a burst of arrivals for cold adapters starts all its loads
    // at once instead of prefetchDepth now and the rest a step later).
    if (
      seq.adapterId !== null &&
      this.#o.prefetchDepth > 0 &&
      (this.#waiting <= this.#o.prefetchDepth ||
        this.#waiting + this.#running.length <= this.#o.maxRunningSequences)
    ) {
      this.#cache.prefetch(seq.adapterId);
    }
  }

  /**
   * End a request at the next step: it leaves the queue or the running batch, its slot
   * pin and budget are freed. `reason` "stop" is for stop sequences the caller detects
   * in text. Returns false if the id is unknown or already finished.
   */
  cancel(id: string, reason: "cancelled" | "stop" = "cancelled"): boolean {
    const seq = this.#live.get(id);
    if (seq === undefined || seq.pendingFinish !== undefined) return false;
    seq.pendingFinish = { reason, error: undefined };
    this.#pendingCancels.push(id);
    return true;
  }

  /** Fail every live request (engine shutdown). Applied at the next `schedule()`. */
  failAll(error: ServingError): void {
    for (const seq of this.#live.values()) {
      if (seq.pendingFinish !== undefined) continue;
      seq.pendingFinish = { reason: "error", error };
      this.#pendingCancels.push(seq.id);
    }
  }

  hasWork(): boolean {
    return this.#live.size > 0 || this.#pendingCancels.length > 0;
  }

  has(id: string): boolean {
    return this.#live.has(id);
  }

  /** The account's current virtual counter (for tests and metrics). */
  counterOf(account: string): number {
    return this.#accounts.get(account)?.counter ?? 0;
  }

  isBacklogged(account: string): boolean {
    const a = this.#accounts.get(account);
    return a !== undefined && a.waiting > 0;
  }

  /** Running sequences in admission order, with their slots (metrics, tests). */
  runningSequences(): { id: string; account: string; adapterId: string | null; slot: number }[] {
    return this.#running.map((s) => ({
      id: s.id,
      account: s.account.id,
      adapterId: s.adapterId,
      slot: s.slot,
    }));
  }

  stats(): SchedulerStats {
    return {
      step: this.#step,
      waiting: this.#waiting,
      running: this.#running.length,
      kvTokens: this.#kvTokens,
      backloggedAccounts: this.#backlogged.size,
      trackedAccounts: this.#accounts.size,
      admitted: this.#admitted,
      preemptions: this.#preemptions,
      drains: this.#drains,
      finished: { ...this.#finished },
      rejected: this.#rejected,
    };
  }

  /** Plan the next step. The batch may be empty (nothing runnable: wait for a cache change). */
  schedule(): StepPlan<C> {
    const step = ++this.#step;
    const plan: StepPlan<C> = { batch: { step, rows: [], prefill: [], decode: [] }, release: [], events: [] };
    this.#applyFailures(plan);
    this.#applyCancels(plan);
    this.#preemptForKv(plan);

    const budget = new StepBudget(
      this.#o.maxBatchTokens,
      this.#o.maxPrefillTokens,
      this.#o.costModel === "padded",
    );
    const decoding = this.#running.filter(
      (seq) => seq.generated > 0 && seq.tokens.length - seq.computed === 1,
    );
    const mixed = this.#o.prefillMode === "mixed";
    // Separate mode, a decode step right after a prefill step: requests that prefill step
    // passed over because their adapter was still loading, and whose load has landed since,
    // ride along (see #heldByLoad). When that prefill step started the whole running batch (every
    // running sequence decodes its first token now: a wave of arrivals whose first few started
    // alone), every waiting request whose adapter is ready rides too: the rest of the wave joins
    // its first rows instead of waiting a decode step for them and then a prefill step of its own.
    const freshWave =
      decoding.length > 0 &&
      decoding.length === this.#running.length &&
      decoding.every((seq) => seq.generated === 1);
    const riding =
      !mixed && decoding.length > 0 && this.#lastStepPrefill && (this.#heldByLoad.size > 0 || freshWave);
    // Decode rows first: one token each, and maxRunning <= maxBatchTokens guarantees they fit.
    if (mixed || riding) for (const seq of decoding) this.#addRow(plan, seq, 1, budget);
    const heldByLoad = new Set<string>();
    if (mixed || decoding.length === 0 || !this.#lastStepPrefill) {
      // Then prefill chunks of sequences admitted earlier, oldest admission first...
      for (const seq of this.#running) {
        const remaining = seq.tokens.length - seq.computed;
        if (seq.generated > 0 && remaining === 1) continue;
        const room = budget.prefillRoom();
        const n = this.#o.chunkedPrefill ? Math.min(remaining, room) : remaining <= room ? remaining : 0;
        if (n > 0) this.#addRow(plan, seq, n, budget);
      }
      // ...then new sequences.
      this.#admit(plan, budget, undefined, heldByLoad);
    } else if (riding) {
      this.#admit(plan, budget, freshWave ? undefined : this.#heldByLoad, undefined);
    }
    if (!mixed) {
      if (riding) this.#lastStepPrefill = false;
      else if (plan.batch.prefill.length > 0) this.#lastStepPrefill = true;
      else {
        for (const seq of decoding) this.#addRow(plan, seq, 1, budget);
        this.#lastStepPrefill = false;
      }
      this.#heldByLoad = this.#lastStepPrefill ? heldByLoad : new Set();
    }
    // Stable order for the runtime: admission order.
    if (plan.batch.prefill.length > 0 && plan.batch.decode.length > 0) {
      const order = new Map<string, number>();
      for (const seq of this.#running) order.set(seq.id, seq.runOrder);
      plan.batch.rows.sort((x, y) => (order.get(x.seqId) ?? 0) - (order.get(y.seqId) ?? 0));
    }
    this.#prefetch();
    const active = this.#backlogged.size + this.#running.length;
    if (
      (this.#backlogged.size === 0 && this.#accounts.size > this.#running.length) ||
      (this.#accounts.size > 2 * active + 64 && step - this.#lastSweep >= 64)
    ) {
      this.#lastSweep = step;
      this.#sweep();
    }
    return plan;
  }

  /**
   * Apply one executed step: `next` maps every row with `sample: true` to its sampled
   * token. Emits tokens and finishes (stop token, max tokens).
   */
  commit(plan: StepPlan<C>, next: ReadonlyMap<string, number>): CommitResult {
    const out: CommitResult = { events: [], release: [] };
    const now = this.#clock.now();
    // Check the executor's answer before changing anything, so a bad answer can be
    // handled with abort() without losing events.
    for (const row of plan.batch.rows) {
      if (row.sample && !Number.isInteger(next.get(row.seqId))) {
        throw new Error(`executor returned no token for sampled row ${row.seqId}`);
      }
    }
    for (const row of plan.batch.rows) {
      const seq = this.#live.get(row.seqId);
      if (seq === undefined || seq.status !== "running") continue;
      seq.computed = row.position + row.tokens.length;
      if (!row.sample) continue;
      const token = next.get(row.seqId) as number;
      this.#charge(seq.account, seq.key, this.#o.outputTokenCost);
      if (seq.pendingFinish !== undefined) continue; // cancelled mid-step: emit nothing more
      if (seq.stop?.has(token)) {
        this.#finish(seq, "stop", undefined, now, out);
        continue;
      }
      seq.tokens.push(token);
      this.#kvTokens += 1;
      seq.generated += 1;
      seq.timings.firstTokenAt ??= now;
      seq.timings.firstTokenStep ??= plan.batch.step;
      out.events.push({ type: "token", id: seq.id, token, index: seq.generated - 1 });
      if (seq.generated >= seq.maxNewTokens) this.#finish(seq, "length", undefined, now, out);
    }
    return out;
  }

  /** The executor failed on this plan: every sequence in it fails with `error`. */
  abort(plan: StepPlan<C>, error: ServingError): CommitResult {
    const out: CommitResult = { events: [], release: [] };
    const now = this.#clock.now();
    for (const row of plan.batch.rows) {
      const seq = this.#live.get(row.seqId);
      if (seq === undefined || seq.status !== "running") continue;
      this.#finish(seq, "error", error, now, out);
    }
    return out;
  }

  // ---- internals -------------------------------------------------------------------

  #validate(r: InferenceRequest<C>): void {
    if (typeof r.id !== "string" || r.id.length === 0)
      throw new ServingError("invalid_request", "id is required");
    if (this.#live.has(r.id))
      throw new ServingError("invalid_request", `request id ${r.id} is already in flight`);
    if (r.promptTokens.length === 0) throw new ServingError("invalid_request", "prompt must not be empty");
    if (!Number.isInteger(r.maxNewTokens) || r.maxNewTokens < 1) {
      throw new ServingError("invalid_request", "max tokens must be an integer >= 1");
    }
    if (r.promptTokens.length > this.#o.maxPromptTokens) {
      throw new ServingError(
        "prompt_too_long",
        `prompt has ${r.promptTokens.length} tokens; the limit is ${this.#o.maxPromptTokens}`,
      );
    }
    if (r.maxNewTokens > this.#o.maxNewTokens) {
      throw new ServingError(
        "max_tokens_too_large",
        `max tokens ${r.maxNewTokens} exceeds the limit of ${this.#o.maxNewTokens}`,
      );
    }
    if (r.promptTokens.length + r.maxNewTokens > this.#o.maxContextTokens) {
      throw new ServingError(
        "context_length_exceeded",
        `prompt (${r.promptTokens.length}) + max tokens (${r.maxNewTokens}) exceeds the context length ${this.#o.maxContextTokens}`,
      );
    }
    if (r.priority !== undefined && !Number.isFinite(r.priority)) {
      throw new ServingError("invalid_request", "priority must be a finite number");
    }
  }

  #accountOf(id: string): AccountState<C> {
    let a = this.#accounts.get(id);
    if (a === undefined) {
      const weight = this.#weightOf?.(id) ?? 1;
      a = {
        id,
        weight: Number.isFinite(weight) && weight > 0 ? weight : 1,
        counter: 0,
        waiting: 0,
        running: 0,
        queues: new Map(),
        adapterCounters: new Map(),
        adapterFloor: 0,
      };
      this.#accounts.set(id, a);
    }
    return a;
  }

  /**
   * Put a sequence in its (account, adapter) queue. `lift` (new arrivals, not
   * preemptions) applies VTC's counter lift: an account (or adapter) that becomes
   * backlogged is raised to the smallest counter among the backlogged ones, so idle
   * time does not bank credit it could later use to monopolise the batch.
   */
  #enqueue(seq: Seq<C>, lift: boolean): void {
    const a = seq.account;
    if (a.waiting === 0) {
      if (lift) a.counter = Math.max(a.counter, this.#liftValue());
      this.#backlogged.add(a);
    }
    let q = a.queues.get(seq.key);
    if (q === undefined) {
      q = { key: seq.key, adapterId: seq.adapterId, items: [] };
      if (lift) {
        let min = Number.POSITIVE_INFINITY;
        for (const other of a.queues.values()) min = Math.min(min, a.adapterCounters.get(other.key) ?? 0);
        const floor = min === Number.POSITIVE_INFINITY ? a.adapterFloor : min;
        a.adapterCounters.set(seq.key, Math.max(a.adapterCounters.get(seq.key) ?? 0, floor));
      }
      a.queues.set(seq.key, q);
    }
    insertSorted(q.items, seq);
    seq.status = "waiting";
    a.waiting += 1;
    this.#waiting += 1;
  }

  #dequeue(seq: Seq<C>): void {
    const a = seq.account;
    const q = a.queues.get(seq.key);
    if (q === undefined) throw new Error(`sequence ${seq.id} is not queued`);
    const i = q.items.indexOf(seq);
    if (i < 0) throw new Error(`sequence ${seq.id} is not queued`);
    q.items.splice(i, 1);
    if (q.items.length === 0) {
      a.queues.delete(seq.key);
      // A counter at or below the floor is what the lift would give back anyway.
      if ((a.adapterCounters.get(seq.key) ?? 0) <= a.adapterFloor) a.adapterCounters.delete(seq.key);
    }
    a.waiting -= 1;
    this.#waiting -= 1;
    if (a.waiting === 0) this.#backlogged.delete(a);
  }

  /** VTC lift: the smallest backlogged counter, or the virtual time when none is backlogged. */
  #liftValue(): number {
    let min = Number.POSITIVE_INFINITY;
    for (const b of this.#backlogged) if (b.counter < min) min = b.counter;
    return min === Number.POSITIVE_INFINITY ? this.#virtualTime : min;
  }

  /** Forget idle accounts whose counter the lift would restore anyway. */
  #sweep(): void {
    const lift = this.#liftValue();
    for (const a of this.#accounts.values()) {
      if (a.waiting === 0 && a.running === 0 && a.counter <= lift) this.#accounts.delete(a.id);
    }
  }

  #charge(a: AccountState<C>, key: string, cost: number): void {
    if (cost === 0) return;
    a.counter += cost / a.weight;
    if (a.counter > this.#virtualTime) this.#virtualTime = a.counter;
    a.adapterCounters.set(key, (a.adapterCounters.get(key) ?? 0) + cost);
  }

  #addRow(plan: StepPlan<C>, seq: Seq<C>, n: number, budget: StepBudget): void {
    const position = seq.computed;
    const row: StepRow<C> = {
      seqId: seq.id,
      adapterId: seq.adapterId,
      slot: seq.slot,
      tokens: seq.tokens.slice(position, position + n),
      position,
      sample: position + n === seq.tokens.length,
      context: seq.context,
    };
    const decode = seq.generated > 0 && n === 1 && row.sample;
    budget.add(n, !decode);
    plan.batch.rows.push(row);
    if (decode) plan.batch.decode.push(row);
    else plan.batch.prefill.push(row);
  }

  #applyFailures(plan: StepPlan<C>): void {
    if (this.#pendingFailures.length === 0) return;
    const failures = this.#pendingFailures.splice(0);
    const now = this.#clock.now();
    for (const f of failures) {
      for (const a of [...this.#backlogged]) {
        const q = a.queues.get(f.adapterId);
        if (q === undefined) continue;
        for (const seq of [...q.items]) {
          if (seq.arrival >= f.cutoff || seq.pendingFinish !== undefined) continue;
          this.#dequeue(seq);
          this.#finish(seq, "error", f.error, now, plan);
        }
      }
    }
  }

  #applyCancels(plan: StepPlan<C>): void {
    if (this.#pendingCancels.length === 0) return;
    const ids = this.#pendingCancels.splice(0);
    const now = this.#clock.now();
    for (const id of ids) {
      const seq = this.#live.get(id);
      if (seq === undefined || seq.pendingFinish === undefined) continue;
      if (seq.status === "waiting") this.#dequeue(seq);
      this.#finish(seq, seq.pendingFinish.reason, seq.pendingFinish.error, now, plan);
    }
  }

  #preemptForKv(plan: StepPlan<C>): void {
    // Each running sequence will hold tokens.length KV entries after this step.
    while (this.#kvTokens > this.#o.maxKvTokens && this.#running.length > 1) {
      const victim = this.#running[this.#running.length - 1];
      if (victim === undefined) break;
      this.#leaveRunning(victim, plan.release);
      victim.computed = 0;
      victim.preemptions += 1;
      this.#preemptions += 1;
      this.#enqueue(victim, false);
    }
  }

  #leaveRunning(seq: Seq<C>, release: string[]): void {
    const i = this.#running.indexOf(seq);
    if (i >= 0) this.#running.splice(i, 1);
    this.#kvTokens -= seq.tokens.length;
    seq.account.running -= 1;
    if (seq.slot !== BASE_SLOT && seq.slot >= 0) this.#cache.unpinSlot(seq.slot);
    seq.slot = -1;
    release.push(seq.id);
  }

  #finish(
    seq: Seq<C>,
    reason: FinishReason,
    error: ServingError | undefined,
    now: number,
    out: { events: SchedulerEvent[]; release: string[] },
  ): void {
    if (seq.status === "running") this.#leaveRunning(seq, out.release);
    seq.status = "finished";
    seq.timings.finishedAt = now;
    this.#live.delete(seq.id);
    this.#finished[reason] += 1;
    this.#limiter?.refund(seq.account.id, seq.maxNewTokens - seq.generated, now);
    const a = seq.account;
    if (a.waiting === 0 && a.running === 0 && a.counter <= this.#liftValue()) {
      // Idle, and its counter is no higher than what the lift would give it on return:
      // forget it, so the state is bounded by active accounts, not every account seen.
      // (Idle accounts still ahead of the backlogged ones keep their counter; see #sweep.)
      this.#accounts.delete(a.id);
    }
    out.events.push({
      type: "finished",
      id: seq.id,
      result: {
        id: seq.id,
        account: seq.account.id,
        adapterId: seq.adapterId,
        reason,
        error,
        outputTokens: seq.tokens.slice(seq.promptLength),
        promptTokens: seq.promptLength,
        completionTokens: seq.generated,
        timings: seq.timings,
        preemptions: seq.preemptions,
      },
    });
  }

  /**
   * Admit waiting sequences in fair order while the step budget and running places allow.
   * `only`: consider only these adapters' queues. `held`: collects the adapters whose queue
   * head was passed over because the adapter is not resident yet (loading or cold).
   */
  #admit(
    plan: StepPlan<C>,
    budget: StepBudget,
    only: ReadonlySet<string> | undefined,
    held: Set<string> | undefined,
  ): void {
    const candidates = new Set(this.#backlogged);
    let demandLoads = 0;
    let drainTried = false;
    const now = this.#clock.now();
    while (
      this.#running.length < this.#o.maxRunningSequences &&
      budget.prefillRoom() > 0 &&
      candidates.size > 0
    ) {
      const a = minAccount(candidates);
      let admitted = false;
      let stop = false;
      for (const q of this.#queuesInOrder(a)) {
        const head = q.items[0];
        if (head === undefined || head.pendingFinish !== undefined) continue;
        if (only !== undefined && !only.has(q.key)) continue;
        const need = this.#o.chunkedPrefill ? 1 : head.tokens.length;
        // The fairness-first candidate that cannot fit stops admission rather than
        // letting smaller requests overtake it forever.
        if (need > budget.prefillRoom() || this.#kvTokens + head.tokens.length > this.#o.maxKvTokens) {
          stop = true;
          break;
        }
        // Demand loads are capped per step (at least one, so prefetchDepth 0 still loads).
        const found = this.#cache.lookup(q.adapterId, demandLoads < Math.max(1, this.#o.prefetchDepth));
        if (found.status === "ready") {
          this.#start(head, found.slot, budget, now, plan);
          admitted = true;
          break;
        }
        if (found.status === "loading") demandLoads += 1;
        if (found.status === "loading" || found.status === "cold") held?.add(q.key);
        if (found.status === "no_slot" && !drainTried) {
          drainTried = true;
          if (this.#cache.startDraining() !== undefined) this.#drains += 1;
        }
      }
      if (stop) break;
      if (!admitted) candidates.delete(a);
    }
  }

  /** Admit `seq` on `slot` and plan its first prefill chunk. */
  #start(seq: Seq<C>, slot: number, budget: StepBudget, now: number, plan: StepPlan<C>): void {
    const a = seq.account;
    this.#dequeue(seq);
    this.#cache.pinSlot(slot);
    seq.slot = slot;
    seq.status = "running";
    seq.runOrder = this.#runOrders++;
    seq.timings.admittedAt ??= now;
    seq.timings.admittedStep ??= this.#step;
    this.#running.push(seq);
    a.running += 1;
    this.#kvTokens += seq.tokens.length;
    this.#admitted += 1;
    a.adapterFloor = Math.max(a.adapterFloor, a.adapterCounters.get(seq.key) ?? 0);
    if (!seq.promptCharged) {
      seq.promptCharged = true;
      this.#charge(a, seq.key, this.#o.inputTokenCost * seq.promptLength);
    }
    const n = this.#o.chunkedPrefill ? Math.min(seq.tokens.length, budget.prefillRoom()) : seq.tokens.length;
    this.#addRow(plan, seq, n, budget);
  }

  #queuesInOrder(a: AccountState<C>): AdapterQueue<C>[] {
    const qs = [...a.queues.values()];
    if (qs.length > 1) {
      // The account's own priorities first, then fair share among its adapters, then age.
      qs.sort((x, y) => {
        const hx = x.items[0];
        const hy = y.items[0];
        const p = (hy?.priority ?? 0) - (hx?.priority ?? 0);
        if (p !== 0) return p;
        const d = (a.adapterCounters.get(x.key) ?? 0) - (a.adapterCounters.get(y.key) ?? 0);
        if (d !== 0) return d;
        return (hx?.arrival ?? 0) - (hy?.arrival ?? 0);
      });
    }
    return qs;
  }

  /** Fetch into RAM the first cold adapters in fair order; drop stale queued prefetches. */
  #prefetch(): void {
    const depth = this.#o.prefetchDepth;
    if (depth <= 0) return;
    const wanted = new Set<string>();
    const accounts = [...this.#backlogged].sort(compareAccounts);
    // Resident adapters are skipped, not counted; the scan stays bounded all the same.
    let scanned = 0;
    outer: for (const a of accounts) {
      for (const q of this.#queuesInOrder(a)) {
        if (q.adapterId === null) continue;
        if (++scanned > 16 * depth) break outer;
        // Only cold adapters count: one already in RAM or a slot (e.g. loaded, waiting for a
        // prefill step) must not keep the cold ones behind it from starting their loads.
        const tier = this.#cache.tier(q.adapterId);
        if (tier === "slot" || tier === "ram") continue;
        if (wanted.size >= depth) break outer;
        wanted.add(q.adapterId);
        this.#cache.prefetch(q.adapterId);
      }
    }
    this.#cache.ram.retainPrefetches(wanted);
  }
}

/**
 * Token budget of one step under either cost model (see SchedulerOptions.costModel): the
 * whole step within maxBatchTokens, its prefill rows also within maxPrefillTokens.
 */
class StepBudget {
  readonly #all: RowBudget;
  readonly #prefill: RowBudget;
  constructor(max: number, maxPrefill: number, padded: boolean) {
    this.#all = new RowBudget(max, padded);
    this.#prefill = new RowBudget(maxPrefill, padded);
  }

  /** Most tokens one more prefill row may take (decode rows always fit: maxRunning <= maxBatchTokens). */
  prefillRoom(): number {
    return Math.min(this.#all.room(), this.#prefill.room());
  }

  add(n: number, prefill: boolean): void {
    this.#all.add(n);
    if (prefill) this.#prefill.add(n);
  }
}

class RowBudget {
  #rows = 0;
  #sum = 0;
  #longest = 0;
  constructor(
    readonly max: number,
    readonly padded: boolean,
  ) {}

  /** Most tokens one more row may take. */
  room(): number {
    if (!this.padded) return this.max - this.#sum;
    const rows = this.#rows + 1;
    if (rows * Math.max(1, this.#longest) > this.max) return 0;
    return Math.floor(this.max / rows);
  }

  add(n: number): void {
    this.#rows += 1;
    this.#sum += n;
    this.#longest = Math.max(this.#longest, n);
  }
}

function compareAccounts<C>(x: AccountState<C>, y: AccountState<C>): number {
  if (x.counter !== y.counter) return x.counter - y.counter;
  return x.id < y.id ? -1 : x.id > y.id ? 1 : 0;
}

function minAccount<C>(set: Set<AccountState<C>>): AccountState<C> {
  let best: AccountState<C> | undefined;
  for (const a of set) if (best === undefined || compareAccounts(a, best) < 0) best = a;
  return best as AccountState<C>;
}

/** Keep `items` sorted by (priority desc, arrival asc); binary search for the spot. */
function insertSorted<C>(items: Seq<C>[], seq: Seq<C>): void {
  let lo = 0;
  let hi = items.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const m = items[mid] as Seq<C>;
    const before = m.priority > seq.priority || (m.priority === seq.priority && m.arrival < seq.arrival);
    if (before) lo = mid + 1;
    else hi = mid;
  }
  items.splice(lo, 0, seq);
}
