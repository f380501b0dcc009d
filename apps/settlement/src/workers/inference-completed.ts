import type { SettlementConfig } from "@openledger/config";
import type { JobHandler } from "@openledger/queue";
import type { App } from "@openledger/service-kit";
import { runtimeFor } from "../lib/runtime.ts";

export class InferenceNotFoundError extends Error {
  constructor(id: string) {
    super(`inference ${id} not found (not committed yet?); will retry`);
    this.name = "InferenceNotFoundError";
  }
}

/**
 * `inference.completed`: settle the inference through the group commit. Idempotent: a
 * redelivered event finds ledger key `fee:<id>` and changes nothing. An inference still
 * waiting for its attribution quorum is parked in `settlement_pending` (the sweeper settles
 * it later), so the job completes instead of occupying retries.
 */
export function inferenceCompletedWorker(
  app: App,
  config: SettlementConfig,
): JobHandler<"inference.completed"> {
  const rt = runtimeFor(app.db, config, app.log);
  return async ({ inferenceId }) => {
    const outcome = await rt.settle(inferenceId);
    if (outcome === "missing") throw new InferenceNotFoundError(inferenceId);
    return { outcome };
  };
}
