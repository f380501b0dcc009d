import type { ChainConnection } from "@openledger/chain";
import { StakeRole, stakingAbi, subjectOf } from "@openledger/chain";

/** Active contributor stake of `address` on a datanet (Staking, role Contributor, subject = chain id). */
export async function activeContributorStake(
  chain: ChainConnection,
  address: string,
  chainDatanetId: bigint,
) {
  return (await contributorPosition(chain, address, chainDatanetId)).active;
}

/**
 * The contributor's whole position on a datanet: active stake and stake still unbonding. Both are
 * slashable (Staking takes active first, then unbonding), so penalties are sized on their sum.
 */
export async function contributorPosition(
  chain: ChainConnection,
  address: string,
  chainDatanetId: bigint,
): Promise<{ active: bigint; unbonding: bigint }> {
  const p = await chain.publicClient.readContract({
    address: chain.addresses.contracts.Staking,
    abi: stakingAbi,
    functionName: "positionOf",
    args: [address as `0x${string}`, StakeRole.Contributor, subjectOf(chainDatanetId)],
  });
  return { active: p.active, unbonding: p.unbonding };
}

/** Staking.unbondingPeriod and slashDisputeWindow, seconds. */
export async function stakingWindows(
  chain: ChainConnection,
): Promise<{ unbonding: bigint; dispute: bigint }> {
  const staking = chain.addresses.contracts.Staking;
  const [unbonding, dispute] = await Promise.all([
    chain.publicClient.readContract({ address: staking, abi: stakingAbi, functionName: "unbondingPeriod" }),
    chain.publicClient.readContract({
      address: staking,
      abi: stakingAbi,
      functionName: "slashDisputeWindow",
    }),
  ]);
  return { unbonding: BigInt(unbonding), dispute: BigInt(dispute) };
}

/**
 * Refuses a datanets dispute window that is not shorter than the chain's unbonding period: a contributor
 * who unbonds when a proposal is made could otherwise withdraw before the proposal can execute.
 */
export async function assertDisputeWindowFits(chain: ChainConnection, disputeWindowSeconds: number) {
  const { unbonding } = await stakingWindows(chain);
  if (BigInt(disputeWindowSeconds) >= unbonding) {
    throw new Error(
      `DATANETS_DISPUTE_WINDOW_SECONDS (${disputeWindowSeconds}) must be shorter than Staking.unbondingPeriod (${unbonding} s): an accused contributor could unbond and withdraw before the slash executes`,
    );
  }
}
