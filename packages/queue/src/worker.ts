import { type Job, UnrecoverableError, Worker } from "bullmq";
import {
  JOBS,
  type JobName,
  type JobPayload,
  type JobsOf,
  jobsOfQueue,
  type PolicyOverrides,
  policyOf,
  type QueueName,
} from "./catalog.ts";
import { type QueueConnection, queueConnection } from "./connection.ts";

export interface JobContext {
  id: string;
  /** 1 on the first attempt. */
  attempt: number;
  maxAttempts: number;
  /** Aborted when the catalog's timeout for this job passes or the worker shuts down. */
  signal: AbortSignal;
  /** Reports progress (0-100 or an object), visible through the queue (and the API). */
  progress(value: number | object): Promise<void>;
}

export type JobHandler<N extends JobName> = (payload: JobPayload<N>, ctx: JobContext) => Promise<unknown>;

/**
 * One handler for every job of the queues `Q` (trigger.dev's redis-worker shape): a job added to
 * the catalog without a handler in a service that consumes its queue is a compile error.
 */
export type JobHandlers<Q extends QueueName> = { [N in JobsOf<Q>]: JobHandler<N> };

/** What a finished attempt reports (for metrics): its outcome and how long it ran. */
export interface JobOutcome {
  queue: QueueName;
  job: JobName;
  outcome: "completed" | "failed";
  seconds: number;
}

export interface WorkerLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface WorkerSetOptions {
  redisUrl: string;
  prefix: string;
  /** The queues this process consumes; every job of each must get exactly one handler. */
  queues: readonly QueueName[];
  logger: WorkerLogger;
  /** Redis Cluster (REDIS_CLUSTER): `redisUrl` is one seed node. */
  cluster?: boolean;
  /** Jobs of a queue taken at once by this process (default 1). */
  concurrency?: Partial<Record<QueueName, number>>;
  overrides?: PolicyOverrides;
  /** Called after every attempt (metrics). */
  onJob?: (o: JobOutcome) => void;
}

export class WorkerSetupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "WorkerSetupError";
  }
}

class JobTimeoutError extends Error {
  constructor(name: string, ms: number) {
    super(`job ${name} exceeded its ${ms} ms timeout`);
    this.name = "JobTimeoutError";
  }
}

/**
 * Collects handlers, checks them against the catalog, then starts one BullMQ worker per
 * queue. Refuses to start when a consumed queue has a job without a handler, a job gets
 * two handlers, or a handler names a job this process does not consume.
 */
export class WorkerSet {
  readonly #options: WorkerSetOptions;
  readonly #handlers = new Map<JobName, JobHandler<JobName>>();
  readonly #workers: Worker[] = [];
  readonly #connections: QueueConnection[] = [];
  readonly #shutdown = new AbortController();

  constructor(options: WorkerSetOptions) {
    this.#options = options;
  }

  handle<N extends JobName>(name: N, handler: JobHandler<N>): this {
    if (!(name in JOBS)) throw new WorkerSetupError(`no job named "${name}" in the queue catalog`);
    if (this.#handlers.has(name)) throw new WorkerSetupError(`job "${name}" already has a handler`);
    if (!this.#options.queues.includes(JOBS[name].queue)) {
      throw new WorkerSetupError(
        `job "${name}" belongs to queue "${JOBS[name].queue}", which this process does not consume`,
      );
    }
    this.#handlers.set(name, handler as JobHandler<JobName>);
    return this;
  }

  /** Registers a handler for every job of the queues in `handlers` (see JobHandlers). */
  handleAll<Q extends QueueName>(handlers: JobHandlers<Q>): this {
    for (const [name, handler] of Object.entries(handlers) as [JobName, JobHandler<JobName>][]) {
      this.handle(name, handler);
    }
    return this;
  }

  /** Starts the workers, after checking that every job of every consumed queue is handled. */
  async start(): Promise<void> {
    const missing = this.#options.queues.flatMap((q) => jobsOfQueue(q).filter((n) => !this.#handlers.has(n)));
    if (missing.length > 0) {
      throw new WorkerSetupError(`refusing to start: no handler for job(s) ${missing.join(", ")}`);
    }
    for (const queue of this.#options.queues) {
      const conn = queueConnection(this.#options.redisUrl, "worker", this.#options.cluster);
      this.#connections.push(conn);
      const worker = new Worker(queue, (job) => this.#run(job), {
        connection: conn.connection,
        prefix: this.#options.prefix,
        concurrency: this.#options.concurrency?.[queue] ?? 1,
        autorun: false,
      });
      worker.on("error", (err) => this.#options.logger.error({ err, queue }, "worker error"));
      worker.on("failed", (job, err) => {
        if (!job) return;
        const final = job.attemptsMade >= (job.opts.attempts ?? 1) || err instanceof UnrecoverableError;
        this.#options.logger[final ? "error" : "warn"](
          { err, queue, job: job.name, jobId: job.id, attempt: job.attemptsMade },
          final ? "job failed for good; it stays in the failed set" : "job attempt failed; will retry",
        );
      });
      this.#workers.push(worker);
      // run() resolves only when the worker closes; errors surface through "error".
      worker.run().catch((err) => this.#options.logger.error({ err, queue }, "worker stopped"));
    }
    await Promise.all(this.#workers.map((w) => w.waitUntilReady()));
  }

  async #run(job: Job): Promise<unknown> {
    const name = job.name as JobName;
    const spec = JOBS[name];
    const handler = this.#handlers.get(name);
    if (!spec || !handler) throw new UnrecoverableError(`no handler for job "${job.name}"`);
    const parsed = spec.payload.safeParse(job.data);
    if (!parsed.success) {
      // Retrying cannot fix a malformed payload: fail it once, visibly.
      throw new UnrecoverableError(
        `invalid payload for job ${name}: ${parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`,
      );
    }
    const { timeoutMs } = policyOf(name, this.#options.overrides);
    const timeout = new AbortController();
    const signal = AbortSignal.any([timeout.signal, this.#shutdown.signal]);
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const err = new JobTimeoutError(name, timeoutMs);
        // Reject before aborting: a handler that returns on abort must not win the race.
        reject(err);
        timeout.abort(err);
      }, timeoutMs);
    });
    const ctx: JobContext = {
      id: job.id ?? "",
      attempt: job.attemptsMade + 1,
      maxAttempts: job.opts.attempts ?? 1,
      signal,
      progress: (value) => job.updateProgress(value),
    };
    const started = performance.now();
    let outcome: JobOutcome["outcome"] = "failed";
    try {
      const result = await Promise.race([
        (handler as (p: unknown, c: JobContext) => Promise<unknown>)(parsed.data, ctx),
        timedOut,
      ]);
      outcome = "completed";
      return result;
    } finally {
      clearTimeout(timer);
      this.#options.onJob?.({
        queue: spec.queue,
        job: name,
        outcome,
        seconds: (performance.now() - started) / 1000,
      });
    }
  }

  /** Stops taking jobs and waits for running ones (BullMQ's graceful close). */
  async close(): Promise<void> {
    await Promise.all(this.#workers.map((w) => w.close()));
    this.#shutdown.abort(new Error("worker shutting down"));
    this.#workers.length = 0;
    await Promise.all(this.#connections.map((c) => c.close()));
    this.#connections.length = 0;
  }
}
