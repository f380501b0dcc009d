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

test("a frozen chain (SIGSTOP): request-path reads answer 503 within CHAIN_REQUEST_TIMEOUT_MS, then at once; readiness says degraded without waiting; all recovers on SIGCONT", async () => {
  const env = await testEnvironment("kit_chain_frozen");
  const def = defineService({
    name: "gateway",
    title: "probe",
    description: "frozen chain test",
    routes: async (app) => {
      app.get("/supply", async () => {
        const supply = await app.chain.read(async (c) =>
          c.publicClient.readContract({
            address: c.addresses.contracts.OpenToken,
            abi: openTokenAbi,
            functionName: "totalSupply",
          }),
        );
        return { supply: supply.toString() };
      });
    },
  });
  const timeoutMs = 400;
  const build = () =>
    buildService(
      def,
      parseConfig("probe", baseEnv, {
        ...env.env,
        RUN_WORKERS: "false",
        CHAIN_RPC_URL: chain.rpcUrl,
        CHAIN_ADDRESSES_FILE: addressesFile,
        CHAIN_REQUEST_TIMEOUT_MS: String(timeoutMs),
        READY_TIMEOUT_MS: "200",
      }),
    );
  const warm = await build();
  const cold = await build(); // never connected before the freeze
  const timed = async (app: Awaited<ReturnType<typeof build>>, url: string) => {
    const started = performance.now();
    const res = await app.inject({ method: "GET", url });
    return { res, ms: performance.now() - started };
  };
  // Generous slack for a loaded machine: without the bound these requests would wait for as long as
  // the node stays frozen (forever, here).
  const bound = timeoutMs + 4000;
  try {
    assert.equal((await warm.inject({ method: "GET", url: "/supply" })).statusCode, 200);
    assert.equal((await warm.inject({ method: "GET", url: "/readyz" })).json().status, "ready");
    process.kill(chain.pid!, "SIGSTOP");
    try {
      const first = await timed(warm, "/supply");
      assert.equal(first.res.statusCode, 503, first.res.body);
      assert.equal(first.res.json().error.code, "CHAIN_UNAVAILABLE");
      assert.equal(first.res.headers["retry-after"], "1");
      assert.ok(first.ms < bound, `waited ${first.ms} ms on a frozen chain`);
      const second = await timed(warm, "/supply");
      assert.equal(second.res.statusCode, 503);
      // Two reads in a row got no answer: the circuit is open and nobody waits on the chain now.
      const third = await timed(warm, "/supply");
      assert.equal(third.res.statusCode, 503);
      assert.match(third.res.json().error.message ?? "", /retry shortly/);
      assert.match(warm.chain.health().lastError ?? "", /moments ago/);
      assert.equal(warm.chain.health().state, "down");
      const fresh = await timed(cold, "/supply");
      assert.equal(fresh.res.statusCode, 503, "connecting is bounded too");
      assert.ok(fresh.ms < bound, `a first connection waited ${fresh.ms} ms on a frozen chain`);

      const ready = await warm.inject({ method: "GET", url: "/readyz" });
      assert.equal(ready.statusCode, 200, ready.body);
      assert.equal(ready.json().status, "degraded");
      const chainCheck = ready.json().checks.find((c: { name: string }) => c.name === "chain");
      assert.deepEqual([chainCheck.ok, chainCheck.impact], [false, "degraded"]);
    } finally {
      process.kill(chain.pid!, "SIGCONT");
    }
    // The breaker lets a probe through after its half-open delay; the next read gets an answer.
    let res = await warm.inject({ method: "GET", url: "/supply" });
    for (let i = 0; i < 100 && res.statusCode !== 200; i++) {
      await new Promise((r) => setTimeout(r, 100));
      res = await warm.inject({ method: "GET", url: "/supply" });
    }
    assert.equal(res.statusCode, 200, res.body);
    assert.equal(warm.chain.health().state, "up");
  } finally {
    await warm.close();
    await cold.close();
    await env.cleanup();
  }
});

test("many request-path reads at once add no listeners to a shared signal (no MaxListenersExceededWarning)", async () => {
  const warnings: Error[] = [];
  const onWarning = (w: Error) => {
    if (w.name === "MaxListenersExceededWarning") warnings.push(w);
  };
  process.on("warning", onWarning);
  try {
    const c = connector();
    const blocks = await Promise.all(
      Array.from({ length: 32 }, () => c.read((conn) => conn.publicClient.getBlockNumber())),
    );
    assert.equal(blocks.length, 32);
    // Warnings are emitted on the next tick.
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(
      warnings.map((w) => w.message),
      [],
    );
  } finally {
    process.off("warning", onWarning);
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
