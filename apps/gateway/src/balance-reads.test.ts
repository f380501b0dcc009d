// Escrow balance reads on the request path: one read per account at a time, renewed ahead of its
// expiry, never used past GATEWAY_BALANCE_CACHE_MS. Real Postgres and a local chain.
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { OPEN } from "@openledger/chain";
import { type LocalChain, startLocalChain } from "@openledger/chain/testing";
import type { App } from "@openledger/service-kit";
import { testEnvironment } from "@openledger/service-kit/testing";
import { Billing, type EscrowReader } from "./plugins/billing.ts";
import { depositToEscrow, startTestGateway } from "./testing.ts";

let env: Awaited<ReturnType<typeof testEnvironment>>;
let chain: LocalChain;
let dataDir: string;
let app: App;

before(async () => {
  env = await testEnvironment("gateway-balance-reads");
  dataDir = await mkdtemp(join(tmpdir(), "gateway-balance-reads-"));
  chain = await startLocalChain({ writeAddresses: join(dataDir, "addresses.json") });
  app = (
    await startTestGateway({
      env: env.env,
      dataDir,
      chain: { rpcUrl: chain.rpcUrl, addressesFile: join(dataDir, "addresses.json") },
      settings: { GATEWAY_CHAIN_REGISTRATION: "0" },
    })
  ).app;
});

after(async () => {
  await app?.close();
  await chain?.stop();
  await env?.cleanup();
  await rm(dataDir, { recursive: true, force: true });
});

/** A Billing over the app's database and chain whose chain reads are counted. */
function countingBilling(cacheMs: number): { billing: Billing; reads: () => number } {
  let reads = 0;
  const counting: EscrowReader = {
    read: (fn) => {
      reads++;
      return app.chain.read(fn);
    },
  };
  const billing = new Billing({
    config: { ...app.billing.config, GATEWAY_BALANCE_CACHE_MS: cacheMs },
    db: app.db,
    chain: counting,
    log: app.log,
  });
  return { billing, reads: () => reads };
}

test("admissions of one account that find no fresh balance share one read, not one each", async () => {
  const account = await depositToEscrow(chain, chain.accounts.users[0]!, 5n * OPEN);
  const { billing, reads } = countingBilling(60_000);
  const got = await Promise.all(Array.from({ length: 20 }, () => billing.balance(account)));
  assert.equal(reads(), 1);
  for (const g of got) assert.equal(g.spendable, 5n * OPEN);
  billing.close();
});

test("a read past half its life is renewed in the background while it serves; none is used past the cache time", async () => {
  const user = chain.accounts.users[1]!;
  const account = await depositToEscrow(chain, user, 3n * OPEN);
  const cacheMs = 1500;
  const { billing, reads } = countingBilling(cacheMs);
  const first = await billing.balance(account);
  assert.equal(reads(), 1);
  // Young: served from the cache, nothing read.
  assert.equal(await billing.balance(account), first);
  assert.equal(reads(), 1);
  // A deposit lands; past half the cache time the old read still serves at once, and one renewal starts.
  await depositToEscrow(chain, user, 2n * OPEN);
  await sleep(cacheMs / 2 + 50 - (Date.now() - first.at));
  const served = await Promise.all([billing.balance(account), billing.balance(account)]);
  for (const s of served) assert.equal(s, first);
  // The renewal lands before the first read expires (so no admission waited for a read): the
  // deposit is seen.
  let renewed = first;
  while (renewed === first && Date.now() - first.at < cacheMs - 20) {
    await sleep(10);
    renewed = await billing.balance(account);
  }
  assert.notEqual(renewed, first, "renewed before the first read expired");
  assert.equal(renewed.spendable, 5n * OPEN);
  assert.ok(renewed.at > first.at);
  assert.ok(Date.now() - renewed.at < cacheMs);
  // One renewal for all the calls made while it was in flight.
  assert.equal(reads(), 2);
  billing.close();
});

test("with no cache time every admission reads the chain itself", async () => {
  const account = await depositToEscrow(chain, chain.accounts.users[2]!, OPEN);
  const { billing, reads } = countingBilling(0);
  await Promise.all(Array.from({ length: 3 }, () => billing.balance(account)));
  await billing.balance(account);
  assert.equal(reads(), 4);
  billing.close();
});

test("an account with a live reservation here keeps a fresh read; one without is not renewed", async () => {
  const served = await depositToEscrow(chain, chain.accounts.users[3]!, 2n * OPEN);
  const idle = await depositToEscrow(chain, chain.accounts.users[4]!, 2n * OPEN);
  const cacheMs = 600;
  const { billing, reads } = countingBilling(cacheMs);
  const idleRead = await billing.balance(idle);
  const reservation = await billing.reserve({ account: served, maxCost: 1000n });
  const afterAdmission = reads();
  assert.equal(afterAdmission, 2);
  // A request outlasts the cache time: the served account's read is renewed in the background.
  await sleep(cacheMs * 3);
  assert.ok(reads() > afterAdmission, "renewed while the reservation is live");
  // The next admission takes a read from the cache: it was made before the call (none on its path)
  // and is within the cache time.
  const calledAt = Date.now();
  const readsBefore = reads();
  const next = await billing.reserve({ account: served, maxCost: 1000n });
  const balance = await billing.balance(served);
  assert.ok(balance.at <= calledAt, "no read on the admission's path");
  assert.ok(Date.now() - balance.at < cacheMs);
  assert.ok(reads() - readsBefore <= 1, "at most the usual background renewal");
  // The idle account was not renewed: its read expired, and the next check reads on its path.
  const idleAt = Date.now();
  const idleNext = await billing.balance(idle);
  assert.notEqual(idleNext, idleRead);
  assert.ok(idleNext.at >= idleAt);
  // Once nothing is live here, the renewal stops.
  await billing.release(reservation);
  await billing.release(next);
  await sleep(cacheMs / 2);
  const settled = reads();
  await sleep(cacheMs * 2);
  assert.equal(reads(), settled);
  billing.close();
});
