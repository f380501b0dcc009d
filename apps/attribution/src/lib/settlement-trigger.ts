import type { ValidatorQuorum } from "@openledger/chain";
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
  /** The distributor's quorum now (packages/chain `readValidatorQuorum`): a fraction of the active set. */
  quorum: () => Promise<Pick<ValidatorQuorum, "need" | "active">>;
}

/**
 * Whether at least `need` (>= 1) distinct ACTIVE validators stored results with one and the same hash
 * (results of validators outside the active set do not count, as in settlement).
 */
export async function quorumReached(
  db: Db,
  inferenceId: string,
  quorum: Pick<ValidatorQuorum, "need" | "active">,
): Promise<boolean> {
  if (quorum.need === 0) return false;
  const rows = await db.$queryRawUnsafe<{ hash: string; validator: string }[]>(
    `SELECT DISTINCT lower(result_hash) AS hash, lower(validator_address) AS validator
       FROM attribution_results WHERE inference_id = $1::uuid`,
    inferenceId,
  );
  const byHash = new Map<string, number>();
  for (const r of rows) {
    if (!quorum.active.has(r.validator)) continue;
    const n = (byHash.get(r.hash) ?? 0) + 1;
    if (n >= quorum.need) return true;
    byHash.set(r.hash, n);
  }
  return false;
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
  if (reason === "attributed" && !(await quorumReached(h.db, inferenceId, await h.quorum()))) return false;
  await h.producer.enqueue("inference.completed", { inferenceId });
  return true;
}
