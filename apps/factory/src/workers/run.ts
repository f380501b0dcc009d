import type { JobHandler } from "@openledger/queue";
import type { FastifyInstance } from "fastify";

/** `finetuning.run`: run (or resume) one job; idempotent (a job has one runner at a time, by lease). */
export function fineTuningRunWorker(app: FastifyInstance): JobHandler<"finetuning.run"> {
  return async (payload, ctx) => ({ outcome: await app.factory.runner.run(payload.jobId, ctx) });
}
