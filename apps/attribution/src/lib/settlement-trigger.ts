import type { Db } from "@openledger/db";
import type { Producer } from "@openledger/queue";

/**
 * The hand-off attribution → settlement: the one place this side decides that an inference is
 * ready to settle. The data path is straight — the gateway enqueues `attribution.score`; here,
 * once a quorum of validators stored the same result (or the inference has nothing to attribute),
 * `inference.completed` is enqueued; settlement checks the quorum again (signatures, validator set)
 * before paying by it, and its deadline sweeper is the only fallback. Nothing re-sends jobs.
 *
 * Issue #14 (independent validators, commit-reveal) changes how a quorum is formed: swap
 * `quorumReached` (or this whole function) and nothing else moves.
 */
export interface SettlementHandOff {
  db: Db;
  producer: Pick<Producer, "enqueue">;
  /** SETTLEMENT_ATTRIBUTION_QUORUM: validators that must agree byte for byte. */
  quorum: number;
}

/** Whether at least `quorum` distinct validators stored results with one and the same hash. */
export async function quorumReached(db: Db, inferenceId: string, quorum: number): Promise<boolean> {
  const [top] = await db.$queryRawUnsafe<{ agreeing: number }[]>(
    `SELECT count(DISTINCT lower(validator_address))::int AS agreeing
       FROM attribution_results WHERE inference_id = $1::uuid
      GROUP BY lower(result_hash) ORDER BY agreeing DESC LIMIT 1`,
    inferenceId,
  );
  return (top?.agreeing ?? 0) >= quorum;
}

/**
 * Called after a validator's result is stored (`reason: "attributed"`), or when the inference has
 * nothing to attribute (`"not-attributable"`: its model names no training data, so no result will
 * ever come and settlement should not wait for one). Returns whether settlement was triggered.
 * The job id is the inference id, so a second trigger (another validator's job) is a no-op.
 */
export async function handToSettlement(
  h: SettlementHandOff,
  inferenceId: string,
  reason: "attributed" | "not-attributable",
): Promise<boolean> {
  if (reason === "attributed" && !(await quorumReached(h.db, inferenceId, h.quorum))) return false;
  await h.producer.enqueue("inference.completed", { inferenceId });
  return true;
}
