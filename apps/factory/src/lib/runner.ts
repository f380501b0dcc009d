import { createWriteStream } from "node:fs";
import { access, mkdir, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import type { FactoryConfig } from "@openledger/config";
import { type Db, type FineTuningJob, Prisma, rawPool } from "@openledger/db";
import { AppError } from "@openledger/errors";
import type { JobContext } from "@openledger/queue";
import type { FastifyBaseLogger } from "fastify";
import type { TrainingProcess } from "../train/process.ts";
import type { FromTrainer, ToTrainer } from "../train/protocol.ts";
import type { GatewayClient } from "./gateway.ts";
import { addEvent, type BaseModelInfo, type FineTuningJobs } from "./jobs.ts";
import { type ResolvedHyperparameters, trainingFee, trainingHyperparameters } from "./plan.ts";

/** A runner holds a job's lease this long without renewing it. */
export const LEASE_MS = 15_000;
/** How often a runner renews its lease and looks for a cancellation (so a cancel acts within it). */
const RENEW_MS = 2000;
/** Job rows are updated with progress at most this often (and at checkpoints, and at the end). */
const PROGRESS_WRITE_MS = 1000;
/** At most this many per-step metrics events per job (every step of a short job). */
const METRIC_EVENTS = 100;
/** Rows read per query when the training data is exported. */
const EXPORT_PAGE = 2000;

/** How a run ended, for logs and tests. */
export type RunOutcome =
  | "succeeded"
  | "failed"
  | "cancelled"
  | "stopped"
  | "not_claimed"
  | "already_finished";

type StoredHyperparameters = ResolvedHyperparameters & {
  price_in_per_1k_wei: string;
  price_out_per_1k_wei: string;
  threads: number;
  step_bound: number;
};

/** A start message for a training process (what `TrainingProcess` is built from). */
export type StartTraining = (start: Extract<ToTrainer, { type: "start" }>) => TrainingProcess;

/** The adapter id of a job: `ft-<base>-<suffix>-<8 hex of the job>` (the gateway's id alphabet). */
export function fineTunedModelId(job: Pick<FineTuningJob, "id" | "baseModel" | "suffix">): string {
  const base = job.baseModel.replace(/[^A-Za-z0-9._-]/g, "-");
  return `ft-${base}-${job.suffix ?? "adapter"}-${job.id.slice(6, 14)}`.slice(0, 128);
}

/**
 * Runs one fine-tuning job: claims its lease (one runner per job across replicas), exports its
 * rows, trains in a child process (resuming from the job's last checkpoint), reports progress to
 * the job row and its events, watches for cancellation, then registers the adapter through the
 * gateway with the job's grant. A crash anywhere leaves the job resumable: the checkpoint for
 * training, and an idempotent registration (the gateway answers a repeated upload of the same
 * files under a used grant with the same model) for the last step.
 */
export class JobRunner {
  constructor(
    readonly config: FactoryConfig,
    readonly db: Db,
    readonly jobs: FineTuningJobs,
    readonly gateway: GatewayClient,
    readonly base: () => Promise<BaseModelInfo>,
    readonly dataDir: string,
    readonly runnerId: string,
    readonly startTraining: StartTraining,
    /** Aborted when the service shuts down: the run checkpoints and stops (resumed later). */
    readonly shutdown: AbortSignal,
    readonly log: FastifyBaseLogger,
  ) {}

  jobDir(id: string): string {
    return join(this.dataDir, "jobs", id);
  }

  /** Takes the job's lease if nobody holds it; starts it (queued → running). */
  async #claim(id: string): Promise<FineTuningJob | undefined> {
    const rows = await this.db.$queryRaw<{ id: string }[]>`
      UPDATE fine_tuning_jobs
         SET runner_id = ${this.runnerId}, lease_until = now() + ${LEASE_MS}::int * interval '1 millisecond',
             status = 'running', started_at = COALESCE(started_at, now()), updated_at = now()
       WHERE id = ${id} AND status IN ('validating_files', 'queued', 'running')
         AND (lease_until IS NULL OR lease_until < now() OR runner_id = ${this.runnerId})
      RETURNING id`;
    if (rows.length === 0) return undefined;
    return this.db.fineTuningJob.findUniqueOrThrow({ where: { id } });
  }

  /** Renews the lease; returns the job's status (so a cancellation is seen within a renewal). */
  async #renew(id: string): Promise<string | undefined> {
    const [row] = await this.db.$queryRaw<{ status: string }[]>`
      UPDATE fine_tuning_jobs SET lease_until = now() + ${LEASE_MS}::int * interval '1 millisecond'
       WHERE id = ${id} AND runner_id = ${this.runnerId}
      RETURNING status::text AS status`;
    return row?.status;
  }

  async #releaseLease(id: string): Promise<void> {
    await this.db.$executeRaw`
      UPDATE fine_tuning_jobs SET runner_id = NULL, lease_until = NULL, updated_at = now()
       WHERE id = ${id} AND runner_id = ${this.runnerId}`;
  }

  async run(
    jobId: string,
    ctx?: Pick<JobContext, "attempt" | "maxAttempts" | "signal">,
  ): Promise<RunOutcome> {
    const job = await this.#claim(jobId);
    if (!job) {
      const current = await this.db.fineTuningJob.findUnique({ where: { id: jobId } });
      if (current?.status === "cancelled") await this.#cleanUp(current, "cancelled");
      return current && !["validating_files", "queued", "running"].includes(current.status)
        ? "already_finished"
        : "not_claimed";
    }
    let cancelled = false;
    let onCancel: (() => void) | undefined;
    const renewer = setInterval(() => {
      this.#renew(jobId).then(
        (status) => {
          if (status === "cancelled" || status === undefined) {
            cancelled = true;
            onCancel?.();
          }
        },
        (err) => this.log.warn({ err, job: jobId }, "lease renewal failed"),
      );
    }, RENEW_MS);
    try {
      if (!job.registeringAt) {
        const trained = await this.#train(job, {
          onCancel: (fn) => {
            onCancel = fn;
            if (cancelled) fn();
          },
          cancelled: () => cancelled,
          ...(ctx?.signal ? { signal: ctx.signal } : {}),
        });
        if (trained !== "done") {
          if (trained === "cancelled") await this.#cleanUp(job, "cancelled");
          else await this.#releaseLease(jobId);
          return trained;
        }
      }
      return await this.#register(jobId);
    } catch (err) {
      const final = !ctx || ctx.attempt >= ctx.maxAttempts || (err instanceof AppError && err.status < 500);
      if (final) {
        await this.#fail(jobId, err);
        return "failed";
      }
      await addEvent(
        this.db,
        jobId,
        `Run interrupted, will resume from the last checkpoint: ${message(err)}`,
        {
          level: "warn",
        },
      ).catch(() => {});
      await this.#releaseLease(jobId).catch(() => {});
      throw err;
    } finally {
      clearInterval(renewer);
    }
  }

  /** The rows of the job's datanet versions, in training order, as JSON lines (written once). */
  async #exportData(job: FineTuningJob, file: string): Promise<void> {
    try {
      await access(file);
      return;
    } catch {
      // not exported yet
    }
    const tmp = `${file}.tmp-${process.pid}`;
    const out = createWriteStream(tmp);
    const pool = rawPool(this.db);
    try {
      for (const versionId of job.datanetVersionIds) {
        let from = -1;
        for (;;) {
          const { rows } = await pool.query<{ position: number; s: string; t: string }>(
            `SELECT vr.position, r.contributor_address AS s, r.text AS t
               FROM datanet_version_rows vr JOIN datanet_rows r ON r.id = vr.row_id
              WHERE vr.version_id = $1::uuid AND vr.position > $2
              ORDER BY vr.position LIMIT $3`,
            [versionId, from, EXPORT_PAGE],
          );
          for (const r of rows) {
            if (!out.write(`${JSON.stringify({ s: r.s.toLowerCase(), t: r.t })}\n`)) {
              await new Promise<void>((resolve) => out.once("drain", () => resolve()));
            }
          }
          if (rows.length < EXPORT_PAGE) break;
          from = rows[rows.length - 1]!.position;
        }
      }
    } finally {
      await new Promise<void>((resolve, reject) =>
        out.end((err?: Error | null) => (err ? reject(err) : resolve())),
      );
    }
    await rename(tmp, file);
  }

  async #train(
    job: FineTuningJob,
    control: { onCancel(fn: () => void): void; cancelled(): boolean; signal?: AbortSignal },
  ): Promise<"done" | "stopped" | "cancelled"> {
    const dir = this.jobDir(job.id);
    await mkdir(dir, { recursive: true });
    const dataFile = join(dir, "data.jsonl");
    await this.#exportData(job, dataFile);
    const h = job.hyperparameters as unknown as StoredHyperparameters;
    const base = await this.base();
    const proc = this.startTraining({
      type: "start",
      modelDir: base.dir,
      dataFile,
      checkpointDir: join(dir, "checkpoint"),
      outDir: join(dir, "adapter"),
      hyperparameters: trainingHyperparameters(h),
      seed: job.seed,
      threads: h.threads,
      stepBound: h.step_bound,
      checkpointEvery: this.config.FACTORY_CHECKPOINT_EVERY_STEPS,
      baseModelName: job.baseModel,
    });
    control.onCancel(() => proc.kill());
    const onShutdown = () => proc.stop();
    this.shutdown.addEventListener("abort", onShutdown);
    const onTimeout = () => proc.kill();
    control.signal?.addEventListener("abort", onTimeout);
    if (this.shutdown.aborted) proc.stop();

    let total = job.totalSteps ?? 0;
    let metricEvery = 1;
    let lastWrite = 0;
    const recent: { tokens: number; ms: number }[] = [];
    let last: Extract<FromTrainer, { type: "step" }> | undefined;
    let outcome: "done" | "stopped" | undefined;
    let failure: string | undefined;
    const progress = async (force: boolean) => {
      if (!last || (!force && Date.now() - lastWrite < PROGRESS_WRITE_MS)) return;
      lastWrite = Date.now();
      const ms = recent.reduce((t, r) => t + r.ms, 0);
      const tokens = recent.reduce((t, r) => t + r.tokens, 0);
      const perStepMs = ms / Math.max(1, recent.length);
      const eta = new Date(Date.now() + Math.max(0, total - last.step) * perStepMs);
      await this.db.fineTuningJob.updateMany({
        where: { id: job.id, status: "running" },
        data: {
          step: last.step,
          loss: last.loss,
          trainedTokens: BigInt(last.trainedTokens),
          tokensPerSecond: ms > 0 ? (tokens * 1000) / ms : null,
          estimatedFinish: eta,
          updatedAt: new Date(),
        },
      });
    };
    try {
      for await (const m of proc.messages()) {
        switch (m.type) {
          case "plan": {
            total = m.totalSteps;
            metricEvery = Math.max(1, Math.ceil(total / METRIC_EVENTS));
            const fee = trainingFee(m.plannedTokens, BigInt(job.pricePer1kTokensWei.toFixed(0)));
            await this.db.fineTuningJob.update({
              where: { id: job.id },
              data: {
                totalSteps: m.totalSteps,
                plannedTokens: BigInt(m.plannedTokens),
                tokensByContributor: m.tokensByContributor,
                trainerOptions: m.options as unknown as Prisma.InputJsonValue,
                configHash: m.configHash,
                step: m.resumedAt,
                updatedAt: new Date(),
              },
            });
            await addEvent(
              this.db,
              job.id,
              m.resumedAt > 0
                ? `Resumed from the checkpoint at step ${m.resumedAt}/${m.totalSteps}`
                : `Training plan: ${m.totalSteps} steps over ${m.windows} windows, ${m.plannedTokens} tokens of ${Object.keys(m.tokensByContributor).length} contributors (fee ${fee} wei)`,
              {
                data: {
                  total_steps: m.totalSteps,
                  planned_tokens: m.plannedTokens,
                  fee_wei: fee.toString(),
                  training_config_hash: m.configHash,
                },
              },
            );
            break;
          }
          case "step": {
            last = m;
            recent.push({ tokens: m.tokens, ms: m.ms });
            if (recent.length > 20) recent.shift();
            await progress(m.step === total);
            if (m.step % metricEvery === 0 || m.step === total) {
              await addEvent(this.db, job.id, `Step ${m.step}/${total}: training loss=${m.loss.toFixed(4)}`, {
                type: "metrics",
                data: {
                  step: m.step,
                  train_loss: m.loss,
                  total_steps: total,
                  trained_tokens: m.trainedTokens,
                },
              });
            }
            break;
          }
          case "checkpoint":
            await progress(true);
            await addEvent(this.db, job.id, `Checkpoint saved at step ${m.step}`, { data: { step: m.step } });
            break;
          case "stopped":
            await progress(true);
            outcome = "stopped";
            await addEvent(
              this.db,
              job.id,
              `Paused at step ${m.step} (the factory is stopping); it resumes from here`,
            );
            break;
          case "done":
            outcome = "done";
            await progress(true);
            await addEvent(this.db, job.id, `Training finished: ${m.step} steps, ${m.trainedTokens} tokens`);
            break;
          case "error":
            failure = m.code === "PLAN_MISMATCH" ? m.message : m.message;
            break;
        }
      }
      const exit = await proc.exited;
      if (control.cancelled()) return "cancelled";
      if (outcome) return outcome;
      if (control.signal?.aborted) throw new Error("the run passed its time limit");
      throw new Error(
        `the training process ended without finishing (${exit.signal ?? `exit ${exit.code}`}): ${failure ?? proc.stderr.trim().split("\n").pop() ?? "no message"}`,
      );
    } finally {
      this.shutdown.removeEventListener("abort", onShutdown);
      control.signal?.removeEventListener("abort", onTimeout);
      proc.kill();
    }
  }

  /** Registers the trained adapter (once) and finishes the job. */
  async #register(jobId: string): Promise<RunOutcome> {
    const marked = await this.db.$executeRaw`
      UPDATE fine_tuning_jobs SET registering_at = COALESCE(registering_at, now()), updated_at = now()
       WHERE id = ${jobId} AND status = 'running' AND runner_id = ${this.runnerId}`;
    const job = await this.db.fineTuningJob.findUniqueOrThrow({ where: { id: jobId } });
    if (marked === 0) {
      if (job.status === "cancelled") await this.#cleanUp(job, "cancelled");
      return job.status === "cancelled" ? "cancelled" : "not_claimed";
    }
    const h = job.hyperparameters as unknown as StoredHyperparameters;
    const tokensByContributor = (job.tokensByContributor ?? {}) as Record<string, number>;
    const trainedTokens = Object.values(tokensByContributor).reduce((a, b) => a + b, 0);
    const id = fineTunedModelId(job);
    await addEvent(this.db, jobId, `Registering the adapter ${id} with the gateway`);
    const registration = await this.gateway.registerAdapter(job.grantToken, {
      id,
      dir: join(this.jobDir(jobId), "adapter"),
      priceInPer1kWei: BigInt(h.price_in_per_1k_wei),
      priceOutPer1kWei: BigInt(h.price_out_per_1k_wei),
      datanetVersionIds: job.datanetVersionIds,
      trainedTokens,
      tokensByContributor,
      trainingConfigHash: job.configHash ?? "",
      job: jobId,
    });
    const fee = trainingFee(trainedTokens, BigInt(job.pricePer1kTokensWei.toFixed(0)));
    await this.db.fineTuningJob.update({
      where: { id: jobId },
      data: {
        status: "succeeded",
        fineTunedModel: registration.id,
        adapterContentHash: registration.contentHash,
        feeWei: new Prisma.Decimal(fee.toString()),
        trainedTokens: BigInt(trainedTokens),
        finishedAt: new Date(),
        estimatedFinish: null,
        runnerId: null,
        leaseUntil: null,
        updatedAt: new Date(),
      },
    });
    await addEvent(this.db, jobId, `New fine-tuned model created: ${registration.id}`, {
      data: {
        model: registration.id,
        content_hash: registration.contentHash,
        chain: registration.chain,
        fee_wei: fee.toString(),
        trained_tokens: trainedTokens,
      },
    });
    await addEvent(this.db, jobId, "The job has successfully completed");
    await rm(join(this.jobDir(jobId), "checkpoint"), { recursive: true, force: true });
    await rm(join(this.jobDir(jobId), "data.jsonl"), { force: true });
    return "succeeded";
  }

  async #fail(jobId: string, err: unknown): Promise<void> {
    const code = err instanceof AppError ? err.code.toLowerCase() : "training_failed";
    const updated = await this.db.fineTuningJob.updateMany({
      where: { id: jobId, status: { in: ["validating_files", "queued", "running"] } },
      data: {
        status: "failed",
        error: { code, message: message(err), param: null },
        finishedAt: new Date(),
        estimatedFinish: null,
        runnerId: null,
        leaseUntil: null,
        updatedAt: new Date(),
      },
    });
    this.log.error({ err, job: jobId }, "fine-tuning job failed");
    const job = await this.db.fineTuningJob.findUniqueOrThrow({ where: { id: jobId } });
    if (updated.count > 0) {
      await addEvent(this.db, jobId, `Fine-tuning job failed: ${message(err)}`, { level: "error" });
    }
    await this.#cleanUp(job, "failed");
  }

  /** A job that ended without a model: its escrow hold released, its working files removed. */
  async #cleanUp(job: FineTuningJob, _why: "cancelled" | "failed"): Promise<void> {
    await this.jobs.releaseGrant(job);
    await this.db.$executeRaw`
      UPDATE fine_tuning_jobs SET runner_id = NULL, lease_until = NULL WHERE id = ${job.id}`;
    await rm(this.jobDir(job.id), { recursive: true, force: true });
  }
}

function message(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split("\n")[0]!.slice(0, 1000);
}
