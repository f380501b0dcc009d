// Fixtures of the factory's tests (not used by the service): a real local chain, a real gateway
// (in-process, listening), a datanet whose versions are published on chain, funded builders with
// their own API keys.
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  createChainClients,
  datanetRegistryAbi,
  inferenceEscrowAbi,
  OPEN,
  openTokenAbi,
} from "@openledger/chain";
import { devApiKeyRequest, type LocalChain, sendAs, startLocalChain } from "@openledger/chain/testing";
import { TINY_MODEL_ENV } from "@openledger/config";
import type { Db } from "@openledger/db";
import { seedVersionRows } from "@openledger/db/testing";
import { startTestGateway } from "@openledger/gateway/testing";
import type { App } from "@openledger/service-kit";
import { testEnvironment } from "@openledger/service-kit/testing";
import type { Hex } from "viem";

export const ALICE = "0x00000000000000000000000000000000000a11ce";
export const BOB = "0x0000000000000000000000000000000000000b0b";

/** Rows by two contributors (real text: the opening of Moby-Dick's chapter 1 and of its epilogue). */
export const ROWS: { who: string; text: string }[] = [
  {
    who: ALICE,
    text: "Call me Ishmael. Some years ago, never mind how long precisely, having little or no money in my purse.",
  },
  {
    who: BOB,
    text: "The drama's done. Why then here does any one step forth? Because one did survive the wreck.",
  },
  { who: ALICE, text: "It is a way I have of driving off the spleen and regulating the circulation." },
  {
    who: BOB,
    text: "It so chanced, that after the Parsee's disappearance, I was he whom the Fates ordained.",
  },
];

export interface Platform {
  env: Awaited<ReturnType<typeof testEnvironment>>;
  chain: LocalChain;
  dir: string;
  chainEnv: Record<string, string>;
  gateway: App;
  gatewayUrl: string;
  db: Db;
  /** Published on chain (v1), another published one (v2), one not published (pending). */
  versions: { published: string; second: string; unpublished: string };
  close(): Promise<void>;
}

/** The chain, a gateway and a datanet with published versions; the factory is the test's. */
export async function startPlatform(label: string): Promise<Platform> {
  const env = await testEnvironment(label);
  // The factory's tests train on the tiny model (fast; byte tokenizer): the gateway, the factory the
  // test starts (in-process or as a child) and anything else built from env.env.
  env.env = { ...TINY_MODEL_ENV, ...env.env };
  const dir = await mkdtemp(join(tmpdir(), `${label}-`));
  const chain = await startLocalChain({ writeAddresses: join(dir, "addresses.json") });
  const chainEnv = { CHAIN_RPC_URL: chain.rpcUrl, CHAIN_ADDRESSES_FILE: join(dir, "addresses.json") };
  const { app: gateway, url: gatewayUrl } = await startTestGateway({
    env: env.env,
    dataDir: join(dir, "gateway"),
    chain: { rpcUrl: chain.rpcUrl, addressesFile: join(dir, "addresses.json") },
    settings: { GATEWAY_SLOTS: "3", GATEWAY_BALANCE_CACHE_MS: "0", GATEWAY_OUTBOX_SWEEP_MS: "600000" },
  });
  const db = gateway.db;
  const versions = await seedDatanet(chain, db);
  return {
    env,
    chain,
    dir,
    chainEnv,
    gateway,
    gatewayUrl,
    db,
    versions,
    async close() {
      await gateway.close();
      await chain.stop();
      await env.cleanup();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

async function seedDatanet(chain: LocalChain, db: Db): Promise<Platform["versions"]> {
  const owner = chain.accounts.users[0]!;
  const send = (functionName: string, args: unknown[]) =>
    sendAs<bigint>(chain, owner.privateKey, {
      address: chain.addresses!.contracts.DatanetRegistry,
      abi: datanetRegistryAbi,
      functionName,
      args,
    });
  const chainDatanetId = await send("createDatanet", ["openledger:test:moby"]);
  for (const a of [ALICE, BOB]) await db.contributor.create({ data: { address: a } });
  const datanet = await db.datanet.create({
    data: {
      slug: "moby",
      name: "Moby",
      type: "text",
      license: "CC0-1.0",
      ownerAddress: owner.address.toLowerCase(),
      chainDatanetId: chainDatanetId.toString(),
    },
  });
  let version = 0;
  const mkVersion = async (rows: typeof ROWS, published: boolean) => {
    if (published)
      await send("publishVersion", [chainDatanetId, `0x${"ab".repeat(32)}`, BigInt(rows.length), 2n]);
    const v = await db.datanetVersion.create({
      data: {
        datanetId: datanet.id,
        version: ++version,
        merkleRoot: `0x${"ab".repeat(32)}`,
        rowCount: rows.length,
        contributorCount: new Set(rows.map((r) => r.who)).size,
        status: published ? "registered" : "pending",
      },
    });
    await seedVersionRows(db, datanet.id, v.id, rows);
    return v.id;
  };
  return {
    published: await mkVersion(ROWS, true),
    second: await mkVersion(ROWS.slice(0, 2), true),
    unpublished: await mkVersion(ROWS.slice(2), false),
  };
}

/** Deposits `amount` OPEN wei into the escrow for a dev account. */
export async function deposit(chain: LocalChain, user: { privateKey: string }, amount = 100n * OPEN) {
  const { publicClient, walletClient } = createChainClients({
    rpcUrl: chain.rpcUrl,
    chainId: chain.chainId,
    privateKey: user.privateKey as Hex,
  });
  const c = chain.addresses!.contracts;
  for (const [address, abi, functionName, args] of [
    [c.OpenToken, openTokenAbi, "approve", [c.InferenceEscrow, amount]],
    [c.InferenceEscrow, inferenceEscrowAbi, "deposit", [amount]],
  ] as const) {
    const hash = await walletClient.writeContract({ address, abi, functionName, args } as never);
    await publicClient.waitForTransactionReceipt({ hash });
  }
}

/** The account's own API key (it signs the request, POST /v1/api-keys on the gateway). */
export async function createKey(p: Platform, account: string): Promise<string> {
  const res = await fetch(`${p.gatewayUrl}/v1/api-keys`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(await devApiKeyRequest(account, p.chain.chainId)),
  });
  assert.equal(res.status, 201, await res.clone().text());
  return ((await res.json()) as { key: string }).key;
}
