// Shared fixture for the contract tests: an in-process Hardhat network, the platform deployed by
// @openledger/chain's deployPlatform (so the deploy script is tested too), and revert-decoding helpers.
import assert from "node:assert/strict";
import path from "node:path";
import {
  contractAbis,
  deployPlatform,
  type EpochRootMessage,
  epochRootTypedData,
  OPEN,
  type PlatformAddresses,
  sortSignatures,
} from "@openledger/chain";
import type { HardhatRuntimeEnvironment } from "hardhat/types";
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

export async function platformFixture() {
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
    params: { quorum: 2 },
    fund: users.map((u) => ({ address: u.account.address, amount: 1_000_000n * OPEN })),
  });
  const c = addresses.contracts;
  const at = async <
    N extends
      | "OpenToken"
      | "Staking"
      | "DatanetRegistry"
      | "ModelRegistry"
      | "InferenceEscrow"
      | "RewardDistributor",
  >(
    name: N,
    wallet: Wallet = deployer,
  ) => hre.viem.getContractAt(name, c[name], { client: { wallet } });
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
    at,
    token: await at("OpenToken"),
    staking: await at("Staking"),
    datanets: await at("DatanetRegistry"),
    models: await at("ModelRegistry"),
    escrow: await at("InferenceEscrow"),
    distributor: await at("RewardDistributor"),
  };
}
export type Platform = Awaited<ReturnType<typeof platformFixture>>;

/** Validators' EIP-712 signatures over an epoch root, sorted as postEpoch requires. */
export async function signEpoch(
  p: Platform,
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
