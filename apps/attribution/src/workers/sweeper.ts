import type { FastifyInstance } from "fastify";

/** How far back the sweeper looks for inferences still missing this process's results. */
const LOOKBACK_HOURS = 24;
const BATCH = 500;

/**
 * Safety net for the hand-off "inference completed -> attribution.score": completed inferences
 * of models with training data that still lack a result from one of the validators this process
 * holds get `attribution.score` enqueued. The job id is derived from the inference, so a job
 * already queued, done or failed for good (kept by BullMQ) is not duplicated. Returns the
 * inference ids it enqueued.
 */
export async function sweepOnce(app: FastifyInstance): Promise<string[]> {
  const validators = (await app.attribution.validators()).map((v) => v.address);
  if (validators.length === 0) return [];
  const rows = await app.db.$queryRawUnsafe<{ id: string }[]>(
    `SELECT i.id::text AS id
       FROM inferences i
      WHERE i.status = 'completed'
        AND i.created_at > now() - make_interval(hours => $3)
        AND EXISTS (SELECT 1 FROM model_training_versions m WHERE m.model_id = i.model_id)
        AND (SELECT count(*) FROM attribution_results r
              WHERE r.inference_id = i.id AND r.validator_address = ANY($1::text[])) < $2
      ORDER BY i.created_at, i.id
      LIMIT ${BATCH}`,
    validators,
    validators.length,
    LOOKBACK_HOURS,
  );
  for (const { id } of rows) await app.producer.enqueue("attribution.score", { inferenceId: id });
  return rows.map((r) => r.id);
}
