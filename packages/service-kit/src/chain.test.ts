// The kit's chain plugin against a real local chain and Postgres: one connector per app, the
// addresses file checked against the node's chain id, dev keys only in the dev profile, and
// intents of one signer sent at once never collide on a nonce.
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import {
  assertProfileFits,
  ChainConfigError,
  ChainConnector,
  type IntentSpec,
  openTokenAbi,
  REPO_ROOT,
} from "@openledger/chain";
import { type LocalChain, localAccounts, startLocalChain } from "@openledger/chain/testing";
import { baseEnv, parseConfig } from "@openledger/config";
import { createTestDatabase, type TestDatabase } from "@openledger/db/testing";
import { AppError } from "@openledger/errors";
import type { Abi, Address } from "viem";
import { buildService, defineService } from "./service.ts";
import { testEnvironment } from "./testing.ts";

let chain: LocalChain;
let database: TestDatabase;
let dir: string;
let addressesFile: string;

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "kit-chain-"));
  addressesFile = path.join(dir, "addresses.json");
  [chain, database] = await Promise.all([
    startLocalChain({ writeAddresses: addressesFile }),
    createTestDatabase("kit_chain"),
  ]);
});
after(async () => {
  await chain?.stop();
  await database?.drop();
  await rm(dir, { recursive: true, force: true });
});

const connector = (over: Partial<ConstructorParameters<typeof ChainConnector>[0]> = {}) =>
  new ChainConnector({
    rpcUrl: chain.rpcUrl,
    addressesFile,
    profile: "dev",
    signers: { operator: { key: undefined, variable: "X_OPERATOR_KEY" } },
    validators: { key: undefined, variable: "X_VALIDATOR_KEYS" },
    ...over,
  });

test("dev profile: missing keys are the local deployment's accounts; production: the variable is named", async () => {
  const accounts = localAccounts();
  const dev = await connector().get();
  assert.equal(dev.chainId, chain.chainId);
  assert.equal(dev.addresses.contracts.OpenToken, chain.addresses!.contracts.OpenToken);
  assert.equal(dev.signer("operator").account.address, accounts.operator.address);
  assert.deepEqual(
    dev.validators.map((v) => v.address),
    accounts.validators.map((v) => v.address),
  );
  assert.throws(() => dev.signer("settler"), ChainConfigError, "a role the service does not play");

  const prod = await connector({ profile: "production" }).get();
  assert.throws(() => prod.signer("operator"), /X_OPERATOR_KEY is required \(CHAIN_PROFILE=production\)/);
  assert.deepEqual(prod.validators, [], "no validator keys configured: none");
  const configured = await connector({
    profile: "production",
    signers: { operator: { key: accounts.users[0]!.privateKey, variable: "X_OPERATOR_KEY" } },
  }).get();
  assert.equal(configured.signer("operator").account.address, accounts.users[0]!.address);

  assert.doesNotThrow(() => assertProfileFits("dev", 31337));
  assert.throws(() => assertProfileFits("dev", 10), /dev profile is for local chains/);
  assert.doesNotThrow(() => assertProfileFits("production", 10));
  assert.throws(
    () => assertProfileFits("dev", 31337, { profile: "production" }),
    /production-profile deployment/,
  );
});

test("an addresses file for another chain is refused, naming both chain ids; a later fix is picked up", async () => {
  const wrong = path.join(dir, "wrong.json");
  await writeFile(wrong, JSON.stringify({ ...chain.addresses, chainId: 10 }));
  const c = connector({ addressesFile: wrong });
  await assert.rejects(c.get(), /is for chain 10, the node at http:\/\/127\.0\.0\.1:\d+ serves chain 31337/);
  await writeFile(wrong, JSON.stringify(chain.addresses));
  assert.equal((await c.get()).chainId, 31337, "a failure is not cached");
  const down = connector({ rpcUrl: "http://127.0.0.1:1" });
  await assert.rejects(down.get(), /chain unreachable at http:\/\/127\.0\.0\.1:1/);
});

test("intents sent at once by one signer each get their own nonce and all confirm", async () => {
  const conn = await connector().get();
  const token = conn.addresses.contracts.OpenToken;
  const spec = (i: number): IntentSpec => {
    const spender = `0x${(0xabc000 + i).toString(16).padStart(40, "0")}` as Address;
    return {
      key: `kit-test.approve:${i}`,
      kind: "kit-test.approve",
      payload: { i },
      call: {
        address: token,
        abi: openTokenAbi as Abi,
        functionName: "approve",
        args: [spender, BigInt(i + 1)],
      },
      isDone: async () =>
        (await conn.publicClient.readContract({
          address: token,
          abi: openTokenAbi,
          functionName: "allowance",
          args: [conn.signer("operator").account.address, spender],
        })) === BigInt(i + 1),
    };
  };
  const results = await Promise.all(
    [0, 1, 2, 3, 4].map((i) => conn.execute(database.db, "operator", spec(i))),
  );
  assert.equal(new Set(results.map((r) => r.txHash)).size, 5, "five transactions, one per intent");
  const rows = await database.db.$queryRawUnsafe<{ status: string }[]>(
    `SELECT status::text AS status FROM chain_intents WHERE kind = 'kit-test.approve'`,
  );
  assert.deepEqual(
    rows.map((r) => r.status),
    Array(5).fill("confirmed"),
  );
  for (let i = 0; i < 5; i++) assert.equal(await spec(i).isDone(), true);
});

test("app.chain: one connector per app; require() turns an unusable chain into 503 CHAIN_UNAVAILABLE", async () => {
  const env = await testEnvironment("kit_chain_app");
  const def = defineService({
    name: "gateway",
    title: "probe",
    description: "chain plugin test",
    routes: async (app) => {
      app.get("/chain", async () => ({ chainId: (await app.chain.require()).chainId }));
    },
  });
  const build = (extra: Record<string, string>) =>
    buildService(def, parseConfig("probe", baseEnv, { ...env.env, RUN_WORKERS: "false", ...extra }));
  const up = await build({ CHAIN_RPC_URL: chain.rpcUrl, CHAIN_ADDRESSES_FILE: addressesFile });
  const down = await build({ CHAIN_RPC_URL: "http://127.0.0.1:1", CHAIN_ADDRESSES_FILE: addressesFile });
  try {
    assert.deepEqual((await up.inject({ method: "GET", url: "/chain" })).json(), { chainId: 31337 });
    assert.equal(up.chain, up.chain, "decorated once");
    const res = await down.inject({ method: "GET", url: "/chain" });
    assert.equal(res.statusCode, 503);
    assert.equal(res.json().error.code, "CHAIN_UNAVAILABLE");
    await assert.rejects(down.chain.require(), (e: unknown) => e instanceof AppError && e.status === 503);
  } finally {
    await up.close();
    await down.close();
    await env.cleanup();
  }
});

test("no production code imports @openledger/chain/testing (it spawns Hardhat)", () => {
  const offenders: string[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const full = path.join(d, name);
      if (name === "node_modules" || name === "generated") continue;
      if (statSync(full).isDirectory()) walk(full);
      else if (
        /\.ts$/.test(name) &&
        !/\.test\.ts$/.test(name) &&
        !/(^|[-/])testing\.ts$/.test(name) &&
        !/test-support\.ts$/.test(name) &&
        readFileSync(full, "utf8").includes("@openledger/chain/testing")
      )
        offenders.push(path.relative(REPO_ROOT, full));
    }
  };
  for (const root of ["apps", "packages"]) walk(path.join(REPO_ROOT, root));
  assert.deepEqual(offenders, []);
});
