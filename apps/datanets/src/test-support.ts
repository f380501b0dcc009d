// Shared set-up of the datanets integration tests: a real Postgres schema, a Redis prefix and a
// real local chain (hardhat node with the platform deployed), plus SIWE sign-in with dev keys.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { OPEN, openTokenAbi, StakeRole, stakingAbi, subjectOf } from "@openledger/chain";
import { type LocalChain, startLocalChain } from "@openledger/chain/testing";
import type { App } from "@openledger/service-kit";
import { testEnvironment } from "@openledger/service-kit/testing";
import { createWalletClient, type Hex, http, publicActions } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { createSiweMessage } from "viem/siwe";
import { buildDatanets, datanetsConfig } from "./app.ts";

export const DOMAIN = "localhost:4001";

export interface Harness {
  app: App;
  chain: LocalChain;
  env: Awaited<ReturnType<typeof testEnvironment>>;
  close(): Promise<void>;
}

export async function startHarness(label: string, extraEnv: Record<string, string> = {}): Promise<Harness> {
  const dir = await mkdtemp(join(tmpdir(), `datanets-${label}-`));
  const addressesFile = join(dir, "addresses.json");
  const [env, chain] = await Promise.all([
    testEnvironment(label),
    startLocalChain({ writeAddresses: addressesFile }),
  ]);
  const app = await buildDatanets(
    datanetsConfig({
      ...env.env,
      CHAIN_RPC_URL: chain.rpcUrl,
      CHAIN_ADDRESSES_FILE: addressesFile,
      DATANETS_SIWE_DOMAIN: DOMAIN,
      DATANETS_SWEEP_INTERVAL_MS: "0",
      ...extraEnv,
    }),
  );
  return {
    app,
    chain,
    env,
    async close() {
      await app.close();
      await chain.stop();
      await env.cleanup();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export interface SiweOptions {
  domain?: string;
  chainId?: number;
  expirationTime?: Date;
  nonce?: string;
}

/** A SIWE message + signature for `key`, with a nonce from the service unless given. */
export async function signedMessage(h: Harness, key: Hex, options: SiweOptions = {}) {
  const account = privateKeyToAccount(key);
  const nonce =
    options.nonce ??
    (await h.app.inject({ method: "POST", url: "/v1/auth/nonce" })).json<{ nonce: string }>().nonce;
  const message = createSiweMessage({
    address: account.address,
    chainId: options.chainId ?? h.chain.chainId,
    domain: options.domain ?? DOMAIN,
    nonce,
    uri: `http://${DOMAIN}`,
    version: "1",
    issuedAt: new Date(),
    ...(options.expirationTime ? { expirationTime: options.expirationTime } : {}),
  });
  const signature = await account.signMessage({ message });
  return { message, signature, nonce };
}

/** Signs in and returns the bearer header. */
export async function signIn(h: Harness, key: Hex): Promise<{ authorization: string }> {
  const body = await signedMessage(h, key);
  const res = await h.app.inject({ method: "POST", url: "/v1/auth/verify", payload: body });
  if (res.statusCode !== 200) throw new Error(`sign-in failed: ${res.body}`);
  return { authorization: `Bearer ${res.json<{ token: string }>().token}` };
}

/** A wallet of `key` on the harness's chain (with public actions). */
function walletOf(h: Harness, key: Hex) {
  return createWalletClient({
    account: privateKeyToAccount(key),
    transport: http(h.chain.rpcUrl),
    chain: {
      id: h.chain.chainId,
      name: "local",
      nativeCurrency: { name: "ETH", symbol: "ETH", decimals: 18 },
      rpcUrls: { default: { http: [h.chain.rpcUrl] } },
    },
  }).extend(publicActions);
}

/** Stakes `amount` OPEN as a contributor of chain datanet `chainDatanetId`, with the user's own key. */
export async function stakeOn(h: Harness, key: Hex, chainDatanetId: bigint, amountOpen: bigint) {
  const wallet = walletOf(h, key);
  const staking = h.chain.addresses!.contracts.Staking;
  const amount = amountOpen * OPEN;
  const approve = await wallet.writeContract({
    address: h.chain.addresses!.contracts.OpenToken,
    abi: openTokenAbi,
    functionName: "approve",
    args: [staking, amount],
  });
  await wallet.waitForTransactionReceipt({ hash: approve });
  const tx = await wallet.writeContract({
    address: staking,
    abi: stakingAbi,
    functionName: "stake",
    args: [StakeRole.Contributor, subjectOf(chainDatanetId), amount],
  });
  const receipt = await wallet.waitForTransactionReceipt({ hash: tx });
  if (receipt.status !== "success") throw new Error("stake reverted");
}

/** Moves `amountOpen` of the user's contributor stake on a datanet into unbonding, with the user's own key. */
export async function unbondFrom(h: Harness, key: Hex, chainDatanetId: bigint, amountOpen: bigint) {
  const wallet = walletOf(h, key);
  const tx = await wallet.writeContract({
    address: h.chain.addresses!.contracts.Staking,
    abi: stakingAbi,
    functionName: "unbond",
    args: [StakeRole.Contributor, subjectOf(chainDatanetId), amountOpen * OPEN],
  });
  const receipt = await wallet.waitForTransactionReceipt({ hash: tx });
  if (receipt.status !== "success") throw new Error("unbond reverted");
}

/** A multipart/form-data body with one file field `file`. */
export function multipartFile(filename: string, content: Buffer | string) {
  const boundary = `----openledger${Math.random().toString(16).slice(2)}`;
  const head = Buffer.from(
    `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${filename}"\r\n` +
      "Content-Type: application/octet-stream\r\n\r\n",
  );
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
  return {
    payload: Buffer.concat([head, Buffer.isBuffer(content) ? content : Buffer.from(content), tail]),
    headers: { "content-type": `multipart/form-data; boundary=${boundary}` },
  };
}

/** Polls until `check` returns a value (the worker runs asynchronously), failing after ~30 s. */
export async function eventually<T>(
  check: () => Promise<T | undefined | null | false>,
  what: string,
): Promise<T> {
  for (let i = 0; i < 300; i++) {
    const v = await check();
    if (v) return v;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}
