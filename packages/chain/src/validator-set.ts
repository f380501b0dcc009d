import type { Address } from "viem";
import type { ChainPublicClient } from "./clients.ts";
import { rewardDistributorAbi } from "./generated/abis.ts";

/**
 * The validator quorum as the RewardDistributor counts it: its active validators (admitted by governance
 * and holding the minimum Validator stake on Staking) and how many of them must sign — the governance
 * fraction (>= 2/3, `quorumNumerator/quorumDenominator`) of the active set, rounded up, and at least
 * `minSignatures`. 0 when no validator is active (then nothing can be attested).
 *
 * This is the one quorum of the platform: attribution results (settlement pays a result only when `need`
 * active validators signed the same canonical bytes) and epoch roots (`postEpoch` verifies it on chain).
 */
export interface ValidatorQuorum {
  need: number;
  /** Lower-case addresses of the active validators. */
  active: ReadonlySet<string>;
  numerator: number;
  denominator: number;
  minSignatures: number;
}

/** Reads the distributor's quorum (at `blockNumber`, or the latest block). */
export async function readValidatorQuorum(
  publicClient: ChainPublicClient,
  distributor: Address,
  blockNumber?: bigint,
): Promise<ValidatorQuorum> {
  const at = blockNumber === undefined ? {} : { blockNumber };
  const c = { address: distributor, abi: rewardDistributorAbi, ...at } as const;
  const [need, active, numerator, denominator, minSignatures] = await Promise.all([
    publicClient.readContract({ ...c, functionName: "requiredSignatures" }),
    publicClient.readContract({ ...c, functionName: "activeValidators" }),
    publicClient.readContract({ ...c, functionName: "quorumNumerator" }),
    publicClient.readContract({ ...c, functionName: "quorumDenominator" }),
    publicClient.readContract({ ...c, functionName: "minSignatures" }),
  ]);
  return {
    need: Number(need),
    active: new Set(active.map((a) => a.toLowerCase())),
    numerator: Number(numerator),
    denominator: Number(denominator),
    minSignatures: Number(minSignatures),
  };
}
