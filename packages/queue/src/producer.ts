import { AppError } from "@openledger/errors";
import { type JobsOptions, Queue } from "bullmq";
import {
  JOBS,
  type JobName,
  type JobPayload,
  type PolicyOverrides,
  policyOf,
  type QueueName,
} from "./catalog.ts";
import { type QueueConnection, queueConnection } from "./connection.ts";

export interface ProducerOptions {
  redisUrl: string;
  /** Key prefix, e.g. "{openledger}" or a per-test prefix. */
  prefix: string;
  /** Redis Cluster (REDIS_CLUSTER): `redisUrl` is one seed node. */
  cluster?: boolean;
  overrides?: PolicyOverrides;
}

export interface EnqueueOptions {
  delayMs?: number;
  priority?: number;
}

export interface EnqueuedJob {
  id: string;
  name: JobName;
  queue: QueueName;
}

/** Bounded history, so Redis memory does not grow with every job ever run. */
const KEEP_COMPLETED = { count: 1000, age: 24 * 3600 };
const KEEP_FAILED = { count: 10_000, age: 14 * 24 * 3600 };

export function jobId(name: JobName, payload: unknown): string {
  const key = (JOBS[name].key as (p: unknown) => string)(payload);
  // BullMQ forbids ':' in custom ids (it is the Redis key separator).
  return `${name}.${key}`.replaceAll(":", "_");
}

/**
 * Validates payloads on enqueue and writes them to the job's queue with the catalog's
 * retry policy. The job id is derived from the payload, so enqueueing twice is harmless.
 */
export class Producer {
  readonly #queues = new Map<QueueName, Queue>();
  readonly #options: ProducerOptions;
  readonly #onError: (err: Error) => void;
  #shared: QueueConnection | undefined;

  constructor(options: ProducerOptions, onError: (err: Error) => void = () => {}) {
    this.#options = options;
    this.#onError = onError;
  }

  queue(name: QueueName): Queue {
    let q = this.#queues.get(name);
    if (!q) {
      // Standalone: a connection per queue (BullMQ's own); cluster: one shared Cluster client.
      if (this.#options.cluster && !this.#shared)
        this.#shared = queueConnection(this.#options.redisUrl, "producer", true);
      const connection = (this.#shared ?? queueConnection(this.#options.redisUrl, "producer")).connection;
      q = new Queue(name, { connection, prefix: this.#options.prefix });
      q.on("error", this.#onError);
      this.#queues.set(name, q);
    }
    return q;
  }

  async enqueue<N extends JobName>(
    name: N,
    payload: JobPayload<N>,
    options: EnqueueOptions = {},
  ): Promise<EnqueuedJob> {
    const spec = JOBS[name];
    if (!spec) throw new AppError("BAD_REQUEST", `unknown job "${String(name)}"`);
    const parsed = spec.payload.safeParse(payload);
    if (!parsed.success) {
      const why = parsed.error.issues
        .map((i) => `${i.path.join(".") || "(payload)"}: ${i.message}`)
        .join("; ");
      throw new AppError("VALIDATION_FAILED", `invalid payload for job ${name}: ${why}`, {
        details: parsed.error.issues,
      });
    }
    const policy = policyOf(name, this.#options.overrides);
    const opts: JobsOptions = {
      jobId: jobId(name, parsed.data),
      attempts: policy.attempts,
      backoff: { type: "exponential", delay: policy.backoffMs },
      removeOnComplete: KEEP_COMPLETED,
      removeOnFail: KEEP_FAILED,
    };
    if (options.delayMs !== undefined) opts.delay = options.delayMs;
    if (options.priority !== undefined) opts.priority = options.priority;
    const job = await this.queue(spec.queue).add(name, parsed.data, opts);
    return { id: job.id ?? opts.jobId!, name, queue: spec.queue };
  }

  async close(): Promise<void> {
    await Promise.all([...this.#queues.values()].map((q) => q.close()));
    this.#queues.clear();
    await this.#shared?.close();
    this.#shared = undefined;
  }
}
