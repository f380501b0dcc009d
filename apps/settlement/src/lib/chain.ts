import {
  ChainConfigError,
  type ChainConnection,
  type ChainPublicClient,
  type ChainWalletClient,
  type PlatformAddresses,
  readValidatorQuorum,
  rewardDistributorAbi,
  type ValidatorQuorum,
} from "@openledger/chain";
import type { SettlementConfig } from "@openledger/config";
import { type SplitBps, validateSplitBps } from "@openledger/settlement-core";
import type { Address } from "viem";

/**
 * What settlement needs on chain, as seen through the kit's one connector (`app.chain`): nothing
 * here connects or reads a key; the connection's settler signer and validator accounts are used.
 */
export interface SettlementChain {
  chainId: number;
  addresses: PlatformAddresses;
  publicClient: ChainPublicClient;
  /** SETTLER_ROLE on InferenceEscrow; also relays postEpoch (anyone may). */
  settler: ChainWalletClient;
  /** Lower-case treasury address credited in the ledger. */
  treasury: string;
  distributor: Address;
  /** The connection itself: intents go through its `execute`/`submit` as the settler. */
  connection: ChainConnection;
}

/**
 * Settlement's view of a connection. The treasury is SETTLEMENT_TREASURY_ADDRESS or, in the dev
 * profile, the deployment's treasury (from the addresses file).
 */
export function settlementChainOf(connection: ChainConnection, config: SettlementConfig): SettlementChain {
  const treasury =
    config.SETTLEMENT_TREASURY_ADDRESS ??
    (connection.profile === "dev" ? connection.addresses.roles.treasury : undefined);
  if (!treasury) {
    throw new ChainConfigError(
      `SETTLEMENT_TREASURY_ADDRESS is required (CHAIN_PROFILE=${connection.profile})`,
    );
  }
  return {
    chainId: connection.chainId,
    addresses: connection.addresses,
    publicClient: connection.publicClient,
    settler: connection.signer("settler"),
    treasury: treasury.toLowerCase(),
    distributor: connection.addresses.contracts.RewardDistributor,
    connection,
  };
}

/**
 * The distributor's quorum now (or at `blockNumber`): its active validators (admitted and staked, lower-case) and how many of
 * their signatures a root or an attribution result needs (a fraction of the active set; 0 when none is
 * active). packages/chain's `readValidatorQuorum`: the one definition.
 */
export async function distributorQuorum(
  chain: SettlementChain,
  blockNumber?: bigint,
): Promise<ValidatorQuorum> {
  return readValidatorQuorum(chain.publicClient, chain.distributor, blockNumber);
}

/**
 * The fee split governance set on chain (RewardDistributor.feeSplit: basis points summing to 10,000, the
 * contract refuses anything else), as settlement-core splits with it.
 */
export async function feeSplitOf(chain: SettlementChain): Promise<SplitBps> {
  const f = await chain.publicClient.readContract({
    address: chain.distributor,
    abi: rewardDistributorAbi,
    functionName: "feeSplit",
  });
  return validateSplitBps({
    treasury: f.treasuryBps,
    validators: f.validatorsBps,
    modelOwner: f.modelOwnerBps,
    contributors: f.contributorsBps,
  });
}
