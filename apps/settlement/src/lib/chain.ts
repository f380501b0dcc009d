import {
  type ChainPublicClient,
  type ChainWalletClient,
  createChainPublicClient,
  createChainWalletClient,
  defaultAddressesPath,
  loadAddresses,
  type PlatformAddresses,
  rewardDistributorAbi,
  rpcChainId,
} from "@openledger/chain";
import { localAccounts } from "@openledger/chain/testing";
import type { SettlementConfig } from "@openledger/config";
import type { Address, Hex } from "viem";
import { type PrivateKeyAccount, privateKeyToAccount } from "viem/accounts";

/** Everything settlement needs on chain. Keys live only in these account objects (never logged). */
export interface SettlementChain {
  chainId: number;
  addresses: PlatformAddresses;
  publicClient: ChainPublicClient;
  /** SETTLER_ROLE on InferenceEscrow; also relays postEpoch (anyone may). */
  settler: ChainWalletClient;
  /** Validators that sign epoch roots (EIP-712). */
  attesters: PrivateKeyAccount[];
  /** Lower-case treasury address credited in the ledger. */
  treasury: string;
  distributor: Address;
}

const LOCAL_CHAIN_ID = 31337;

export class ChainConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ChainConfigError";
  }
}

/**
 * Resolves keys and addresses. On the local dev chain (31337) missing keys default to the
 * well-known Hardhat accounts of the local deployment (#2 settler, #3 treasury, #5-7
 * validators); on any other chain they must be configured.
 */
export async function connectSettlementChain(config: SettlementConfig): Promise<SettlementChain> {
  const chainId = await rpcChainId(config.CHAIN_RPC_URL);
  const addresses = await loadAddresses(config.CHAIN_ADDRESSES_FILE ?? defaultAddressesPath(chainId));
  if (addresses.chainId !== chainId) {
    throw new ChainConfigError(`addresses file is for chain ${addresses.chainId}, the RPC serves ${chainId}`);
  }
  const local = chainId === LOCAL_CHAIN_ID ? localAccounts() : undefined;
  const settlerKey = (config.SETTLEMENT_SETTLER_PRIVATE_KEY ?? local?.settlement.privateKey) as
    | Hex
    | undefined;
  if (!settlerKey)
    throw new ChainConfigError("SETTLEMENT_SETTLER_PRIVATE_KEY is required off the local chain");
  const attesterKeys = (config.SETTLEMENT_ATTESTER_PRIVATE_KEYS?.split(",") ??
    local?.validators.map((v) => v.privateKey) ??
    []) as Hex[];
  const treasury = config.SETTLEMENT_TREASURY_ADDRESS ?? local?.treasury.address;
  if (!treasury) throw new ChainConfigError("SETTLEMENT_TREASURY_ADDRESS is required off the local chain");
  const opts = { rpcUrl: config.CHAIN_RPC_URL, chainId };
  return {
    chainId,
    addresses,
    publicClient: createChainPublicClient(opts),
    settler: createChainWalletClient({ ...opts, privateKey: settlerKey }),
    attesters: attesterKeys.map((k) => privateKeyToAccount(k)),
    treasury: treasury.toLowerCase(),
    distributor: addresses.contracts.RewardDistributor,
  };
}

/** The distributor's validator set (lower-case): who may attest attribution results and roots. */
export async function distributorValidators(chain: SettlementChain): Promise<Set<string>> {
  const list = await chain.publicClient.readContract({
    address: chain.distributor,
    abi: rewardDistributorAbi,
    functionName: "validators",
  });
  return new Set(list.map((a) => a.toLowerCase()));
}

/**
 * The distributor's quorum now: its active validators (admitted and staked, lower-case) and how many of
 * their signatures a root needs (a fraction of the active set; 0 when none is active).
 */
export async function distributorQuorum(
  chain: SettlementChain,
): Promise<{ need: number; active: Set<string> }> {
  const [need, active] = await Promise.all([
    chain.publicClient.readContract({
      address: chain.distributor,
      abi: rewardDistributorAbi,
      functionName: "requiredSignatures",
    }),
    chain.publicClient.readContract({
      address: chain.distributor,
      abi: rewardDistributorAbi,
      functionName: "activeValidators",
    }),
  ]);
  return { need: Number(need), active: new Set(active.map((a) => a.toLowerCase())) };
}
