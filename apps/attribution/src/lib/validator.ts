import {
  attributionCommitment,
  attributionCommitmentSalt,
  inferenceIdToBytes32,
  recoverAttributionResultSigner,
  StakeRole,
  signAttributionCommitment,
  signAttributionResult,
  stakingAbi,
  type ValidatorQuorum,
  ZERO_SUBJECT,
} from "@openledger/chain";
import { type Db, Prisma, withTransaction } from "@openledger/db";
import { type Address, type Hex, keccak256, toBytes } from "viem";
import type { ChainContext, ValidatorIdentity } from "./context.ts";
import type { ComputedAttribution } from "./scoring.ts";

/** keccak256 of the canonical JSON's UTF-8 bytes: the `resultHash` validators sign. */
export function resultHashOf(canonical: string): Hex {
  return keccak256(toBytes(canonical));
}

export class UnderstakedError extends Error {
  constructor(readonly validator: string) {
    super(
      `validator ${validator} has less than the minimum validator stake on Staking; refusing to attribute`,
    );
    this.name = "UnderstakedError";
  }
}

/** Staking.meetsMinimum(validator, Validator role, zero subject): the deployment's validator stake. */
export async function meetsValidatorStake(chain: ChainContext, address: string): Promise<boolean> {
  return chain.publicClient.readContract({
    address: chain.addresses.contracts.Staking,
    abi: stakingAbi,
    functionName: "meetsMinimum",
    args: [address as Address, StakeRole.Validator, ZERO_SUBJECT],
  });
}

/** The EIP-712 domain binds signatures to the chain and the RewardDistributor paying the earnings. */
export function verifyingContract(chain: ChainContext): Address {
  return chain.addresses.contracts.RewardDistributor;
}

export async function signResult(
  chain: ChainContext,
  identity: ValidatorIdentity,
  inferenceId: string,
  resultHash: Hex,
): Promise<Hex> {
  return signAttributionResult(
    identity.account,
    chain.chainId,
    { inferenceId: inferenceIdToBytes32(inferenceId), resultHash },
    verifyingContract(chain),
  );
}

export async function recoverSigner(
  chain: ChainContext,
  inferenceId: string,
  resultHash: Hex,
  signature: Hex,
): Promise<string> {
  const signer = await recoverAttributionResultSigner(
    chain.chainId,
    { inferenceId: inferenceIdToBytes32(inferenceId), resultHash },
    signature,
    verifyingContract(chain),
  );
  return signer.toLowerCase();
}

export interface StoredResult {
  id: string;
  validatorAddress: string;
  resultHash: string;
  created: boolean;
}

export interface Commitment {
  validatorAddress: string;
  resultHash: Hex;
  salt: Hex;
  /** Whether the recorded commitment is to this result (false: an earlier, different one was recorded). */
  matches: boolean;
  created: boolean;
}

/**
 * Commit (issue #14): record this validator's signed commitment keccak256(resultHash, validator, salt) to
 * its result, and nothing else — the result stays in this process until `mayReveal` says so. Idempotent
 * per (inference, validator): a commitment, once recorded, is never replaced (the table refuses updates),
 * so a validator that recomputes after a restart finds its own and, the salt being derived from its key,
 * can still open it.
 */
export async function commitResult(
  db: Db,
  chain: ChainContext,
  identity: ValidatorIdentity,
  inferenceId: string,
  computed: ComputedAttribution,
): Promise<Commitment> {
  const id32 = inferenceIdToBytes32(inferenceId);
  const resultHash = resultHashOf(computed.canonical);
  const salt = await attributionCommitmentSalt(
    identity.account,
    chain.chainId,
    id32,
    verifyingContract(chain),
  );
  const commitment = attributionCommitment(resultHash, identity.account.address, salt);
  const signature = await signAttributionCommitment(
    identity.account,
    chain.chainId,
    { inferenceId: id32, commitment },
    verifyingContract(chain),
  );
  const inserted = await db.$executeRawUnsafe(
    `INSERT INTO attribution_commitments (inference_id, validator_address, commitment, signature)
     VALUES ($1::uuid, $2, $3, $4) ON CONFLICT (inference_id, validator_address) DO NOTHING`,
    inferenceId,
    identity.address,
    commitment,
    signature,
  );
  const stored = await db.attributionCommitment.findUniqueOrThrow({
    where: { inferenceId_validatorAddress: { inferenceId, validatorAddress: identity.address } },
  });
  return {
    validatorAddress: identity.address,
    resultHash,
    salt,
    matches: stored.commitment.toLowerCase() === commitment,
    created: inserted > 0,
  };
}

/**
 * When a committed validator may reveal: once a reveal that opens a commitment recorded before it exists
 * (the commit phase is closed; revealing now loses nothing), once every active validator has committed, or
 * once a quorum of active validators has and `waitMs` passed since this validator's commitment (by the
 * database's clock, which also orders the rows). Revealing earlier would let a late validator copy.
 */
export async function mayReveal(
  db: Db,
  inferenceId: string,
  validator: string,
  quorum: Pick<ValidatorQuorum, "need" | "active">,
  waitMs: number,
): Promise<boolean> {
  const [row] = await db.$queryRawUnsafe<
    { committed: string[]; own_age_ms: number | null; revealed: boolean }[]
  >(
    `SELECT COALESCE(array_agg(lower(c.validator_address)), '{}') AS committed,
            max(CASE WHEN lower(c.validator_address) = $2
                     THEN extract(epoch FROM clock_timestamp() - c.created_at) * 1000 END)::float8 AS own_age_ms,
            EXISTS (SELECT 1 FROM attribution_results r JOIN attribution_commitments rc
                      ON rc.inference_id = r.inference_id AND rc.validator_address = r.validator_address
                     WHERE r.inference_id = $1::uuid AND rc.seq < r.reveal_seq) AS revealed
       FROM attribution_commitments c WHERE c.inference_id = $1::uuid`,
    inferenceId,
    validator.toLowerCase(),
  );
  if (!row || row.own_age_ms === null) return false; // not committed: nothing to reveal
  if (row.revealed) return true;
  const committed = row.committed.filter((v) => quorum.active.has(v)).length;
  if (quorum.active.size > 0 && committed >= quorum.active.size) return true;
  return quorum.need > 0 && committed >= quorum.need && row.own_age_ms >= waitMs;
}

/**
 * Reveal: hash, sign and store one validator's result with its weights and the salt that opens its
 * commitment, in one transaction. Idempotent on (inference, validator): an existing result is returned
 * unchanged (a result, once revealed, is never replaced).
 */
export async function revealResult(
  db: Db,
  chain: ChainContext,
  identity: ValidatorIdentity,
  inferenceId: string,
  computed: ComputedAttribution,
  salt: Hex,
): Promise<StoredResult> {
  const existing = await db.attributionResult.findUnique({
    where: { inferenceId_validatorAddress: { inferenceId, validatorAddress: identity.address } },
  });
  if (existing) {
    return {
      id: existing.id,
      validatorAddress: identity.address,
      resultHash: existing.resultHash,
      created: false,
    };
  }
  const total = computed.weights.reduce((s, w) => s + w.ppm, 0);
  if (computed.weights.length > 0 && total !== 1_000_000) {
    throw new Error(`weights sum to ${total} ppm, not 1,000,000`); // attribution-core guarantees it
  }
  const resultHash = resultHashOf(computed.canonical);
  const signature = await signResult(chain, identity, inferenceId, resultHash);
  try {
    const row = await withTransaction(db, async (tx) => {
      const r = await tx.attributionResult.create({
        data: {
          inferenceId,
          validatorAddress: identity.address,
          method: computed.method,
          canonicalJson: computed.canonical,
          resultHash,
          signature,
          salt,
        },
      });
      if (computed.weights.length > 0) {
        await tx.attributionWeight.createMany({
          data: computed.weights.map((w) => ({
            resultId: r.id,
            contributorAddress: w.contributorId,
            weightPpm: w.ppm,
          })),
        });
      }
      return r;
    });
    return { id: row.id, validatorAddress: identity.address, resultHash, created: true };
  } catch (err) {
    // Two workers of the same validator raced: the other one stored it; that is the result.
    if (err instanceof Prisma.PrismaClientKnownRequestError && err.code === "P2002") {
      const again = await db.attributionResult.findUniqueOrThrow({
        where: { inferenceId_validatorAddress: { inferenceId, validatorAddress: identity.address } },
      });
      return {
        id: again.id,
        validatorAddress: identity.address,
        resultHash: again.resultHash,
        created: false,
      };
    }
    throw err;
  }
}
