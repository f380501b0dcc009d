// Refusals are decided before any per-account lock or database work: with the account's running
// totals row locked by another transaction (as a slow admission, recording or charge would hold it),
// a request beyond the account's rate still gets its 429 at once. Without the defence (the rate limit
// applied after admission) the request would wait on that lock for as long as it is held.
// Real Postgres, Redis and a local Hardhat node.
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { OPEN } from "@openledger/chain";
import { devApiKeyRequest, type LocalChain, startLocalChain } from "@openledger/chain/testing";
import { createDb } from "@openledger/db";
import type { App } from "@openledger/service-kit";
import { testEnvironment } from "@openledger/service-kit/testing";
import { depositToEscrow, startTestGateway } from "./testing.ts";

let env: Awaited<ReturnType<typeof testEnvironment>>;
let chain: LocalChain;
let dir: string;
let app: App;
let key: string;
let account: string;

before(async () => {
  env = await testEnvironment("gateway-refusals");
  dir = await mkdtemp(join(tmpdir(), "gateway-refusals-"));
  chain = await startLocalChain({ writeAddresses: join(dir, "addresses.json") });
  ({ app } = await startTestGateway({
    env: env.env,
    dataDir: join(dir, "gateway"),
    chain: { rpcUrl: chain.rpcUrl, addressesFile: join(dir, "addresses.json") },
    settings: {
      GATEWAY_SLOTS: "2",
      GATEWAY_CHAIN_REGISTRATION: "false",
      // A bucket of one request, refilled once a minute.
      GATEWAY_RATE_REQUESTS_PER_MIN: "1",
    },
  }));
  const user = chain.accounts.users[0]!;
  account = await depositToEscrow(chain, user, 10n * OPEN);
  const res = await app.inject({
    method: "POST",
    url: "/v1/api-keys",
    payload: await devApiKeyRequest(user.address, chain.chainId, "refusals"),
  });
  assert.equal(res.statusCode, 201, res.body);
  key = res.json().key;
});

after(async () => {
  await app?.close();
  await chain?.stop();
  await env?.cleanup();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const chat = () =>
  app.inject({
    method: "POST",
    url: "/v1/chat/completions",
    headers: { authorization: `Bearer ${key}` },
    payload: { model: "openledger-tiny", messages: [{ role: "user", content: "hi" }], max_tokens: 2 },
  });

test("a request beyond the rate gets 429 while the account's totals row is locked: no lock, no query first", async () => {
  const first = await chat();
  assert.equal(first.statusCode, 200, first.body);
  const rows = await app.db.inference.count();
  const other = createDb(env.env.DATABASE_URL!);
  try {
    const outcome = await other.$transaction(
      async (tx) => {
        // What an admission, a recording or a charge of this account would have to wait for.
        const locked = await tx.$queryRaw<{ account_address: string }[]>`
          SELECT account_address FROM gateway_accounts WHERE account_address = ${account} FOR UPDATE`;
        assert.equal(locked.length, 1, "the account's totals row exists and is locked");
        // The lock is held until the answer arrives, or for 30 s: an answer that needed the lock
        // could only come after that.
        return Promise.race([
          chat().then((res) => ({ res, whileLocked: true })),
          new Promise<{ res: undefined; whileLocked: false }>((r) =>
            setTimeout(() => r({ res: undefined, whileLocked: false }), 30_000),
          ),
        ]);
      },
      { timeout: 60_000, maxWait: 10_000 },
    );
    assert.ok(outcome.whileLocked, "the refusal waited for the account's row lock");
    assert.equal(outcome.res!.statusCode, 429, outcome.res!.body);
    assert.equal(outcome.res!.json().error.code, "rate_limited");
    assert.ok(Number(outcome.res!.headers["retry-after"]) >= 1);
  } finally {
    await other.$disconnect();
  }
  assert.equal(await app.db.inference.count(), rows, "nothing recorded for the refusal");
  assert.equal(await app.db.gatewayReservation.count(), 0, "nothing held for it");
  assert.deepEqual(await app.billing.reconcile(), []);
});
