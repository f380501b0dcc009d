import type { JobContext } from "@openledger/queue";
import { UnrecoverableError } from "bullmq";
import type { FastifyInstance } from "fastify";
import { scoreOnce } from "./score-worker.ts";

/** How far back a validator looks for inferences it has not attributed yet. */
export const SCAN_WINDOW_MS = 60 * 60_000;

/**
 * Each validator is its own operator: it does not wait to be handed a share of a common job queue (one
 * `attribution.score` job reaches one process), it reads the public record. Every pass finds the recent
 * completed inferences of models with training data that this process's validators have not attributed
 * yet (oldest first, bounded) and scores them for those validators — the same `scoreOnce` the queue job
 * runs. An inference that cannot be scored for good is skipped for the rest of the process's life.
 */
export function validatorScan(app: FastifyInstance): (signal: AbortSignal) => Promise<number> {
  const score = scoreOnce(app);
  const given = new Set<string>();
  return async (signal: AbortSignal) => {
    const identities = await app.attribution.validators();
    let done = 0;
    for (const identity of identities) {
      const todo = await app.db.$queryRawUnsafe<{ id: string }[]>(
        `SELECT i.id::text AS id FROM inferences i
          WHERE i.status = 'completed' AND i.created_at > now() - make_interval(secs => $2::double precision / 1000)
            AND EXISTS (SELECT 1 FROM model_training_versions t WHERE t.model_id = i.model_id)
            AND NOT EXISTS (SELECT 1 FROM attribution_results r
                             WHERE r.inference_id = i.id AND r.validator_address = $1)
          ORDER BY i.created_at, i.id LIMIT 50`,
        identity.address,
        SCAN_WINDOW_MS,
      );
      for (const { id } of todo) {
        const key = `${identity.address}:${id}`;
        if (given.has(key)) continue;
        try {
          await score({ inferenceId: id, validatorAddress: identity.address }, scanContext(id, signal));
          done++;
        } catch (err) {
          // Unrecoverable (unknown inference, understaked validator...): not again. Anything else (an
          // index still building) is tried on the next pass.
          if (err instanceof UnrecoverableError) given.add(key);
          app.log.warn(
            { inferenceId: id, validator: identity.address, err: (err as Error).message },
            "validator scan: not scored",
          );
        }
      }
    }
    return done;
  };
}

const scanContext = (id: string, signal: AbortSignal): JobContext => ({
  id: `scan:${id}`,
  attempt: 1,
  maxAttempts: 1,
  signal,
  progress: async () => {},
});
