// Shared fixture for the contract tests: an in-process Hardhat network, the platform deployed by
// @openledger/chain's deployPlatform (so the deploy script is tested too), and revert-decoding helpers.
import assert from "node:assert/strict";
import path from "node:path";
// hardhat-viem's `hre.viem` (the config loads the plugin; this brings its types).
import type {} from "@nomicfoundation/hardhat-viem";
import {
  type ChainPublicClient,
  type ChainWalletClient,
  type ContractName,
  contractAbis,
  type DeployPlatformOptions,
  deployPlatform,
  type EpochRootMessage,
  epochRootTypedData,
  executeAsTimelock,
  type GovernanceContext,
  OPEN,
  type PlatformAddresses,
  sortSignatures,
} from "@openledger/chain";
import type { HardhatRuntimeEnvironment } from "hardhat/types";
import type { ContractTypesMap } from "hardhat/types/artifacts";
import { type Abi, type Address, BaseError, decodeErrorResult, getAddress, type Hex } from "viem";

// Find contracts/hardhat.config.js whatever the working directory (Hardhat reads HARDHAT_CONFIG).
process.env.HARDHAT_CONFIG ??= path.join(__dirname, "..", "hardhat.config.js");
export const hre: HardhatRuntimeEnvironment = require("hardhat");

export const DAY = 24n * 3600n;
export { OPEN };

type Wallet = Awaited<ReturnType<HardhatRuntimeEnvironment["viem"]["getWalletClients"]>>[number];

export type { Wallet };

// ------------------------------------------------------------------ snapshots

const snapshots = new Map<unknown, Hex>();
const results = new Map<unknown, unknown>();

/** Run `fn` once, snapshot the chain, and on every later call revert to that snapshot (fast, isolated tests). */
export async function loadFixture<T>(fn: () => Promise<T>): Promise<T> {
  const provider = hre.network.provider;
  const id = snapshots.get(fn);
  if (id !== undefined) {
    const ok = await provider.request({ method: "evm_revert", params: [id] });
    assert.equal(ok, true, "snapshot revert failed");
  } else {
    results.set(fn, await fn());
  }
  snapshots.set(fn, (await provider.request({ method: "evm_snapshot", params: [] })) as Hex);
  return results.get(fn) as T;
}

export async function increaseTime(seconds: bigint): Promise<void> {
  await hre.network.provider.request({ method: "evm_increaseTime", params: [Number(seconds)] });
  await hre.network.provider.request({ method: "evm_mine", params: [] });
}

export async function latestTimestamp(): Promise<bigint> {
  const pc = await hre.viem.getPublicClient();
  return (await pc.getBlock()).timestamp;
}

// ------------------------------------------------------------------ reverts

const mockNames = ["HookToken", "ReentrantReceiver"];
let combinedAbi: Abi | undefined;
async function allErrorsAbi(): Promise<Abi> {
  if (!combinedAbi) {
    const items: Abi[number][] = [];
    for (const abi of Object.values(contractAbis)) items.push(...(abi as Abi));
    for (const name of mockNames) items.push(...((await hre.artifacts.readArtifact(name)).abi as Abi));
    const seen = new Set<string>();
    combinedAbi = items.filter((i) => {
      if (i.type !== "error") return false;
      const key = `${i.name}(${i.inputs.map((x) => x.type).join(",")})`;
      if (seen.has(key)) return false;
      seen.add(key);
      return true;
    });
  }
  return combinedAbi;
}

function revertData(err: unknown): Hex | undefined {
  if (!(err instanceof BaseError)) return undefined;
  let found: Hex | undefined;
  err.walk((e) => {
    const x = e as { raw?: unknown; data?: unknown };
    if (typeof x.raw === "string" && x.raw.startsWith("0x")) found ??= x.raw as Hex;
    if (typeof x.data === "string" && x.data.startsWith("0x")) found ??= x.data as Hex;
    if (x.data && typeof x.data === "object" && typeof (x.data as { data?: unknown }).data === "string") {
      found ??= (x.data as { data: Hex }).data;
    }
    return false;
  });
  return found;
}

/** Assert that `p` reverts with the custom error `errorName` (decoded against every contract's ABI). */
export async function expectRevert(
  p: Promise<unknown>,
  errorName: string,
  args?: readonly unknown[],
): Promise<void> {
  let error: unknown;
  try {
    await p;
  } catch (e) {
    error = e;
  }
  assert.ok(error, `expected revert ${errorName}, but the call succeeded`);
  const data = revertData(error);
  assert.ok(data && data.length >= 10, `expected revert ${errorName}, got: ${String(error).slice(0, 400)}`);
  const decoded = decodeErrorResult({ abi: await allErrorsAbi(), data });
  assert.equal(decoded.errorName, errorName);
  if (args) assert.deepEqual(decoded.args, args);
}

// ------------------------------------------------------------------ platform fixture

/** hardhat-viem's clients, typed as @openledger/chain's (the same viem objects). */
export function asChainClients(publicClient: unknown, wallet: Wallet) {
  return {
    publicClient: publicClient as ChainPublicClient,
    walletClient: wallet as unknown as ChainWalletClient,
  };
}

/** Run one admin call as the timelock with the dev admin's key (the dev profile's shortcut). */
export async function adminCall(
  addresses: PlatformAddresses,
  devAdmin: Wallet,
  name: ContractName,
  functionName: string,
  args: readonly unknown[],
) {
  const publicClient = await hre.viem.getPublicClient();
  return executeAsTimelock({
    ...asChainClients(publicClient, devAdmin),
    timelock: addresses.contracts.OpenTimelock,
    calls: [{ address: addresses.contracts[name], abi: contractAbis[name] as Abi, functionName, args }],
  });
}

/**
 * `hre.viem.getContractAt` typed per contract name (the artifacts' ContractTypesMap): a generic name
 * matches none of hardhat-viem's per-contract overloads, which would type every handle as the union.
 */
export async function contractAt<N extends ContractName>(
  name: N,
  address: Address,
  wallet: Wallet,
): Promise<ContractTypesMap[N]> {
  const contract = await hre.viem.getContractAt(name as string, address, { client: { wallet } });
  return contract as unknown as ContractTypesMap[N];
}

/** Contract handles of a deployed platform (as `wallet`, default the deployer) and the governance context. */
async function connect(publicClient: unknown, deployer: Wallet, addresses: PlatformAddresses) {
  const c = addresses.contracts;
  const at = <N extends ContractName>(name: N, wallet: Wallet = deployer) =>
    contractAt(name, c[name], wallet);
  return {
    at,
    governance: {
      publicClient: publicClient as ChainPublicClient,
      governor: c.OpenGovernor,
    } as GovernanceContext,
    token: await at("OpenToken"),
    staking: await at("Staking"),
    datanets: await at("DatanetRegistry"),
    models: await at("ModelRegistry"),
    escrow: await at("InferenceEscrow"),
    distributor: await at("RewardDistributor"),
    timelock: await at("OpenTimelock"),
    governor: await at("OpenGovernor"),
  };
}

export async function platformFixture(options: Pick<DeployPlatformOptions, "params"> = {}) {
  const publicClient = await hre.viem.getPublicClient();
  const wallets = await hre.viem.getWalletClients();
  const [deployer, operator, settlement, treasury, guardian, v1, v2, v3, alice, bob, carol, dave, reporter] =
    wallets as [
      Wallet,
      Wallet,
      Wallet,
      Wallet,
      Wallet,
      Wallet,
      Wallet,
      Wallet,
      Wallet,
      Wallet,
      Wallet,
      Wallet,
      Wallet,
    ];
  const validators = [v1, v2, v3];
  const users = [alice, bob, carol, dave];
  const addresses: PlatformAddresses = await deployPlatform({
    publicClient,
    walletClient: deployer,
    roles: {
      operator: operator.account.address,
      settlement: settlement.account.address,
      treasury: treasury.account.address,
      guardian: guardian.account.address,
      validators: validators.map((v) => v.account.address),
    },
    // Roots wait an hour before they can be claimed, so the guardian's revocation window can be tested.
    params: { activationDelay: 3600, ...options.params },
    fund: users.map((u) => ({ address: u.account.address, amount: 1_000_000n * OPEN })),
  });
  return {
    publicClient,
    wallets,
    deployer,
    operator,
    settlement,
    treasury,
    guardian,
    validators,
    users,
    alice,
    bob,
    carol,
    dave,
    reporter,
    addresses,
    /** An admin call, run by the timelock (the dev admin schedules and executes it with delay 0). */
    admin: (name: ContractName, functionName: string, args: readonly unknown[] = []) =>
      adminCall(addresses, deployer, name, functionName, args),
    ...(await connect(publicClient, deployer, addresses)),
  };
}
export type Platform = Awaited<ReturnType<typeof platformFixture>>;

/**
 * The platform in its production profile: every admin role with the timelock (2-day delay) behind the governor
 * (1-day voting delay, 5-day vote), guardian and operator keys without admin powers, the OPEN held by `dao`
 * (account #14, votes delegated to itself), 1,000,000 OPEN for each user.
 */
export async function productionFixture() {
  const publicClient = await hre.viem.getPublicClient();
  const wallets = await hre.viem.getWalletClients();
  const w = wallets as Wallet[];
  const [deployer, operator, settlement, , guardian, v1, v2, v3, alice, bob, carol, dave, reporter] = w as [
    Wallet,
    Wallet,
    Wallet,
    Wallet,
    Wallet,
    Wallet,
    Wallet,
    Wallet,
    Wallet,
    Wallet,
    Wallet,
    Wallet,
    Wallet,
  ];
  const dao = w[14]!;
  const validators = [v1, v2, v3];
  const users = [alice, bob, carol, dave];
  const addresses = await deployPlatform({
    ...asChainClients(publicClient, deployer),
    profile: "production",
    roles: {
      operator: operator.account.address,
      settlement: settlement.account.address,
      guardian: guardian.account.address,
      tokenHolder: dao.account.address,
      validators: validators.map((v) => v.account.address),
    },
    fund: users.map((u) => ({ address: u.account.address, amount: 1_000_000n * OPEN })),
  });
  const connected = await connect(publicClient, deployer, addresses);
  await (await connected.at("OpenToken", dao)).write.delegate([addr(dao)]);
  return {
    publicClient,
    wallets,
    deployer,
    operator,
    settlement,
    guardian,
    validators,
    users,
    alice,
    bob,
    carol,
    dave,
    reporter,
    dao,
    addresses,
    ...connected,
  };
}
export type ProductionPlatform = Awaited<ReturnType<typeof productionFixture>>;

/** Move the chain clock forward and mine a block. */
export async function advance(seconds: number | bigint): Promise<void> {
  await increaseTime(BigInt(seconds));
}

/** Validators' EIP-712 signatures over an epoch root, sorted as postEpoch requires. */
export async function signEpoch(
  p: Pick<Platform, "publicClient" | "addresses">,
  signers: Wallet[],
  message: EpochRootMessage,
  distributor: Address = p.addresses.contracts.RewardDistributor,
): Promise<Hex[]> {
  const chainId = await p.publicClient.getChainId();
  const typed = epochRootTypedData(chainId, distributor, message);
  const sigs = await Promise.all(
    signers.map(async (s) => ({
      signer: s.account.address,
      signature: await s.signTypedData({ account: s.account, ...typed }),
    })),
  );
  return sortSignatures(sigs);
}

/** Approve + deposit OPEN into the escrow for `consumer`, then charge it (settled fees ready to draw). */
export async function fundSettled(
  p: Platform,
  consumer: Wallet,
  amount: bigint,
  batchId: Hex,
): Promise<void> {
  const token = await p.at("OpenToken", consumer);
  const escrow = await p.at("InferenceEscrow", consumer);
  await token.write.approve([p.addresses.contracts.InferenceEscrow, amount]);
  await escrow.write.deposit([amount]);
  const asSettler = await p.at("InferenceEscrow", p.settlement);
  await asSettler.write.charge([batchId, [consumer.account.address], [amount]]);
}

/** Checksummed address of a wallet (Hardhat's wallet clients report lowercase addresses). */
export function addr(w: Wallet): Address {
  return getAddress(w.account.address);
}
