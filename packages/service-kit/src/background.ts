import type { BaseConfig } from "@openledger/config";
import { type JobHandlers, type JobOutcome, type QueueName, WorkerSet } from "@openledger/queue";
import type { FastifyBaseLogger, FastifyInstance } from "fastify";
import { Gauge, Histogram, type Registry } from "prom-client";

/** A periodic task registered with `app.background.every`. */
export interface BackgroundTimer {
  readonly name: string;
  /**
   * Runs the task soon without waiting for the interval (after the run in flight, if one is:
   * runs never overlap). Does nothing while background work is off (RUN_WORKERS=false) or closed.
   */
  kick(): void;
}

/** Queue workers of a service: the queues it consumes, a handler per job, concurrency per queue. */
export interface BackgroundJobs<C, Q extends QueueName> {
  queues: readonly Q[];
  /** Every job of every consumed queue needs a handler: a missing one does not compile. */
  jobs: (app: FastifyInstance, config: C) => JobHandlers<Q>;
  /** Jobs taken at once per queue (default 1), from the service's config. */
  concurrency?: (config: C) => Partial<Record<Q, number>>;
}

const TIMER_BUCKETS = [0.005, 0.025, 0.1, 0.5, 1, 2.5, 10, 30, 120];
const JOB_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120, 600];

class Timer implements BackgroundTimer {
  #handle: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #again = false;
  #stopped = false;

  constructor(
    readonly name: string,
    private readonly ms: number,
    private readonly fn: (signal: AbortSignal) => Promise<unknown>,
    private readonly owner: Background,
  ) {}

  start(): void {
    this.#schedule();
  }

  kick(): void {
    if (!this.owner.running || this.#stopped) return;
    if (this.#running) {
      this.#again = true;
      return;
    }
    clearTimeout(this.#handle);
    this.#handle = setTimeout(() => this.#run(), 0);
  }

  /** The next periodic run, `ms` after the previous one ended (so runs never overlap). */
  #schedule(): void {
    clearTimeout(this.#handle);
    if (this.#stopped || this.ms <= 0) return;
    this.#handle = setTimeout(() => this.#run(), this.ms);
    this.#handle.unref();
  }

  #run(): void {
    if (this.#stopped || this.#running) return;
    this.#running = (async () => {
      const started = performance.now();
      let outcome = "completed";
      try {
        await this.fn(this.owner.signal);
      } catch (err) {
        outcome = "failed";
        this.owner.log.warn(
          { err: err instanceof Error ? err.message : String(err), timer: this.name },
          `${this.name} failed`,
        );
      } finally {
        this.owner.observeTimer(this.name, outcome, (performance.now() - started) / 1000);
      }
    })().finally(() => {
      this.#running = undefined;
      if (this.#again && !this.#stopped) {
        this.#again = false;
        this.#handle = setTimeout(() => this.#run(), 0);
      } else this.#schedule();
    });
  }

  /** Stops scheduling and waits for the run in flight. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#handle);
    await this.#running;
  }
}

/**
 * Background work of one service (the `app.background` decorator): its queue workers and its
 * periodic tasks, started when the app is ready and only when RUN_WORKERS, stopped on close
 * (workers finish their running jobs, timers their run in flight). One mechanism for every app:
 * no hand-written `setInterval` loops.
 */
export class Background {
  readonly #timers: Timer[] = [];
  readonly #abort = new AbortController();
  #workers: WorkerSet | undefined;
  #started = false;
  readonly #timerDuration: Histogram;
  readonly #jobDuration: Histogram;

  constructor(
    private readonly config: BaseConfig,
    readonly log: FastifyBaseLogger,
    private readonly registry: Registry,
    private readonly queueOf: (name: QueueName) => import("bullmq").Queue,
  ) {
    this.#timerDuration = new Histogram({
      name: "background_task_duration_seconds",
      help: "Runs of periodic background tasks by task and outcome",
      labelNames: ["task", "outcome"],
      buckets: TIMER_BUCKETS,
      registers: [registry],
    });
    this.#jobDuration = new Histogram({
      name: "queue_job_duration_seconds",
      help: "Job attempts run by this process, by queue, job and outcome",
      labelNames: ["queue", "job", "outcome"],
      buckets: JOB_BUCKETS,
      registers: [registry],
    });
  }

  /** Whether background work runs in this process (RUN_WORKERS) and has started. */
  get running(): boolean {
    return this.config.RUN_WORKERS && this.#started && !this.#abort.signal.aborted;
  }

  /** Aborted when the app closes. */
  get signal(): AbortSignal {
    return this.#abort.signal;
  }

  /**
   * Runs `fn` every `ms` milliseconds (measured from the end of the previous run, so runs never
   * overlap), from the moment the app is ready until it closes; `ms <= 0` = only when kicked.
   * Failures are logged and the next run comes as usual. Close waits for the run in flight.
   */
  every(name: string, ms: number, fn: (signal: AbortSignal) => Promise<unknown>): BackgroundTimer {
    const timer = new Timer(name, ms, fn, this);
    this.#timers.push(timer);
    if (this.running) timer.start();
    return timer;
  }

  observeTimer(task: string, outcome: string, seconds: number): void {
    this.#timerDuration.observe({ task, outcome }, seconds);
  }

  /** Sets up the queue workers (checked against the catalog when they start). */
  consume<C, Q extends QueueName>(app: FastifyInstance, config: C, def: BackgroundJobs<C, Q>): void {
    if (!this.config.RUN_WORKERS || def.queues.length === 0) return;
    const concurrency = def.concurrency?.(config) ?? {};
    const workers = new WorkerSet({
      redisUrl: this.config.REDIS_URL,
      prefix: this.config.QUEUE_PREFIX,
      queues: def.queues,
      cluster: this.config.REDIS_CLUSTER,
      logger: this.log.child({ component: "workers" }),
      concurrency,
      onJob: (o: JobOutcome) =>
        this.#jobDuration.observe({ queue: o.queue, job: o.job, outcome: o.outcome }, o.seconds),
    });
    workers.handleAll(def.jobs(app, config));
    this.#workers = workers;
    this.#queueDepth(def.queues);
  }

  #queueDepth(queues: readonly QueueName[]): void {
    const queueOf = this.queueOf;
    const STATES = ["waiting", "active", "delayed", "failed", "prioritized"] as const;
    new Gauge({
      name: "queue_jobs",
      help: "Jobs in each consumed queue by state (read from Redis at scrape time)",
      labelNames: ["queue", "state"],
      registers: [this.registry],
      async collect() {
        for (const queue of queues) {
          try {
            const counts = await queueOf(queue).getJobCounts(...STATES);
            for (const state of STATES) this.set({ queue, state }, counts[state] ?? 0);
          } catch {
            // Redis down: keep the last values; /readyz reports the outage.
          }
        }
      },
    });
  }

  async start(): Promise<void> {
    if (!this.config.RUN_WORKERS || this.#started) return;
    this.#started = true;
    await this.#workers?.start();
    for (const t of this.#timers) t.start();
  }

  async stop(): Promise<void> {
    this.#abort.abort(new Error("shutting down"));
    await this.#workers?.close();
    await Promise.all(this.#timers.map((t) => t.stop()));
  }
}

declare module "fastify" {
  interface FastifyInstance {
    /** Queue workers and periodic tasks (`every`) of this service. */
    background: Background;
  }
}
