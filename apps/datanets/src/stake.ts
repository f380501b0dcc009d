import type { ChainConnection } from "@openledger/chain";
import { StakeRole, stakingAbi, subjectOf } from "@openledger/chain";

/** Active contributor stake of `address` on a datanet (Staking, role Contributor, subject = chain id). */
export async function activeContributorStake(
  chain: ChainConnection,
  address: string,
  chainDatanetId: bigint,
) {
  return chain.publicClient.readContract({
    address: chain.addresses.contracts.Staking,
    abi: stakingAbi,
    functionName: "activeStake",
    args: [address as `0x${string}`, StakeRole.Contributor, subjectOf(chainDatanetId)],
  });
}
