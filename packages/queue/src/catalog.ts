import { createHash } from "node:crypto";
import { z } from "zod";

/**
 * Every job of the platform, in one place. A job name is dotted (`inference.completed`);
 * its queue groups jobs consumed by the same service. Payloads carry ids, never text or
 * secrets: workers read the rest from Postgres. New payload fields must be optional so
 * old jobs still parse.
 */
export interface JobSpec<S extends z.ZodType = z.ZodType> {
  queue: QueueName;
  payload: S;
  /** Total attempts including the first. */
  attempts: number;
  /** Exponential backoff base delay. */
  backoffMs: number;
  /** A run longer than this fails the attempt (and is retried). */
  timeoutMs: number;
  /** Idempotency key: a second enqueue with the same key is a no-op while the job is kept. */
  key: (payload: z.output<S>) => string;
  description: string;
}

export const QUEUES = ["datanets", "attribution", "settlement", "factory"] as const;
export type QueueName = (typeof QUEUES)[number];

const uuid = z.uuid();

export const DatanetValidatePayload = z.object({ contributionId: uuid });
export const AttributionIndexPayload = z.object({ datanetVersionId: uuid });
export const AttributionScorePayload = z.object({
  inferenceId: uuid,
  /** When set, only this validator's worker may take the job (one job per validator). */
  validatorAddress: z
    .string()
    .regex(/^0x[0-9a-f]{40}$/, "lower-case 0x address")
    .optional(),
});
/** One run of a fine-tuning job: `run` is bumped when a job is resumed after its queue job ended. */
export const FineTuningRunPayload = z.object({
  jobId: z.string().regex(/^ftjob-[0-9a-f]{24}$/, "a fine-tuning job id (ftjob-...)"),
  run: z.number().int().min(0).max(1_000_000).optional(),
});

/** Most inference ids one `inference.completed` job may carry (its batch form). */
export const INFERENCE_BATCH_MAX = 1000;
/**
 * One inference (`inferenceId`, the original form) or a batch of them (`inferenceIds`, added
 * so a busy gateway does not pay one queue job per inference). Exactly one of the two.
 * Settlement is idempotent per inference, so an id in two batches, or twice in one, is harmless.
 */
export const InferenceCompletedPayload = z
  .object({
    inferenceId: uuid.optional(),
    inferenceIds: z.array(uuid).min(1).max(INFERENCE_BATCH_MAX).optional(),
  })
  .refine((p) => (p.inferenceId === undefined) !== (p.inferenceIds === undefined), {
    message: "exactly one of inferenceId, inferenceIds",
  });

/** The inference ids of an `inference.completed` payload, whichever form it has. */
export function completedInferenceIds(p: z.output<typeof InferenceCompletedPayload>): string[] {
  return p.inferenceIds ?? (p.inferenceId === undefined ? [] : [p.inferenceId]);
}

/** A batch's job id: the same ids (in any order) give the same id, so a re-sent batch is a no-op. */
function batchKey(ids: readonly string[]): string {
  const digest = createHash("sha256")
    .update([...new Set(ids.map((id) => id.toLowerCase()))].sort().join(","))
    .digest("hex");
  return `batch-${digest.slice(0, 32)}`;
}

function spec<S extends z.ZodType>(s: JobSpec<S>): JobSpec<S> {
  return s;
}

export const JOBS = {
  "datanet.validate": spec({
    queue: "datanets",
    payload: DatanetValidatePayload,
    attempts: 5,
    backoffMs: 1000,
    timeoutMs: 10 * 60_000,
    key: (p) => p.contributionId,
    description: "Validate the pending rows of one contribution (format, duplicates, quality).",
  }),
  "attribution.index": spec({
    queue: "attribution",
    payload: AttributionIndexPayload,
    attempts: 3,
    backoffMs: 5000,
    timeoutMs: 60 * 60_000,
    key: (p) => p.datanetVersionId,
    description: "Build the suffix-array index of a published datanet version.",
  }),
  "attribution.score": spec({
    queue: "attribution",
    payload: AttributionScorePayload,
    attempts: 5,
    backoffMs: 2000,
    timeoutMs: 5 * 60_000,
    key: (p) => (p.validatorAddress ? `${p.inferenceId}_${p.validatorAddress}` : p.inferenceId),
    description: "Attribute one inference's output to contributors and sign the result.",
  }),
  "inference.completed": spec({
    queue: "settlement",
    payload: InferenceCompletedPayload,
    attempts: 10,
    backoffMs: 1000,
    // A batch of up to 1,000 waits behind the other deliveries in settlement's group commit: under
    // a backlog (256 jobs at once) that is minutes, not a hang. A timed-out attempt is harmless
    // (settlement is idempotent per inference) but would redo the work.
    timeoutMs: 5 * 60_000,
    key: (p) => p.inferenceId ?? batchKey(p.inferenceIds ?? []),
    description: "Metered inference(s) finished: price each and settle it once attributed.",
  }),
  "finetuning.run": spec({
    queue: "factory",
    payload: FineTuningRunPayload,
    // A failed attempt (a crashed trainer, the gateway down while registering) resumes from the
    // job's last checkpoint; the job is marked failed only after the last one.
    attempts: 5,
    backoffMs: 5000,
    // Training runs in a child process; a day is a bound on a hung run, not a budget.
    timeoutMs: 24 * 60 * 60_000,
    key: (p) => `${p.jobId}-r${p.run ?? 0}`,
    description: "Run (or resume from its last checkpoint) one fine-tuning job and register its adapter.",
  }),
} as const satisfies Record<string, JobSpec>;

export type JobName = keyof typeof JOBS;
export type JobPayload<N extends JobName> = z.output<(typeof JOBS)[N]["payload"]>;

/** Operator (or test) tuning of a job's retry policy; the payload contract never changes. */
export type PolicyOverrides = Partial<
  Record<JobName, Partial<Pick<JobSpec, "attempts" | "backoffMs" | "timeoutMs">>>
>;

export function policyOf(name: JobName, overrides?: PolicyOverrides) {
  const spec = JOBS[name];
  return {
    attempts: overrides?.[name]?.attempts ?? spec.attempts,
    backoffMs: overrides?.[name]?.backoffMs ?? spec.backoffMs,
    timeoutMs: overrides?.[name]?.timeoutMs ?? spec.timeoutMs,
  };
}

/** The jobs of the queues `Q` (type level: `JobsOf<"attribution">` = "attribution.index" | "attribution.score"). */
export type JobsOf<Q extends QueueName> = {
  [N in JobName]: (typeof JOBS)[N]["queue"] extends Q ? N : never;
}[JobName];

export function jobsOfQueue(queue: QueueName): JobName[] {
  return (Object.keys(JOBS) as JobName[]).filter((name) => JOBS[name].queue === queue).sort();
}
