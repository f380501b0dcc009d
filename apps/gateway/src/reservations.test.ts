// The balance check across replicas: two gateway apps (two "replicas", each with its own model and
// data dir) over one Postgres schema, one Redis prefix and one local chain.
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { createChainClients, inferenceEscrowAbi, openTokenAbi } from "@openledger/chain";
import { devApiKeyRequest, type LocalChain, startLocalChain } from "@openledger/chain/testing";
import { createDb } from "@openledger/db";
import { AppError } from "@openledger/errors";
import type { App } from "@openledger/service-kit";
import { testEnvironment } from "@openledger/service-kit/testing";
import OpenAI from "openai";
import type { Hex } from "viem";
import { buildGateway, gatewayConfig } from "./app.ts";
import { Billing, inferenceFee } from "./plugins/billing.ts";

let env: Awaited<ReturnType<typeof testEnvironment>>;
let chain: LocalChain;
let dataDir: string;
let one: App;
let two: App;

/** Deposits `amount` wei of OPEN into InferenceEscrow for a dev account; returns its address (lower case). */
async function deposit(user: { address: string; privateKey: string }, amount: bigint): Promise<string> {
  const { publicClient, walletClient } = createChainClients({
    rpcUrl: chain.rpcUrl,
    chainId: chain.chainId,
    privateKey: user.privateKey as Hex,
  });
  const c = chain.addresses!.contracts;
  const approve = await walletClient.writeContract({
    address: c.OpenToken,
    abi: openTokenAbi,
    functionName: "approve",
    args: [c.InferenceEscrow, amount],
  });
  await publicClient.waitForTransactionReceipt({ hash: approve });
  const tx = await walletClient.writeContract({
    address: c.InferenceEscrow,
    abi: inferenceEscrowAbi,
    functionName: "deposit",
    args: [amount],
  });
  await publicClient.waitForTransactionReceipt({ hash: tx });
  return user.address.toLowerCase();
}

function baseURL(app: App): string {
  const addr = app.server.address();
  return `http://127.0.0.1:${typeof addr === "object" && addr ? addr.port : 0}/v1`;
}

/** The account's own key: it signs the request (POST /v1/api-keys). */
async function createKey(app: App, account: string): Promise<string> {
  const res = await fetch(`${baseURL(app)}/api-keys`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(await devApiKeyRequest(account, chain.chainId)),
  });
  assert.equal(res.status, 201, await res.clone().text());
  return ((await res.json()) as { key: string }).key;
}

async function reservedRows(account: string) {
  return one.db.gatewayReservation.findMany({ where: { accountAddress: account } });
}

function isPaymentRequired(err: unknown): boolean {
  return err instanceof AppError && err.code === "PAYMENT_REQUIRED";
}

before(async () => {
  env = await testEnvironment("gateway-reservations");
  dataDir = await mkdtemp(join(tmpdir(), "gateway-reservations-"));
  chain = await startLocalChain({ writeAddresses: join(dataDir, "addresses.json") });
  const replica = async (name: string) => {
    const app = await buildGateway(
      gatewayConfig({
        ...env.env,
        CHAIN_RPC_URL: chain.rpcUrl,
        CHAIN_ADDRESSES_FILE: join(dataDir, "addresses.json"),
        GATEWAY_DATA_DIR: join(dataDir, name),
        GATEWAY_SLOTS: "3",
        GATEWAY_MAX_NEW_TOKENS: "1024",
        GATEWAY_THREADS: "1",
        GATEWAY_CHAIN_REGISTRATION: "0",
        // Every check reads the chain: a cached balance would hide nothing here, but keep it exact.
        GATEWAY_BALANCE_CACHE_MS: "0",
        // Small prices so escrow amounts stay readable: fee = ceil(in * 1) + ceil(out * 2) wei.
        GATEWAY_BASE_PRICE_IN_PER_THOUSAND_WEI: "1000",
        GATEWAY_BASE_PRICE_OUT_PER_THOUSAND_WEI: "2000",
        GATEWAY_OUTBOX_SWEEP_MS: "600000",
      }),
    );
    await app.listen({ port: 0, host: "127.0.0.1" });
    return app;
  };
  one = await replica("one");
  two = await replica("two");
});

after(async () => {
  await one?.close();
  await two?.close();
  await chain?.stop();
  await env?.cleanup();
  await rm(dataDir, { recursive: true, force: true });
});

test("two replicas over one database cannot together reserve more than the escrow", async () => {
  const account = await deposit(chain.accounts.users[0]!, 1000n);

  // Sequentially: what one replica holds, the other sees (and names in its 402).
  const held = await one.billing.reserve(account, 600n);
  await assert.rejects(two.billing.reserve(account, 600n), (e: unknown) => {
    assert.ok(isPaymentRequired(e), String(e));
    assert.match((e as Error).message, /available 400 wei \(escrow 1000, owed 0, in flight 600\)/);
    return true;
  });
  const rest = await two.billing.reserve(account, 400n);
  await assert.rejects(one.billing.reserve(account, 1n), isPaymentRequired);
  await one.billing.release(held);
  await two.billing.release(rest);
  assert.equal((await reservedRows(account)).length, 0);

  // Concurrently: 12 requests of 250 wei spread over six replicas (the two apps and four more
  // Billing instances with their own pools: a replica admits one account's requests one at a time, so
  // more replicas race more); exactly 4 fit in 1000 wei, whatever the interleaving.
  const extra = Array.from({ length: 4 }, () => {
    const db = createDb(env.env.DATABASE_URL!);
    return new Billing(one.billing.config, db, one.gatewayChain, one.log);
  });
  for (const x of extra) await x.db.$queryRaw`SELECT 1`; // connected: the race starts together
  const replicas = Array.from({ length: 12 }, (_, i) => [one.billing, two.billing, ...extra][i % 6]!);
  // The balance read first (a chain RPC per call would stagger the admissions).
  const spendable = await one.gatewayChain.spendable(account);
  const outcomes = await Promise.allSettled(replicas.map((r) => r.reserveWithin(account, 250n, spendable)));
  const admitted = outcomes.filter((o) => o.status === "fulfilled");
  assert.equal(admitted.length, 4);
  assert.ok(outcomes.every((o) => o.status === "fulfilled" || isPaymentRequired(o.reason)));
  const rows = await reservedRows(account);
  assert.equal(
    rows.reduce((s, r) => s + BigInt(r.maxCostWei.toFixed()), 0n),
    1000n,
  );
  // A release goes through the replica that reserved (another one does not hold it: a no-op).
  for (const [i, o] of outcomes.entries()) {
    if (o.status !== "fulfilled") continue;
    await replicas[(i + 1) % 12]!.release(o.value);
    assert.ok((await reservedRows(account)).some((r) => r.id === o.value.id));
    await replicas[i]!.release(o.value);
  }
  for (const x of extra) await x.db.$disconnect();
  assert.equal((await reservedRows(account)).length, 0);
});

test("B reads the balance, A is recorded and released, then B checks: A's cost is owed, not lost", async () => {
  const account = await deposit(chain.accounts.users[1]!, 1000n);
  const base = one.catalog.models.get(one.catalog.baseModelId)!;
  // A may cost up to 500 wei (100 in, 200 out) and actually costs 300 (100 in, 100 out).
  const a = await one.billing.reserve(account, inferenceFee(base, 100, 200));
  assert.equal(a.maxCost, 500n);

  // B has read the escrow (this is where the old check also read `owed`, still 0)...
  const spendable = await two.gatewayChain.spendable(account);
  // ...then A finishes: recorded, its reservation gone, in one transaction...
  await one.inferences.persist(
    {
      modelId: one.catalog.baseModelId,
      account,
      prompt: "a",
      output: "b",
      inputTokens: 100,
      outputTokens: 100,
      ttftMs: 1,
      durationMs: 2,
    },
    a,
  );
  assert.equal((await reservedRows(account)).length, 0);
  // ...then B checks: 1000 - 300 owed leaves 700, so 800 is refused (the per-process check read
  // owed before A was recorded and the reservation after it was released: it saw 1000).
  await assert.rejects(two.billing.reserveWithin(account, 800n, spendable), (e: unknown) => {
    assert.ok(isPaymentRequired(e));
    assert.match((e as Error).message, /available 700 wei \(escrow 1000, owed 300, in flight 0\)/);
    return true;
  });
  const b = await two.billing.reserveWithin(account, 700n, spendable);
  await two.billing.release(b);
});

test("while A's recording transaction is open, B sees A's reservation; after it commits, A's fee", async () => {
  const account = await deposit(chain.accounts.users[2]!, 1000n);
  const a = await one.billing.reserve(account, 500n);
  const spendable = await two.gatewayChain.spendable(account);
  await one.db.$transaction(async (tx) => {
    await one.inferences.record(
      tx,
      {
        modelId: one.catalog.baseModelId,
        account,
        prompt: "a",
        output: "b",
        inputTokens: 100,
        outputTokens: 100,
        ttftMs: 1,
        durationMs: 2,
      },
      a,
    );
    // Not committed: B (another connection, another replica) must still count A as in flight.
    await assert.rejects(two.billing.reserveWithin(account, 501n, spendable), (e: unknown) => {
      assert.match((e as Error).message, /owed 0, in flight 500\)/);
      return true;
    });
  });
  // Committed: A counts once, as its fee (300).
  await assert.rejects(two.billing.reserveWithin(account, 701n, spendable), (e: unknown) => {
    assert.match((e as Error).message, /owed 300, in flight 0\)/);
    return true;
  });
  assert.equal(await two.billing.owed(account), 300n);
  await one.billing.release(a); // recorded already: nothing to drop, no error
});

test("a charge applied after the escrow balance was read still counts as owed (the balance may predate it)", async () => {
  const account = await deposit(chain.accounts.users[4]!, 1000n);
  const inferenceId = await one.inferences.persist({
    modelId: one.catalog.baseModelId,
    account,
    prompt: "a",
    output: "b",
    inputTokens: 100,
    outputTokens: 100,
    ttftMs: 1,
    durationMs: 2,
  });
  // Settlement settled the fee (300) and recorded its charge batch as applied just now. The chain
  // balance this replica holds (cached, or read a moment ago) may still include the 300.
  const ledger = await one.db.ledgerTransaction.create({
    data: { kind: "fee", externalKey: `fee:${inferenceId}` },
  });
  const charge = await one.db.escrowCharge.create({
    data: {
      id: "5d4f3a2b-1c0e-4f9a-8b7c-6d5e4f3a2b1c",
      batchId: `0x${"12".repeat(32)}`,
      status: "applied",
      items: [],
      totalWei: 300,
      chargedWei: 300,
      appliedAt: new Date(),
    },
  });
  await one.db.settlement.create({
    data: { inferenceId, feeWei: 300, splitBps: {}, transactionId: ledger.id, chargeId: charge.id },
  });
  assert.equal(await one.billing.owed(account), 0n, "charged: not owed against a balance read now");
  // A balance read up to 2 s ago (the cache) may predate the charge: the fee still counts.
  await assert.rejects(two.billing.reserveWithin(account, 701n, 1000n, 2000), (e: unknown) => {
    assert.match((e as Error).message, /owed 300, in flight 0\)/);
    return true;
  });
  // Once the charge is older than the balance read (plus the margin), it no longer counts.
  await one.db.escrowCharge.update({
    where: { id: charge.id },
    data: { appliedAt: new Date(Date.now() - 60_000) },
  });
  await two.billing.release(await two.billing.reserveWithin(account, 1000n, 1000n, 2000));
});

test("released and expired reservations no longer count; the sweeper removes expired ones; live ones are renewed", async () => {
  const account = await deposit(chain.accounts.users[3]!, 1000n);
  const x = await one.billing.reserve(account, 1000n);
  await assert.rejects(two.billing.reserve(account, 1n), isPaymentRequired);
  await one.billing.release(x);
  assert.equal((await reservedRows(account)).length, 0);

  // A replica that crashed mid-request left a row it will never release nor renew.
  const crashed = "0b9f6c1e-6a53-4c39-9a4e-2f3f1d3f8a01";
  await one.db.$executeRaw`INSERT INTO gateway_reservations (id, account_address, max_cost_wei, expires_at)
    VALUES (${crashed}::uuid, ${account}, 1000, now() + interval '1 hour')`;
  await assert.rejects(two.billing.reserve(account, 1n), isPaymentRequired, "live until it expires");
  await one.db
    .$executeRaw`UPDATE gateway_reservations SET expires_at = now() - interval '1 millisecond' WHERE id = ${crashed}::uuid`;
  const y = await two.billing.reserve(account, 1000n);
  assert.deepEqual(
    (await reservedRows(account)).map((r) => r.id),
    [y.id],
    "the expired row was swept by the admission",
  );
  await two.billing.release(y);

  // Another account's expired row is swept by the periodic sweep, a live one is kept.
  const other = "0x000000000000000000000000000000000000beef";
  await one.db.$executeRaw`INSERT INTO gateway_reservations (id, account_address, max_cost_wei, expires_at)
    VALUES (gen_random_uuid(), ${other}, 5, now() - interval '1 second'),
           (gen_random_uuid(), ${other}, 6, now() + interval '1 hour')`;
  assert.equal(await one.billing.sweepReservations(), 1);
  assert.deepEqual(
    (await reservedRows(other)).map((r) => r.maxCostWei.toFixed()),
    ["6"],
  );
  await one.db.gatewayReservation.deleteMany({ where: { accountAddress: other } });

  // A live reservation's expiry moves forward when its replica renews it.
  const z = await one.billing.reserve(account, 10n);
  const [before1] = await reservedRows(account);
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(await one.billing.renewReservations(), 1);
  const [after1] = await reservedRows(account);
  assert.ok(after1!.expiresAt > before1!.expiresAt);
  assert.equal(await two.billing.renewReservations(), 0, "replica two holds nothing");
  await one.billing.release(z);
});

test("over HTTP: a request in flight on one replica gets the same account a 402 on the other; cancelling it releases the reservation and bills the partial output", async () => {
  // Enough for one request of max_tokens 600 (fee <= prompt + 1200 wei), not for two.
  const account = await deposit(chain.accounts.users[5]!, 2000n);
  const k1 = await createKey(one, account);
  const k2 = await createKey(two, account);
  const c1 = new OpenAI({ apiKey: k1, baseURL: baseURL(one), maxRetries: 0 });
  const c2 = new OpenAI({ apiKey: k2, baseURL: baseURL(two), maxRetries: 0 });
  const cancelledBefore = one.host.scheduler.stats().finished.cancelled;

  const controller = new AbortController();
  const stream = await c1.chat.completions.create(
    {
      model: one.catalog.baseModelId,
      messages: [{ role: "user", content: "a long answer please" }],
      max_tokens: 600,
      temperature: 0,
      stream: true,
    },
    { signal: controller.signal },
  );
  const chunks = stream[Symbol.asyncIterator]();
  await chunks.next(); // headers and the first chunk: the request is running on replica one
  const [inFlight] = await reservedRows(account);
  assert.ok(inFlight, "replica one holds a reservation while the request runs");

  await assert.rejects(
    c2.chat.completions.create({
      model: two.catalog.baseModelId,
      messages: [{ role: "user", content: "a long answer please" }],
      max_tokens: 600,
    }),
    (e: unknown) => {
      assert.ok(e instanceof OpenAI.APIError, String(e));
      assert.equal(e.status, 402);
      assert.equal(e.code, "payment_required");
      assert.equal(e.type, "insufficient_quota");
      assert.match(e.message, new RegExp(`in flight ${inFlight.maxCostWei.toFixed()}\\)`));
      return true;
    },
  );

  controller.abort();
  await chunks.return?.();
  for (let i = 0; i < 300 && one.host.scheduler.stats().finished.cancelled === cancelledBefore; i++) {
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.equal(one.host.scheduler.stats().finished.cancelled, cancelledBefore + 1);
  let rows = await reservedRows(account);
  for (let i = 0; i < 100 && rows.length > 0; i++) {
    await new Promise((r) => setTimeout(r, 20));
    rows = await reservedRows(account);
  }
  assert.equal(rows.length, 0, "the cancelled request's reservation is gone");
  const billed = await one.db.inference.findFirst({ where: { accountAddress: account } });
  assert.ok(billed && billed.outputTokens > 0 && billed.outputTokens < 600);
  assert.equal(
    await two.billing.owed(account),
    BigInt(billed.inputTokens) + 2n * BigInt(billed.outputTokens),
  );

  // The escrow left after the partial bill admits a short request on the other replica.
  const ok = await c2.chat.completions.create({
    model: two.catalog.baseModelId,
    messages: [{ role: "user", content: "hi" }],
    max_tokens: 4,
  });
  assert.ok(ok.usage && ok.usage.completion_tokens > 0);
  assert.equal((await reservedRows(account)).length, 0, "recorded: the reservation moved to owed");
});
