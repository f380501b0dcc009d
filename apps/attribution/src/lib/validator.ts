import {
  recoverAttributionResultSigner,
  StakeRole,
  signAttributionResult,
  stakingAbi,
  ZERO_SUBJECT,
} from "@openledger/chain";
import { type Db, Prisma, withTransaction } from "@openledger/db";
import { type Address, type Hex, keccak256, pad, toBytes } from "viem";
import type { ChainContext, ValidatorIdentity } from "./context.ts";
import type { ComputedAttribution } from "./scoring.ts";

/**
 * The bytes32 an inference id is signed as: the UUID's 16 bytes, left-padded with zeros
 * (reversible, and what settlement must use to verify a signature).
 */
export function inferenceIdToBytes32(inferenceId: string): Hex {
  const hex = inferenceId.replaceAll("-", "").toLowerCase();
  if (!/^[0-9a-f]{32}$/.test(hex)) throw new RangeError(`not a UUID: ${inferenceId}`);
  return pad(`0x${hex}`, { size: 32 });
}

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

/**
 * Hash, sign and store one validator's result with its weights in one transaction. Idempotent
 * on (inference, validator): an existing result is returned unchanged (a result, once signed,
 * is never replaced).
 */
export async function signAndStore(
  db: Db,
  chain: ChainContext,
  identity: ValidatorIdentity,
  inferenceId: string,
  computed: ComputedAttribution,
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
