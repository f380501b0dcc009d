import { opensAttributionCommitment, type ValidatorQuorum } from "@openledger/chain";
import { type Db, inferenceEpochBlockSql } from "@openledger/db";
import type { Producer } from "@openledger/queue";
import { countedReveals } from "@openledger/settlement-core";

/**
 * The hand-off attribution → settlement: the one place this side decides that an inference is
 * ready to settle. The data path is straight — the gateway enqueues `attribution.score`; here,
 * once a quorum of validators (the set at the inference's epoch, as settlement counts it) stored the same result (or the inference has nothing to attribute),
 * `inference.completed` is enqueued; settlement checks the quorum again (signatures, validator set)
 * before paying by it, and its deadline sweeper is the only fallback. Nothing re-sends jobs.
 *
 * Only reveals that count are counted (commit-reveal, issue #14: the reveal opens its validator's
 * commitment and that commitment was recorded before the first such reveal, `countedReveals`).
 */
export interface SettlementHandOff {
  db: Db;
  producer: Pick<Producer, "enqueue">;
  /** The distributor's quorum at an inference's epoch (`QuorumAt`, `AttributionContext.quorumAt`). */
  quorumAt: QuorumAt;
}

/**
 * The quorum an inference's results are counted against, as settlement counts them: the distributor's
 * (packages/chain `readValidatorQuorum`) at the block its epoch began (`epochBlock`, packages/db
 * `inferenceEpochBlockSql`), or now while no epoch closed before it. A validator added or removed after the
 * inference changes neither the quorum's result nor who dissented.
 */
export type QuorumAt = (epochBlock: bigint | null) => Promise<Pick<ValidatorQuorum, "need" | "active">>;

/** The quorum `inferenceId` is counted against (`QuorumAt` at its epoch's block). */
export async function inferenceQuorum(
  db: Db,
  inferenceId: string,
  quorumAt: QuorumAt,
): Promise<Pick<ValidatorQuorum, "need" | "active">> {
  const [row] = await db.$queryRawUnsafe<{ epoch_block: string | null }[]>(
    `SELECT ${inferenceEpochBlockSql("i")} AS epoch_block FROM inferences i WHERE i.id = $1::uuid`,
    inferenceId,
  );
  const block = row?.epoch_block ?? null;
  return quorumAt(block === null ? null : BigInt(block));
}

/** A counted reveal (its commitment was recorded in time and it opens it; the validator is active). */
export interface CountedResult {
  /** Lower-case address. */
  validator: string;
  /** Lower-case result hash. */
  resultHash: string;
  /** The validator's EIP-712 AttributionResult signature (not checked here). */
  signature: string;
}

/**
 * The quorum's result of an inference: the hash at least `need` (>= 1) distinct validators ACTIVE AT ITS
 * EPOCH (`QuorumAt`) revealed, in time (results of validators outside that set, and reveals that do not count,
 * are left out, as in settlement; signatures are settlement's to check), with every counted reveal; null while
 * there is none. `need` is at least 2/3 of the set, so no two hashes can both reach it.
 */
export async function quorumResult(
  db: Db,
  inferenceId: string,
  quorumAt: QuorumAt,
): Promise<{ resultHash: string; counted: CountedResult[] } | null> {
  const rows = await db.$queryRawUnsafe<
    {
      hash: string;
      validator: string;
      signature: string;
      salt: string | null;
      reveal_seq: string;
      commitment: string | null;
      commitment_seq: string | null;
      epoch_block: string | null;
    }[]
  >(
    `SELECT lower(r.result_hash) AS hash, lower(r.validator_address) AS validator, r.signature, r.salt,
            r.reveal_seq::text AS reveal_seq, lower(c.commitment) AS commitment, c.seq::text AS commitment_seq,
            ${inferenceEpochBlockSql("i")} AS epoch_block
       FROM attribution_results r
       JOIN inferences i ON i.id = r.inference_id
       LEFT JOIN attribution_commitments c
         ON c.inference_id = r.inference_id AND c.validator_address = r.validator_address
      WHERE r.inference_id = $1::uuid`,
    inferenceId,
  );
  if (rows.length === 0) return null;
  const block = rows[0]!.epoch_block;
  const quorum = await quorumAt(block === null ? null : BigInt(block));
  if (quorum.need === 0) return null;
  const opens = (r: (typeof rows)[number]) =>
    quorum.active.has(r.validator) && opensAttributionCommitment(r.commitment, r.hash, r.validator, r.salt);
  const { counted } = countedReveals(
    rows.map((r) => ({
      validator: r.validator,
      revealSeq: BigInt(r.reveal_seq),
      opens: opens(r),
      ...(r.commitment_seq !== null ? { commitmentSeq: BigInt(r.commitment_seq) } : {}),
    })),
  );
  const results = rows
    .filter((r) => counted.has(r.validator))
    .map((r) => ({ validator: r.validator, resultHash: r.hash, signature: r.signature }));
  const byHash = new Map<string, number>();
  for (const r of results) byHash.set(r.resultHash, (byHash.get(r.resultHash) ?? 0) + 1);
  for (const [resultHash, n] of byHash) if (n >= quorum.need) return { resultHash, counted: results };
  return null;
}

/** Whether the inference has a quorum's result (`quorumResult`). */
export async function quorumReached(db: Db, inferenceId: string, quorumAt: QuorumAt): Promise<boolean> {
  return (await quorumResult(db, inferenceId, quorumAt)) !== null;
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
  if (reason === "attributed" && !(await quorumReached(h.db, inferenceId, h.quorumAt))) return false;
  await h.producer.enqueue("inference.completed", { inferenceId });
  return true;
}
