import { createHash, randomBytes, randomInt } from "node:crypto";
import type { FactoryConfig } from "@openledger/config";
import { type Db, type FineTuningJob, Prisma, withTransaction } from "@openledger/db";
import { AppError } from "@openledger/errors";
import { type Producer, jobId as queueJobId } from "@openledger/queue";
import type { FastifyBaseLogger } from "fastify";
import { z } from "zod";
import type { GatewayClient } from "./gateway.ts";
import {
  Hyperparameters,
  PlanError,
  type ResolvedHyperparameters,
  resolveHyperparameters,
  trainingBound,
  trainingFee,
  trainingHyperparameters,
} from "./plan.ts";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** Most datanet versions one job may train on. */
export const MAX_TRAINING_VERSIONS = 16;
const ACTIVE = ["validating_files", "queued", "running"] as const;
/** Jobs that block an identical one: it would train (or has trained) the same adapter. */
const LIVE = [...ACTIVE, "succeeded"] as const;

/**
 * SHA-256 of what decides a job's trained weights, known when it is created: the base weights, the
 * datanet versions in training order (rows are exported version by version), the resolved
 * hyperparameters and the seed. Given the versions' (immutable) rows these fix the training-config
 * hash the run will compute once it has tokenized them, and the adapter's bytes; so two jobs with
 * the same request hash are the same training. Prices, suffix, metadata and the thread count are
 * left out: they do not change the adapter (the gateway would refuse its second copy anyway).
 */
export function trainingRequestHash(input: {
  baseModelHash: string;
  datanetVersionIds: readonly string[];
  hyperparameters: ResolvedHyperparameters;
  seed: number;
}): string {
  const canonical = {
    base: input.baseModelHash,
    versions: [...input.datanetVersionIds],
    hyperparameters: trainingHyperparameters(input.hyperparameters),
    seed: input.seed,
  };
  return createHash("sha256").update(JSON.stringify(canonical)).digest("hex");
}

/** POST /v1/fine_tuning/jobs: OpenAI's request, `training_file` = datanet version ids. */
export const CreateJobBody = z
  .object({
    model: z.string().min(1).max(128).describe("The base model id (the gateway's)"),
    training_file: z
      .string()
      .min(1)
      .max(MAX_TRAINING_VERSIONS * 40)
      .describe("One published datanet version id, or several separated by commas"),
    hyperparameters: Hyperparameters.optional(),
    method: z
      .object({
        type: z.literal("supervised"),
        supervised: z.object({ hyperparameters: Hyperparameters.optional() }).strict().optional(),
      })
      .strict()
      .optional(),
    suffix: z
      .string()
      .regex(/^[A-Za-z0-9._-]{1,40}$/, "letters, digits, '.', '_', '-' (at most 40)")
      .nullish(),
    seed: z.number().int().min(0).max(2_147_483_647).nullish(),
    validation_file: z
      .null()
      .optional()
      .describe("Not supported (held-out loss is measured by bench:factory)"),
    metadata: z.record(z.string().max(64), z.string().max(512)).nullish(),
    integrations: z.array(z.unknown()).max(0, "integrations are not supported").nullish(),
    /** Prices of the resulting adapter, wei per 1,000 input / output tokens (default: the factory's). */
    price_in_per_1k_wei: z
      .string()
      .regex(/^\d{1,38}$/)
      .optional(),
    price_out_per_1k_wei: z
      .string()
      .regex(/^\d{1,38}$/)
      .optional(),
  })
  .strict();
export type CreateJobInput = z.infer<typeof CreateJobBody>;

export const ListQuery = z.object({
  after: z.string().max(80).optional(),
  limit: z.coerce.number().int().min(1).max(100).default(20),
});

function unix(d: Date | null | undefined): number | null {
  return d ? Math.floor(d.getTime() / 1000) : null;
}

const Unix = z.number().int().describe("Unix seconds");
const Wei = z.string().regex(/^\d+$/).describe("wei of OPEN, a decimal string");

/** The hyperparameters as the job runs them (resolved: no "auto"). */
export const JobHyperparameters = z.object({
  n_epochs: z.number().int(),
  batch_size: z.number().int(),
  learning_rate_multiplier: z.number(),
  lora_rank: z.number().int(),
  lora_alpha: z.number(),
  seq_len: z.number().int(),
  max_steps: z.number().int().nullable(),
});

/**
 * A job as the API shows it: OpenAI's `fine_tuning.job`, plus the platform's fields (the routes'
 * response schema: what the SDK's types are read from).
 */
export const JobObject = z.object({
  object: z.literal("fine_tuning.job"),
  id: z.string(),
  model: z.string().describe("The base model"),
  created_at: Unix,
  finished_at: Unix.nullable(),
  fine_tuned_model: z.string().nullable().describe("The adapter's model id, once registered"),
  organization_id: z.string().describe("The builder's address"),
  result_files: z.array(z.string()),
  status: z.enum(["validating_files", "queued", "running", "succeeded", "failed", "cancelled"]),
  training_file: z.string().describe("The datanet version ids, separated by commas"),
  validation_file: z.null(),
  hyperparameters: JobHyperparameters,
  method: z.object({
    type: z.literal("supervised"),
    supervised: z.object({ hyperparameters: JobHyperparameters }),
  }),
  trained_tokens: z.number().int().nullable(),
  error: z.object({ code: z.string(), message: z.string(), param: z.string().nullable() }).nullable(),
  seed: z.number().int(),
  estimated_finish: Unix.nullable(),
  integrations: z.array(z.unknown()),
  metadata: z.record(z.string(), z.string()).nullable(),
  user_provided_suffix: z.string().nullable(),
  datanet_version_ids: z.array(z.string()),
  base_model_hash: z.string(),
  training_config_hash: z.string().nullable(),
  progress: z.object({
    step: z.number().int(),
    total_steps: z.number().int().nullable(),
    loss: z.number().nullable(),
    tokens_per_second: z.number().nullable(),
    trained_tokens: z.number().int(),
    planned_tokens: z.number().int().nullable(),
  }),
  fee: z.object({
    price_per_1k_tokens_wei: Wei,
    escrow_hold_wei: Wei.describe("The fee's upper bound, held in the builder's escrow"),
    fee_wei: Wei.nullable().describe("Billed on the tokens trained, once the adapter is registered"),
  }),
  adapter_content_hash: z.string().nullable(),
});
export type JobObject = z.infer<typeof JobObject>;

export const EventObject = z.object({
  object: z.literal("fine_tuning.job.event"),
  id: z.string(),
  created_at: Unix,
  level: z.enum(["info", "warn", "error"]),
  message: z.string(),
  data: z.unknown(),
  type: z.enum(["message", "metrics"]),
});

export const JobList = z.object({
  object: z.literal("list"),
  data: z.array(JobObject),
  has_more: z.boolean(),
});
export const EventList = z.object({
  object: z.literal("list"),
  data: z.array(EventObject),
  has_more: z.boolean(),
});

/** A job row as the API shows it (`JobObject`). */
export function jobView(j: FineTuningJob): JobObject {
  const h = j.hyperparameters as Record<string, unknown>;
  const hyperparameters = {
    n_epochs: h.n_epochs as number,
    batch_size: h.batch_size as number,
    learning_rate_multiplier: h.learning_rate_multiplier as number,
    lora_rank: h.lora_rank as number,
    lora_alpha: h.lora_alpha as number,
    seq_len: h.seq_len as number,
    max_steps: (h.max_steps as number | null | undefined) ?? null,
  };
  return {
    object: "fine_tuning.job" as const,
    id: j.id,
    model: j.baseModel,
    created_at: unix(j.createdAt)!,
    finished_at: unix(j.finishedAt),
    fine_tuned_model: j.fineTunedModel,
    organization_id: j.accountAddress,
    result_files: [] as string[],
    status: j.status,
    training_file: j.datanetVersionIds.join(","),
    validation_file: null,
    hyperparameters,
    method: { type: "supervised" as const, supervised: { hyperparameters } },
    trained_tokens: j.status === "succeeded" ? Number(j.trainedTokens) : null,
    error: (j.error as { code: string; message: string; param: string | null } | null) ?? null,
    seed: j.seed,
    estimated_finish: j.status === "running" ? unix(j.estimatedFinish) : null,
    integrations: [] as unknown[],
    metadata: (j.metadata as Record<string, string> | null) ?? null,
    user_provided_suffix: j.suffix,
    // The platform's own fields.
    datanet_version_ids: j.datanetVersionIds,
    base_model_hash: j.baseModelHash,
    training_config_hash: j.configHash,
    progress: {
      step: j.step,
      total_steps: j.totalSteps,
      loss: j.loss,
      tokens_per_second: j.tokensPerSecond,
      trained_tokens: Number(j.trainedTokens),
      planned_tokens: j.plannedTokens === null ? null : Number(j.plannedTokens),
    },
    fee: {
      price_per_1k_tokens_wei: j.pricePer1kTokensWei.toFixed(0),
      escrow_hold_wei: j.maxFeeWei.toFixed(0),
      fee_wei: j.feeWei?.toFixed(0) ?? null,
    },
    adapter_content_hash: j.adapterContentHash,
  };
}

export function eventView(e: {
  id: bigint;
  createdAt: Date;
  level: string;
  type: string;
  message: string;
  data: unknown;
}): z.infer<typeof EventObject> {
  return {
    object: "fine_tuning.job.event" as const,
    id: `ftevent-${e.id}`,
    created_at: unix(e.createdAt)!,
    level: e.level as "info" | "warn" | "error",
    message: e.message,
    data: e.data ?? {},
    type: e.type as "message" | "metrics",
  };
}

/** Appends an event to a job (messages and metrics, OpenAI's `fine_tuning.job.event`). */
export async function addEvent(
  db: Db | Prisma.TransactionClient,
  jobId: string,
  message: string,
  options: { level?: "info" | "warn" | "error"; type?: "message" | "metrics"; data?: unknown } = {},
): Promise<void> {
  await db.fineTuningEvent.create({
    data: {
      jobId,
      message,
      level: options.level ?? "info",
      type: options.type ?? "message",
      ...(options.data !== undefined ? { data: options.data as Prisma.InputJsonValue } : {}),
    },
  });
}

export interface BaseModelInfo {
  /** SHA-256 of the factory's base model.safetensors. */
  contentHash: string;
  dir: string;
  maxPositionEmbeddings: number;
}

/**
 * Fine-tuning jobs: creation (validated, priced, the escrow hold taken through a training grant the
 * builder's own key creates at the gateway), listing, events, cancellation, and the sweep that
 * resumes jobs whose runner went away. The training itself is `JobRunner`'s.
 */
export class FineTuningJobs {
  constructor(
    readonly config: FactoryConfig,
    readonly db: Db,
    readonly producer: Producer,
    readonly gateway: GatewayClient,
    readonly base: () => Promise<BaseModelInfo>,
    readonly log: FastifyBaseLogger,
  ) {}

  /**
   * Creates a job for `account`. Every refusal comes before anything is written: a bad request
   * (400), an unknown (404) or unpublished (409) datanet version, a base model the gateway does not
   * serve, no escrow to hold the fee (402, from the gateway). Then the gateway's grant holds the
   * fee's upper bound in the escrow, the job is stored and queued.
   */
  async create(account: string, authorization: string, body: CreateJobInput): Promise<FineTuningJob> {
    const servedBase = await this.gateway.baseModel();
    if (body.model !== servedBase.id) {
      throw new AppError(
        "MODEL_NOT_FOUND",
        `The model '${body.model}' does not exist (the base model is '${servedBase.id}')`,
        {
          status: 404,
          details: { param: "model" },
        },
      );
    }
    const base = await this.base();
    if (base.contentHash !== servedBase.contentHash) {
      throw new AppError(
        "BASE_MODEL_MISMATCH",
        `the factory's base weights (${base.contentHash.slice(0, 12)}…) are not the ones the gateway serves (${servedBase.contentHash.slice(0, 12)}…): an adapter trained here would not fit; point FACTORY_MODEL_DIR at the gateway's model`,
        { status: 409 },
      );
    }
    const versionIds = parseTrainingFile(body.training_file);
    const versions = await this.db.$queryRaw<
      { id: string; status: string; chain_datanet_id: string | null }[]
    >`
      SELECT v.id::text AS id, v.status::text AS status, d.chain_datanet_id::text AS chain_datanet_id
        FROM datanet_versions v JOIN datanets d ON d.id = v.datanet_id
       WHERE v.id = ANY(${versionIds}::uuid[])`;
    for (const id of versionIds) {
      const v = versions.find((x) => x.id === id);
      if (!v) {
        throw new AppError("DATANET_VERSION_NOT_FOUND", `datanet version ${id} does not exist`, {
          status: 404,
          details: { param: "training_file" },
        });
      }
      if (v.status === "pending" || v.chain_datanet_id === null) {
        throw new AppError(
          "DATANET_VERSION_NOT_PUBLISHED",
          `datanet version ${id} is not published yet (its root is not on chain): train on a published version`,
          { status: 409, details: { param: "training_file" } },
        );
      }
    }
    const [stats] = await this.db.$queryRaw<{ rows: number; bytes: string }[]>`
      SELECT count(*)::int AS rows, COALESCE(sum(octet_length(r.text)), 0)::text AS bytes
        FROM datanet_version_rows vr JOIN datanet_rows r ON r.id = vr.row_id
       WHERE vr.version_id = ANY(${versionIds}::uuid[])`;
    if (!stats || stats.rows === 0) {
      throw new AppError("EMPTY_TRAINING_DATA", "these datanet versions hold no rows to train on", {
        status: 400,
        details: { param: "training_file" },
      });
    }
    let h: ReturnType<typeof resolveHyperparameters>;
    try {
      h = resolveHyperparameters(body.method?.supervised?.hyperparameters ?? body.hyperparameters ?? {}, {
        maxRank: 16,
        maxSeq: Math.min(base.maxPositionEmbeddings, servedBase.maxPositionEmbeddings),
        maxSteps: this.config.FACTORY_MAX_STEPS,
      });
    } catch (err) {
      if (err instanceof PlanError)
        throw new AppError("INVALID_VALUE", err.message, { status: 400, details: { param: err.param } });
      throw err;
    }
    const bound = trainingBound(h, { bytes: Number(stats.bytes), rows: stats.rows });
    if (bound.steps > this.config.FACTORY_MAX_STEPS) {
      throw new AppError(
        "INVALID_VALUE",
        `this job could take up to ${bound.steps} steps, above this factory's limit of ${this.config.FACTORY_MAX_STEPS}: set hyperparameters.max_steps or fewer n_epochs`,
        { status: 400, details: { param: "hyperparameters" } },
      );
    }
    const price = BigInt(this.config.FACTORY_PRICE_PER_THOUSAND_TRAINED_TOKENS_WEI);
    const id = `ftjob-${randomBytes(12).toString("hex")}`;
    const seed = body.seed ?? randomInt(0, 2_147_483_647);
    const requestHash = trainingRequestHash({
      baseModelHash: base.contentHash,
      datanetVersionIds: versionIds,
      hyperparameters: h,
      seed,
    });
    // An identical job that is queued, running or succeeded: refused before any hold is taken. This
    // look-up only spares the gateway a grant in the common case; two concurrent creates both pass
    // it, and the unique index on request_hash refuses the second insert below.
    const existing = await this.db.fineTuningJob.findFirst({
      where: { requestHash, status: { in: [...LIVE] } },
    });
    if (existing) throw duplicateJob(existing, account);
    // The hold: the builder's own key asks the gateway for a grant; nothing is written here unless
    // it succeeds (402 without enough escrow), and the grant is released if our write fails.
    const grant = await this.gateway.createGrant(authorization, {
      job: id,
      datanetVersionIds: versionIds,
      baseModelHash: base.contentHash,
      pricePer1kTokensWei: price,
      maxTokens: bound.tokens,
      expiresInSeconds: this.config.FACTORY_JOB_TTL_HOURS * 3600,
    });
    let job: FineTuningJob;
    try {
      job = await withTransaction(this.db, async (tx) => {
        const created = await tx.fineTuningJob.create({
          data: {
            id,
            accountAddress: account,
            baseModel: servedBase.id,
            baseModelHash: base.contentHash,
            suffix: body.suffix ?? null,
            status: "queued",
            datanetVersionIds: versionIds,
            hyperparameters: {
              ...h,
              price_in_per_1k_wei:
                body.price_in_per_1k_wei ?? this.config.FACTORY_ADAPTER_PRICE_IN_PER_THOUSAND_WEI,
              price_out_per_1k_wei:
                body.price_out_per_1k_wei ?? this.config.FACTORY_ADAPTER_PRICE_OUT_PER_THOUSAND_WEI,
              threads: this.config.FACTORY_TRAIN_THREADS,
              step_bound: bound.steps,
            } as unknown as Prisma.InputJsonValue,
            seed,
            requestHash,
            ...(body.metadata ? { metadata: body.metadata } : {}),
            pricePer1kTokensWei: new Prisma.Decimal(price.toString()),
            maxFeeWei: new Prisma.Decimal(grant.maxFeeWei),
            grantId: grant.id,
            grantToken: grant.token,
          },
        });
        await addEvent(tx, id, `Created fine-tuning job: ${id}`);
        await addEvent(
          tx,
          id,
          `Escrow hold of ${grant.maxFeeWei} wei (at most ${bound.tokens} trained tokens at ${price} wei per 1k; the fee is billed on the tokens actually trained)`,
          { data: { max_tokens: bound.tokens, max_fee_wei: grant.maxFeeWei, grant_id: grant.id } },
        );
        return created;
      });
    } catch (err) {
      await this.gateway.releaseGrant(grant).catch(() => {});
      // Lost the race to an identical job created meanwhile (the partial unique index
      // fine_tuning_jobs_request_hash_live_key): name it; it is committed by now. Any other conflict is rethrown.
      if ((err as { code?: string }).code === "P2002") {
        const winner = await this.db.fineTuningJob.findFirst({
          where: { requestHash, status: { in: [...LIVE] } },
        });
        if (winner) throw duplicateJob(winner, account);
      }
      throw err;
    }
    if (trainingFee(bound.tokens, price).toString() !== grant.maxFeeWei) {
      this.log.warn({ job: id, grant: grant.maxFeeWei }, "the gateway held a different amount than priced");
    }
    await this.enqueue(id, 0);
    return job;
  }

  /** Queues run `run` of a job; if Redis refuses, the resume sweep queues it later. */
  async enqueue(id: string, run: number): Promise<void> {
    try {
      await this.producer.enqueue("finetuning.run", { jobId: id, run });
    } catch (err) {
      this.log.warn({ err, job: id }, "could not queue the job; the resume sweep will");
    }
  }

  async get(account: string, id: string): Promise<FineTuningJob> {
    const job = await this.db.fineTuningJob.findUnique({ where: { id } });
    // Another account's job is "not found", not "forbidden": ids are not disclosed.
    if (!job || job.accountAddress !== account) {
      throw new AppError("NOT_FOUND", `fine-tuning job ${id} not found`, { status: 404 });
    }
    return job;
  }

  async list(account: string, after: string | undefined, limit: number) {
    let cursor: FineTuningJob | null = null;
    if (after)
      cursor = await this.db.fineTuningJob.findFirst({ where: { id: after, accountAddress: account } });
    const rows = await this.db.fineTuningJob.findMany({
      where: {
        accountAddress: account,
        ...(cursor
          ? {
              OR: [
                { createdAt: { lt: cursor.createdAt } },
                { createdAt: cursor.createdAt, id: { lt: cursor.id } },
              ],
            }
          : {}),
      },
      orderBy: [{ createdAt: "desc" }, { id: "desc" }],
      take: limit + 1,
    });
    return { data: rows.slice(0, limit), hasMore: rows.length > limit };
  }

  async events(account: string, id: string, after: string | undefined, limit: number) {
    await this.get(account, id);
    const before = after ? /^ftevent-(\d{1,18})$/.exec(after)?.[1] : undefined;
    if (after && before === undefined) {
      throw new AppError("INVALID_VALUE", "after: an event id (ftevent-…)", {
        status: 400,
        details: { param: "after" },
      });
    }
    const rows = await this.db.fineTuningEvent.findMany({
      where: { jobId: id, ...(before ? { id: { lt: BigInt(before) } } : {}) },
      orderBy: { id: "desc" },
      take: limit + 1,
    });
    return { data: rows.slice(0, limit), hasMore: rows.length > limit };
  }

  /**
   * Cancels a job that has not started registering its adapter: its runner sees it within seconds,
   * kills the training process and releases the escrow hold (released here at once when no runner
   * holds it). Past the point of registration a job finishes: an adapter is registered whole or not
   * at all.
   */
  async cancel(account: string, id: string): Promise<FineTuningJob> {
    const [row] = await this.db.$queryRaw<{ id: string; leased: boolean }[]>`
      UPDATE fine_tuning_jobs SET status = 'cancelled', finished_at = now(), updated_at = now()
       WHERE id = ${id} AND account_address = ${account}
         AND status IN ('validating_files', 'queued', 'running') AND registering_at IS NULL
      RETURNING id, (lease_until IS NOT NULL AND lease_until > now()) AS leased`;
    const job = await this.get(account, id);
    if (!row) {
      if (job.status === "cancelled") return job;
      throw new AppError(
        "JOB_NOT_CANCELLABLE",
        job.registeringAt && (ACTIVE as readonly string[]).includes(job.status)
          ? `fine-tuning job ${id} has finished training and is registering its model`
          : `fine-tuning job ${id} has already ${job.status}`,
        { status: 409 },
      );
    }
    await addEvent(this.db, id, "Job cancelled", { level: "warn" });
    if (!row.leased) await this.releaseGrant(job);
    return job;
  }

  /** Releases a job's escrow hold (idempotent at the gateway; if it cannot be reached, the hold expires). */
  async releaseGrant(job: Pick<FineTuningJob, "id" | "grantId" | "grantToken">): Promise<void> {
    try {
      await this.gateway.releaseGrant({ id: job.grantId, token: job.grantToken });
    } catch (err) {
      this.log.warn({ err, job: job.id }, "escrow hold not released now; it expires with the grant");
    }
  }

  /**
   * Resumes jobs whose runner went away: still queued or running, nobody holding their lease, and
   * their queue job not waiting to run (finished because the factory shut down mid-run, failed or
   * stuck active after a crash, or never queued because Redis refused). Each gets a new queue job (`<id>-r<run>`); the run
   * continues from the job's last checkpoint. Returns how many it queued.
   */
  async resumeAbandoned(): Promise<number> {
    const candidates = await this.db.$queryRaw<{ id: string; runs: number }[]>`
      SELECT id, runs FROM fine_tuning_jobs
       WHERE status IN ('validating_files', 'queued', 'running')
         AND (lease_until IS NULL OR lease_until < now())
         AND updated_at < now() - interval '5 seconds'
       ORDER BY created_at LIMIT 100`;
    let queued = 0;
    for (const c of candidates) {
      const state = await this.producer
        .queue("factory")
        .getJobState(queueJobId("finetuning.run", { jobId: c.id, run: c.runs }));
      // Waiting to run: leave it. Active with a lapsed lease is a dead worker's job (BullMQ would
      // notice only after its own lock lapses): a new run claims the lease; if the old one ever
      // wakes up, it finds the lease taken and returns.
      if (
        state === "waiting" ||
        state === "delayed" ||
        state === "prioritized" ||
        state === "waiting-children"
      )
        continue;
      const bumped = await this.db.$executeRaw`
        UPDATE fine_tuning_jobs SET runs = runs + 1, updated_at = now() WHERE id = ${c.id} AND runs = ${c.runs}`;
      if (bumped === 0) continue; // another replica took it
      await addEvent(this.db, c.id, "Resuming the job (its previous run ended before it finished)");
      await this.enqueue(c.id, c.runs + 1);
      queued++;
    }
    return queued;
  }
}

/**
 * 409 for a repeated identical job. The existing job's id is named to its owner only (another
 * account's job ids are not disclosed: they are "not found" to it); its model, once registered, is
 * public at the gateway and named to anyone.
 */
function duplicateJob(existing: FineTuningJob, account: string): AppError {
  const own = existing.accountAddress === account;
  const what = own
    ? `your job ${existing.id}${existing.fineTunedModel ? ` (model ${existing.fineTunedModel})` : ""}`
    : existing.fineTunedModel
      ? `the model ${existing.fineTunedModel}`
      : "another account's job";
  return new AppError(
    "DUPLICATE_JOB",
    `an identical fine-tuning job (same base model, datanet versions, hyperparameters and seed) is already ${existing.status}: ${what}; it trains the same adapter. Use another seed or hyperparameters, or cancel it first`,
    {
      status: 409,
      details: {
        param: "seed",
        ...(own ? { job: existing.id } : {}),
        ...(existing.fineTunedModel ? { model: existing.fineTunedModel } : {}),
      },
    },
  );
}

/** `training_file`: one datanet version id, or several separated by commas. */
export function parseTrainingFile(text: string): string[] {
  const ids = [
    ...new Set(
      text
        .split(",")
        .map((s) => s.trim().toLowerCase())
        .filter(Boolean),
    ),
  ];
  if (ids.length === 0 || ids.length > MAX_TRAINING_VERSIONS || !ids.every((id) => UUID.test(id))) {
    throw new AppError(
      "INVALID_VALUE",
      `training_file: one to ${MAX_TRAINING_VERSIONS} published datanet version ids (uuids), separated by commas`,
      { status: 400, details: { param: "training_file" } },
    );
  }
  return ids;
}
