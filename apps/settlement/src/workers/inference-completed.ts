import { completedInferenceIds, type JobHandler, type Producer } from "@openledger/queue";
import type { App } from "@openledger/service-kit";
import type { SettleOutcome } from "../lib/settle.ts";

export class InferenceNotFoundError extends Error {
  constructor(id: string) {
    super(`inference ${id} not found (not committed yet?); will retry`);
    this.name = "InferenceNotFoundError";
  }
}

/**
 * `inference.completed`, one inference or a batch: each id goes through the group commit.
 * Idempotent per inference: a redelivered event (or an id in two batches) finds ledger key
 * `fee:<id>` and changes nothing. An inference still waiting for its attribution quorum is parked
 * in `settlement_pending` (the sweeper settles it later), so the job completes instead of
 * occupying retries. An unknown id fails a one-inference job (retried with backoff); in a batch
 * it is handed to its own one-inference job, so the rest of the batch completes and that id
 * keeps its own retries and, at worst, its own entry in the failed set.
 */
export function inferenceCompletedWorker(
  app: App,
  producer: Pick<Producer, "enqueue"> = app.producer,
): JobHandler<"inference.completed"> {
  return async (payload) => {
    const rt = app.settlement;
    const ids = completedInferenceIds(payload);
    const outcomes = await Promise.all(ids.map((id) => rt.settle(id)));
    const missing = [...new Set(ids.filter((_, i) => outcomes[i] === "missing"))];
    if (payload.inferenceId !== undefined) {
      if (missing.length > 0) throw new InferenceNotFoundError(payload.inferenceId);
      return { outcome: outcomes[0] };
    }
    // Enqueued before this job completes: if Redis refuses, this job fails and is retried whole.
    await Promise.all(missing.map((inferenceId) => producer.enqueue("inference.completed", { inferenceId })));
    const counts: Partial<Record<SettleOutcome, number>> = {};
    for (const o of outcomes) counts[o] = (counts[o] ?? 0) + 1;
    return { outcomes: counts, requeued: missing };
  };
}
