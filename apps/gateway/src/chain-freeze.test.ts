// A frozen chain node (SIGSTOP: it accepts connections and never answers) must not hang the
// gateway: an account whose escrow balance was read within the stale limit is served on it, one
// without such a read gets 503 CHAIN_UNAVAILABLE within CHAIN_REQUEST_TIMEOUT_MS, /readyz says
// degraded and then unready once the stale limit has passed; everything recovers on SIGCONT.
// Real Postgres, Redis and a local Hardhat node.
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { OPEN } from "@openledger/chain";
import { devApiKeyRequest, type LocalChain, startLocalChain } from "@openledger/chain/testing";
import type { App } from "@openledger/service-kit";
import { testEnvironment } from "@openledger/service-kit/testing";
import { depositToEscrow, startTestGateway } from "./testing.ts";

const REQUEST_TIMEOUT_MS = 500;
const STALE_MS = 4000;
let env: Awaited<ReturnType<typeof testEnvironment>>;
let chain: LocalChain;
let dir: string;
let app: App;
const keys: Record<"served" | "unseen", string> = { served: "", unseen: "" };

before(async () => {
  env = await testEnvironment("gateway-chain-freeze");
  dir = await mkdtemp(join(tmpdir(), "gateway-chain-freeze-"));
  chain = await startLocalChain({ writeAddresses: join(dir, "addresses.json") });
  ({ app } = await startTestGateway({
    env: env.env,
    dataDir: join(dir, "gateway"),
    chain: { rpcUrl: chain.rpcUrl, addressesFile: join(dir, "addresses.json") },
    settings: {
      CHAIN_REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT_MS),
      READY_TIMEOUT_MS: "200",
      GATEWAY_SLOTS: "2",
      GATEWAY_CHAIN_REGISTRATION: "false",
      GATEWAY_BALANCE_CACHE_MS: "0",
      GATEWAY_BALANCE_STALE_MS: String(STALE_MS),
    },
  }));
  for (const [name, user] of [
    ["served", chain.accounts.users[0]!],
    ["unseen", chain.accounts.users[1]!],
  ] as const) {
    await depositToEscrow(chain, user, 100n * OPEN);
    const res = await app.inject({
      method: "POST",
      url: "/v1/api-keys",
      payload: await devApiKeyRequest(user.address, chain.chainId, name),
    });
    assert.equal(res.statusCode, 201, res.body);
    keys[name] = res.json().key;
  }
});

after(async () => {
  if (chain?.pid) process.kill(chain.pid, "SIGCONT");
  await app?.close();
  await chain?.stop();
  await env?.cleanup();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function chat(who: keyof typeof keys) {
  const started = performance.now();
  const res = await app.inject({
    method: "POST",
    url: "/v1/chat/completions",
    headers: { authorization: `Bearer ${keys[who]}` },
    payload: { model: "openledger-tiny", messages: [{ role: "user", content: "hello" }], max_tokens: 4 },
  });
  return { res, ms: performance.now() - started };
}

async function readyz() {
  const res = await app.inject({ method: "GET", url: "/readyz" });
  const body = res.json();
  return {
    status: res.statusCode,
    body,
    chain: body.checks.find((c: { name: string }) => c.name === "chain"),
  };
}

test("a frozen chain: served on a recent balance, refused fast without one, degraded then unready, recovers", async () => {
  // Generous slack for a loaded machine; without the bound these requests would wait for as long
  // as the node stays frozen (for ever, here).
  const bound = REQUEST_TIMEOUT_MS + 4000;
  const warm = await chat("served");
  assert.equal(warm.res.statusCode, 200, warm.res.body);
  assert.equal((await readyz()).body.status, "ready");
  const readAt = Date.now();

  process.kill(chain.pid!, "SIGSTOP");
  try {
    const served = await chat("served");
    assert.equal(served.res.statusCode, 200, served.res.body);
    assert.match(String(served.res.headers["x-openledger-inference-id"]), /^[0-9a-f-]{36}$/);
    assert.ok(served.ms < bound, `served after ${served.ms} ms`);
    const refused = await chat("unseen");
    assert.equal(refused.res.statusCode, 503, refused.res.body);
    assert.equal(refused.res.json().error.code, "chain_unavailable"); // the OpenAI error shape
    assert.ok(refused.ms < bound, `refused after ${refused.ms} ms`);
    const row = await app.db.inference.findUnique({
      where: { id: String(served.res.headers["x-openledger-inference-id"]) },
    });
    assert.ok(row, "the inference served on the recent balance is recorded (and billed)");

    const degraded = await readyz();
    assert.equal(degraded.status, 200, JSON.stringify(degraded.body));
    assert.equal(degraded.body.status, "degraded");
    assert.deepEqual([degraded.chain.ok, degraded.chain.impact], [false, "degraded"]);

    // Past the stale limit the balance is no longer used, and the gateway says it cannot serve.
    await new Promise((r) => setTimeout(r, Math.max(0, readAt + STALE_MS + 100 - Date.now())));
    const expired = await chat("served");
    assert.equal(expired.res.statusCode, 503, expired.res.body);
    assert.ok(expired.ms < bound, `refused after ${expired.ms} ms`);
    const unready = await readyz();
    assert.equal(unready.status, 503, JSON.stringify(unready.body));
    assert.equal(unready.chain.impact, "unready");
  } finally {
    process.kill(chain.pid!, "SIGCONT");
  }
  let again = await chat("served");
  for (let i = 0; i < 100 && again.res.statusCode !== 200; i++) {
    await new Promise((r) => setTimeout(r, 100));
    again = await chat("served");
  }
  assert.equal(again.res.statusCode, 200, again.res.body);
  assert.equal((await chat("unseen")).res.statusCode, 200);
  assert.equal((await readyz()).body.status, "ready");
  assert.deepEqual(await app.billing.reconcile(), []);
});
