// The balance check across replicas: two gateway apps (two "replicas", each with its own model and
// data dir) over one Postgres schema, one Redis prefix and one local chain.
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { devApiKeyRequest, type LocalChain, startLocalChain } from "@openledger/chain/testing";
import { createDb, Prisma } from "@openledger/db";
import { AppError } from "@openledger/errors";
import type { App } from "@openledger/service-kit";
import { testEnvironment } from "@openledger/service-kit/testing";
import { addCleared } from "@openledger/settlement";
import OpenAI from "openai";
import { Billing, inferenceFee, type Reservation } from "./plugins/billing.ts";
import { InferenceRecorder } from "./plugins/inferences.ts";
import { depositToEscrow, originOf, startTestGateway } from "./testing.ts";

let env: Awaited<ReturnType<typeof testEnvironment>>;
let chain: LocalChain;
let dataDir: string;
let one: App;
let two: App;

const deposit = (user: { address: string; privateKey: string }, amount: bigint) =>
  depositToEscrow(chain, user, amount);

function baseURL(app: App): string {
  return `${originOf(app)}/v1`;
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

/** A Billing over its own pool: another replica's balance check, against the same database and chain. */
function replicaBilling(name: string): Billing {
  return new Billing({
    config: { ...one.billing.config, GATEWAY_REPLICA_ID: name },
    db: createDb(env.env.DATABASE_URL!),
    chain: one.chain,
    log: one.log,
  });
}

const reserve = (b: Billing, account: string, maxCost: bigint) => b.reserve({ account, maxCost });

function isPaymentRequired(err: unknown): boolean {
  return err instanceof AppError && err.code === "PAYMENT_REQUIRED";
}

before(async () => {
  env = await testEnvironment("gateway-reservations");
  dataDir = await mkdtemp(join(tmpdir(), "gateway-reservations-"));
  chain = await startLocalChain({ writeAddresses: join(dataDir, "addresses.json") });
  const replica = async (name: string) =>
    (
      await startTestGateway({
        env: env.env,
        dataDir: join(dataDir, name),
        chain: { rpcUrl: chain.rpcUrl, addressesFile: join(dataDir, "addresses.json") },
        settings: {
          GATEWAY_SLOTS: "3",
          GATEWAY_MAX_NEW_TOKENS: "1024",
          GATEWAY_CHAIN_REGISTRATION: "0",
          // Every check reads the chain: a cached balance would hide nothing here, but keep it exact.
          GATEWAY_BALANCE_CACHE_MS: "0",
          // Small prices so escrow amounts stay readable: fee = ceil(in * 1) + ceil(out * 2) wei.
          GATEWAY_BASE_PRICE_IN_PER_THOUSAND_WEI: "1000",
          GATEWAY_BASE_PRICE_OUT_PER_THOUSAND_WEI: "2000",
          GATEWAY_OUTBOX_SWEEP_MS: "600000",
        },
      })
    ).app;
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

/** Backends waiting for a lock held by one of `pids`. */
async function blockedBy(pids: number[]): Promise<number[]> {
  const rows = await one.db.$queryRaw<{ pid: number }[]>`
    SELECT pid FROM pg_stat_activity WHERE pg_blocking_pids(pid) && ${pids}::int[]`;
  return rows.map((r) => r.pid);
}

async function until<T>(what: string, fn: () => Promise<T | undefined>): Promise<T> {
  for (let i = 0; i < 600; i++) {
    const v = await fn();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail(`timed out waiting for ${what}`);
}

/** A transaction that takes the lock of `lock` and holds it until `unblock()`; `blocker` is its end. */
async function holdLock(
  lock: Prisma.Sql,
): Promise<{ pid: number; unblock: () => void; blocker: Promise<void> }> {
  let unblock!: () => void;
  const held = new Promise<void>((r) => {
    unblock = r;
  });
  let pid: number | undefined;
  const blocker = one.db.$transaction(
    async (tx) => {
      const [me] = await tx.$queryRaw<{ pid: number }[]>`SELECT pg_backend_pid() AS pid`;
      await tx.$queryRaw(lock);
      pid = me!.pid;
      await held;
    },
    { timeout: 60_000 },
  );
  return { pid: await until("the lock to be held", async () => pid), unblock, blocker };
}

test("two replicas over one database cannot together reserve more than the escrow", async () => {
  const account = await deposit(chain.accounts.users[0]!, 1000n);

  // Sequentially: what one replica holds, the other sees (and names in its 402).
  const held = await reserve(one.billing, account, 600n);
  await assert.rejects(reserve(two.billing, account, 600n), (e: unknown) => {
    assert.ok(isPaymentRequired(e), String(e));
    assert.match((e as Error).message, /available 400 wei \(escrow 1000, owed 0, in flight 600\)/);
    return true;
  });
  const rest = await reserve(two.billing, account, 400n);
  await assert.rejects(reserve(one.billing, account, 1n), isPaymentRequired);
  await one.billing.release(held);
  await two.billing.release(rest);
  assert.equal((await reservedRows(account)).length, 0);

  // Concurrently: 12 requests of 250 wei spread over six replicas (the two apps and four more
  // Billing instances with their own pools); exactly 4 fit in 1000 wei, whatever the interleaving.
  const extra = Array.from({ length: 4 }, (_, i) => replicaBilling(`extra-${i}`));
  for (const x of extra) await x.db.$queryRaw`SELECT 1`; // connected: the race starts together
  const replicas = Array.from({ length: 12 }, (_, i) => [one.billing, two.billing, ...extra][i % 6]!);
  // The balance read first (a chain RPC per call would stagger the admissions).
  const balance = await one.billing.balance(account);
  const outcomes = await Promise.allSettled(
    replicas.map((r) => r.reserveWithin({ account, maxCost: 250n }, balance)),
  );
  const admitted = outcomes.filter((o) => o.status === "fulfilled");
  assert.equal(admitted.length, 4);
  assert.ok(outcomes.every((o) => o.status === "fulfilled" || isPaymentRequired(o.reason)));
  const rows = await reservedRows(account);
  assert.equal(
    rows.reduce((s, r) => s + BigInt(r.maxCostWei.toFixed()), 0n),
    1000n,
  );
  assert.deepEqual(await one.billing.reconcile(), [], "the running totals match the rows");
  // A release goes through the replica that reserved (another one does not hold it: a no-op).
  for (const [i, o] of outcomes.entries()) {
    if (o.status !== "fulfilled") continue;
    await replicas[(i + 1) % 12]!.release(o.value);
    assert.ok((await reservedRows(account)).some((r) => r.id === o.value.id));
    await replicas[i]!.release(o.value);
  }
  for (const x of extra) await x.db.$disconnect();
  assert.equal((await reservedRows(account)).length, 0);
  assert.deepEqual(await one.billing.reconcile(), []);
});

test("admissions of one account that queue behind its row lock go in one statement, decided as one by one in order", async () => {
  // An account with no escrow on chain: its totals row is created by a balance read, and the
  // admissions get a balance of 1000 wei (what is admitted depends only on the read they are given).
  const account = `0x${"77".repeat(20)}`;
  await one.billing.balance(account);
  const balance = { spendable: 1000n, cleared: 0n, at: Date.now() };
  const statements = async () =>
    (await one.billing.admissionBatches.get()).values.find((v) => v.metricName?.endsWith("_count"))?.value ??
    0;
  const before = await statements();
  // Another transaction holds the account's row: the first admission statement waits on it, and
  // the 13 admissions that arrive meanwhile wait for the next one.
  const held = await holdLock(
    Prisma.sql`SELECT 1 FROM gateway_accounts WHERE account_address = ${account} FOR UPDATE`,
  );
  const costs = [100n, ...Array.from({ length: 10 }, () => 100n), 600n, 50n, 100n];
  const first = one.billing.reserveWithin({ account, maxCost: costs[0]! }, balance);
  await until("the first admission to wait on the lock", async () =>
    (await blockedBy([held.pid])).length > 0 ? true : undefined,
  );
  const rest = costs.slice(1).map((c) => one.billing.reserveWithin({ account, maxCost: c }, balance));
  held.unblock();
  await held.blocker;
  const outcomes = await Promise.allSettled([first, ...rest]);
  // In arrival order against 1000 wei: ten of 100 fit, the 11th 100 does not, nor 600; the last
  // 50 fits no more either (0 left), nor the 100 after it.
  assert.deepEqual(
    outcomes.map((o) => o.status === "fulfilled"),
    [true, true, true, true, true, true, true, true, true, true, false, false, false, false],
  );
  for (const o of outcomes)
    if (o.status === "rejected") assert.ok(isPaymentRequired(o.reason), String(o.reason));
  assert.match(
    String((outcomes[11] as PromiseRejectedResult).reason),
    /available 0 wei \(escrow 1000, owed 0, in flight 1000\)/,
  );
  assert.equal(await statements(), before + 2, "the first, then the 13 that queued behind it together");
  assert.equal((await reservedRows(account)).length, 10);
  assert.deepEqual(await one.billing.reconcile(), []);
  for (const o of outcomes) if (o.status === "fulfilled") await one.billing.release(o.value);
  // A smaller request after a refused bigger one is still admitted in the same statement.
  const again = await Promise.allSettled(
    [700n, 400n, 300n].map((c) => one.billing.reserveWithin({ account, maxCost: c }, balance)),
  );
  assert.deepEqual(
    again.map((o) => o.status === "fulfilled"),
    [true, false, true],
  );
  for (const o of again) if (o.status === "fulfilled") await one.billing.release(o.value);
  assert.equal((await reservedRows(account)).length, 0);
  assert.deepEqual(await one.billing.reconcile(), []);
});

test("recordings of one account that queue behind its row lock go in one statement: each billed once, none lost", async () => {
  const account = `0x${"78".repeat(20)}`;
  await one.billing.balance(account);
  const balance = { spendable: 1_000_000n, cleared: 0n, at: Date.now() };
  const reservations = await Promise.all(
    Array.from({ length: 12 }, () => one.billing.reserveWithin({ account, maxCost: 1000n }, balance)),
  );
  const rec = (i: number, r: Reservation) => ({
    id: r.id,
    modelId: one.catalog.baseModelId,
    account,
    prompt: `p${i}`,
    output: `o${i}`,
    inputTokens: 10 + i,
    outputTokens: 5,
    ttftMs: 1,
    durationMs: 2,
  });
  const held = await holdLock(
    Prisma.sql`SELECT 1 FROM gateway_accounts WHERE account_address = ${account} FOR UPDATE`,
  );
  const first = one.inferences.persist(rec(0, reservations[0]!), reservations[0]);
  await until("the first recording to wait on the lock", async () =>
    (await blockedBy([held.pid])).length > 0 ? true : undefined,
  );
  // The rest queue behind it, one of them twice (a retried write of the same inference).
  const rest = reservations.slice(1).map((r, k) => one.inferences.persist(rec(k + 1, r), r));
  const twice = one.inferences.persist(rec(5, reservations[5]!), reservations[5]);
  held.unblock();
  await held.blocker;
  await Promise.all([first, ...rest, twice]);
  // Once more after it was recorded: not recorded, billed or released again.
  await one.inferences.persist(rec(7, reservations[7]!), reservations[7]);

  const rows = await one.db.$queryRaw<{ statements: number; n: number; fees: string }[]>`
    SELECT count(DISTINCT created_at)::int AS statements, count(*)::int AS n,
           SUM(input_tokens + 2 * output_tokens)::text AS fees
      FROM inferences WHERE account_address = ${account}`;
  assert.equal(rows[0]!.n, 12, "every inference recorded once");
  assert.equal(rows[0]!.statements, 2, "the first, then the 11 that queued behind it together");
  assert.equal(await one.billing.owed(account), BigInt(rows[0]!.fees));
  assert.equal((await reservedRows(account)).length, 0);
  const outbox = await one.db.gatewayOutbox.count({
    where: { inferenceId: { in: reservations.map((r) => r.id) } },
  });
  assert.equal(outbox, 12);
  assert.deepEqual(await one.billing.reconcile(), [], "billed and reserved totals match the rows");
});

test("B reads the balance, A is recorded and released, then B checks: A's cost is owed, not lost", async () => {
  const account = await deposit(chain.accounts.users[1]!, 1000n);
  const base = one.catalog.models.get(one.catalog.baseModelId)!;
  // A may cost up to 500 wei (100 in, 200 out) and actually costs 300 (100 in, 100 out).
  const a = await reserve(one.billing, account, inferenceFee(base, 100, 200));
  assert.equal(a.maxCost, 500n);

  // B has read the escrow...
  const balance = await two.billing.balance(account);
  // ...then A finishes: recorded, its reservation gone, in one statement...
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
  // ...then B checks: 1000 - 300 owed leaves 700, so 800 is refused.
  await assert.rejects(two.billing.reserveWithin({ account, maxCost: 800n }, balance), (e: unknown) => {
    assert.ok(isPaymentRequired(e));
    assert.match((e as Error).message, /available 700 wei \(escrow 1000, owed 300, in flight 0\)/);
    return true;
  });
  const b = await two.billing.reserveWithin({ account, maxCost: 700n }, balance);
  await two.billing.release(b);
  assert.deepEqual(await one.billing.reconcile(), []);
});

test("while A's recording is open, B sees A's reservation; an admission that would fit waits for it; after it commits, A's fee", async () => {
  const account = await deposit(chain.accounts.users[2]!, 1000n);
  const a = await reserve(one.billing, account, 500n);
  const balance = await two.billing.balance(account);
  let waiting: Promise<Reservation> | undefined;
  let settled = false;
  await one.db.$transaction(
    async (tx) => {
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
      // Not committed: to B (another connection, another replica) A is still in flight, never neither.
      await assert.rejects(two.billing.reserveWithin({ account, maxCost: 501n }, balance), (e: unknown) => {
        assert.match((e as Error).message, /owed 0, in flight 500\)/);
        return true;
      });
      // An admission that fits either way queues on the account's row until A commits.
      waiting = two.billing.reserveWithin({ account, maxCost: 400n }, balance).finally(() => {
        settled = true;
      });
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(settled, false, "it waits for the recording");
    },
    { timeout: 20_000 },
  );
  // Committed: the waiting admission went in against A's fee (300 owed), and A counts once.
  await two.billing.release(await waiting!);
  await assert.rejects(two.billing.reserveWithin({ account, maxCost: 701n }, balance), (e: unknown) => {
    assert.match((e as Error).message, /owed 300, in flight 0\)/);
    return true;
  });
  assert.equal(await two.billing.owed(account), 300n);
  await one.billing.release(a); // recorded already: nothing to drop, no error
  assert.deepEqual(await one.billing.reconcile(), []);
});

test("a charge recorded after the escrow balance was read still counts as owed (the balance may predate it)", async () => {
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
  // A balance read now: escrow 1000, nothing cleared yet.
  const before = await two.billing.balance(account);
  assert.deepEqual([before.spendable, before.cleared], [1000n, 0n]);
  // Settlement settles the fee (300) and records its charge batch as applied, adding it to the
  // account's cleared total in the same transaction (as settlement's EscrowCharger does).
  await one.db.$transaction(async (tx) => {
    const ledger = await tx.ledgerTransaction.create({
      data: { kind: "fee", externalKey: `fee:${inferenceId}` },
    });
    const charge = await tx.escrowCharge.create({
      data: {
        id: "5d4f3a2b-1c0e-4f9a-8b7c-6d5e4f3a2b1c",
        batchId: `0x${"12".repeat(32)}`,
        status: "applied",
        items: [{ consumer: account, amountWei: "300", outcome: "charged" }],
        totalWei: 300,
        chargedWei: 300,
        appliedAt: new Date(),
      },
    });
    await tx.settlement.create({
      data: { inferenceId, feeWei: 300, splitBps: {}, transactionId: ledger.id, chargeId: charge.id },
    });
    await tx.$executeRaw`UPDATE gateway_accounts SET cleared_wei = cleared_wei + 300 WHERE account_address = ${account}`;
  });
  assert.equal(await one.billing.owedFromHistory(account), 0n);
  assert.equal(await one.billing.owed(account), 0n, "charged: no longer owed");
  // Against the balance read before, the fee still counts: that balance may not reflect the charge.
  await assert.rejects(two.billing.reserveWithin({ account, maxCost: 701n }, before), (e: unknown) => {
    assert.match((e as Error).message, /owed 300, in flight 0\)/);
    return true;
  });
  // A balance read after the charge (cleared 300 read first) no longer counts it.
  const after = { ...before, cleared: 300n, at: Date.now() };
  await two.billing.release(await two.billing.reserveWithin({ account, maxCost: 1000n }, after));
});

test("expired reservations of a crashed replica are finalised by the sweep; live ones are renewed", async () => {
  const account = await deposit(chain.accounts.users[3]!, 1000n);
  const x = await reserve(one.billing, account, 1000n);
  await assert.rejects(reserve(two.billing, account, 1n), isPaymentRequired);
  await one.billing.release(x);
  assert.equal((await reservedRows(account)).length, 0);

  // A replica that crashed mid-request: its row stays (nobody renews or releases it) until it expires.
  const crashed = replicaBilling("crashed-replica");
  const held = await reserve(crashed, account, 1000n);
  crashed.close();
  await crashed.db.$disconnect();
  await assert.rejects(reserve(two.billing, account, 1n), isPaymentRequired, "held until it expires");
  assert.equal(await one.inferences.finalize("expired"), 0);
  assert.equal((await reservedRows(account)).length, 1, "not expired yet: kept");
  await one.db
    .$executeRaw`UPDATE gateway_reservations SET expires_at = now() - interval '1 millisecond' WHERE id = ${held.id}::uuid`;
  assert.equal(await one.inferences.finalize("expired"), 0, "nothing was delivered: nothing to record");
  assert.equal((await reservedRows(account)).length, 0, "the expired hold is gone");
  const y = await reserve(two.billing, account, 1000n);
  await two.billing.release(y);
  assert.deepEqual(await one.billing.reconcile(), []);

  // A live reservation's expiry moves forward when its replica renews it.
  const z = await reserve(one.billing, account, 10n);
  const [before1] = await reservedRows(account);
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(await one.billing.renewReservations(), 1);
  const [after1] = await reservedRows(account);
  assert.ok(after1!.expiresAt > before1!.expiresAt);
  assert.equal(await two.billing.renewReservations(), 0, "replica two holds nothing");
  await one.billing.release(z);
});

test("a replica restarted after a crash records its streams for what they delivered and releases their holds at once", async () => {
  // The chain is not what this is about: an account with a balance read of 10,000 wei.
  const account = "0x00000000000000000000000000000000000a0b0c";
  await one.db.$executeRaw`INSERT INTO gateway_accounts (account_address) VALUES (${account})`;
  const balance = { spendable: 10_000n, cleared: 0n, at: Date.now() };
  const base = one.catalog.models.get(one.catalog.baseModelId)!;
  const before = replicaBilling("restarting-replica");
  const stream = await before.reserveWithin(
    { account, maxCost: inferenceFee(base, 10, 500), model: base, prompt: "tell me", inputTokens: 10 },
    balance,
  );
  const quiet = await before.reserveWithin(
    { account, maxCost: 50n, model: base, prompt: "x", inputTokens: 1 },
    balance,
  );
  // What the stream delivered before the crash (written ahead of the socket).
  await before.db
    .$executeRaw`UPDATE gateway_reservations SET output = 'partial answer', output_tokens = 14 WHERE id = ${stream.id}::uuid`;
  before.close();
  await before.db.$disconnect();
  // The same replica starts again: a new process, the same replica id.
  const after = replicaBilling("restarting-replica");
  const recorder = new InferenceRecorder(after.db, one.producer, after, one.catalog, one.log);
  assert.equal(await recorder.finalize("restart"), 1);
  assert.equal((await reservedRows(account)).length, 0, "both holds released, long before they expire");
  const row = await one.db.inference.findUniqueOrThrow({ where: { id: stream.id } });
  assert.deepEqual(
    [row.output, row.outputTokens, row.inputTokens, row.prompt],
    ["partial answer", 14, 10, "tell me"],
  );
  assert.equal(await one.billing.owed(account), inferenceFee(base, 10, 14));
  assert.equal(
    await one.db.inference.count({ where: { id: quiet.id } }),
    0,
    "nothing delivered: nothing billed",
  );
  assert.ok(await one.producer.queue("attribution").getJob(`attribution.score.${stream.id}`), "enqueued");
  assert.deepEqual(await one.billing.reconcile(), []);
  await after.db.$disconnect();
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
  // Until a chunk carries text: the request runs on replica one and has delivered output to bill
  // (the first event, sent with the first token, carries none; on a loaded machine the abort below
  // could otherwise land before any text went out, and then there is rightly nothing to bill).
  for (;;) {
    const next = await chunks.next();
    assert.ok(!next.done, "the stream ended before any text");
    if (next.value.choices[0]?.delta?.content) break;
  }
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
  assert.deepEqual(await one.billing.reconcile(), []);
});

test("the renewal and a stream-progress batch lock reservation rows in one order: forced to overlap, neither deadlocks (40P01) and the totals stay right", async () => {
  // The chain is not what this is about: an account with a balance read of 1,000,000 wei.
  const account = "0x00000000000000000000000000000000000d0e0f";
  await one.db.$executeRaw`INSERT INTO gateway_accounts (account_address) VALUES (${account})`;
  const balance = { spendable: 1_000_000n, cleared: 0n, at: Date.now() };
  const base = one.catalog.models.get(one.catalog.baseModelId)!;
  const replica = replicaBilling("lock-order");
  replica.reservationTtlMs = 3_600_000; // no timer renewal during the test: this one calls it itself
  // A busy table (other replicas' holds, analysed): the planner looks rows up by id, as under load.
  await one.db.$executeRaw`
    INSERT INTO gateway_reservations (id, account_address, max_cost_wei, expires_at)
    SELECT gen_random_uuid(), ${account}, 1, now() + interval '1 hour' FROM generate_series(1, 20000)`;
  await one.db
    .$executeRaw`UPDATE gateway_accounts SET reserved_wei = reserved_wei + 20000 WHERE account_address = ${account}`;
  await one.db.$executeRaw`ANALYZE gateway_reservations`;
  // Nine live reservations of this replica, with ids in a known order (inserted in that order).
  const ids = Array.from(
    { length: 9 },
    (_, i) => `00000000-0000-4000-8000-${String(i + 1).padStart(12, "0")}`,
  );
  const live: Reservation[] = [];
  for (const id of ids) {
    live.push(
      await replica.reserveWithin(
        { id, account, maxCost: 1000n, model: base, prompt: "p", inputTokens: 1 },
        balance,
      ),
    );
  }
  const middle = ids[4]!;
  // A third transaction holds the middle row, so both statements stop part-way through their rows.
  const {
    pid: blocker0,
    unblock,
    blocker,
  } = await holdLock(Prisma.sql`SELECT id FROM gateway_reservations WHERE id = ${middle}::uuid FOR UPDATE`);
  // The renewal (every live row) starts and waits for the middle row...
  const renewal = replica.renewReservations();
  const [renewer] = await until("the renewal to wait", async () => {
    const pids = await blockedBy([blocker0]);
    return pids.length === 1 ? pids : undefined;
  });
  // ...then a progress batch of the same rows, written in the other order (newest stream first), waits too.
  const progress = one.inferences.writeProgress(
    [...ids].reverse().map((id, i) => ({ id, output: `out ${i}`, tokens: i + 1 })),
  );
  await until("the progress batch to wait", async () => {
    const pids = (await blockedBy([blocker0, renewer!])).filter((p) => p !== renewer);
    return pids.length === 1 ? pids : undefined;
  });
  // The middle row is free: whichever goes on, the other must not hold a row it needs (the old
  // statements locked in the plan's order, ascending ids for one and the batch's order for the other).
  unblock();
  await blocker;
  const [renewed, written] = await Promise.allSettled([renewal, progress]);
  assert.equal(renewed.status, "fulfilled", String((renewed as PromiseRejectedResult).reason));
  assert.equal(written.status, "fulfilled", String((written as PromiseRejectedResult).reason));
  assert.equal((renewed as PromiseFulfilledResult<number>).value, 9);
  const rows = await one.db.gatewayReservation.findMany({
    where: { id: { in: ids } },
    orderBy: { id: "asc" },
  });
  assert.deepEqual(
    rows.map((r) => [r.output, r.outputTokens]),
    ids.map((_, i) => [`out ${8 - i}`, 9 - i]),
  );
  assert.ok(
    rows.every((r) => r.expiresAt.getTime() > Date.now() + 600_000),
    "renewed for the long TTL",
  );

  // The books: record some, release the rest and the filler; the totals match the rows and history.
  for (const [i, r] of live.entries()) {
    if (i % 2 === 0) {
      await new InferenceRecorder(replica.db, one.producer, replica, one.catalog, one.log).persist(
        {
          id: r.id,
          modelId: base.id,
          account,
          prompt: "p",
          output: "o",
          inputTokens: 1,
          outputTokens: 2,
          ttftMs: 1,
          durationMs: 1,
        },
        r,
      );
    } else await replica.release(r);
  }
  await one.db.$executeRaw`
    WITH d AS (DELETE FROM gateway_reservations WHERE account_address = ${account} RETURNING max_cost_wei)
    UPDATE gateway_accounts SET reserved_wei = reserved_wei - (SELECT sum(max_cost_wei) FROM d)
     WHERE account_address = ${account}`;
  assert.equal(await one.billing.owed(account), 5n * inferenceFee(base, 1, 2));
  assert.deepEqual(await one.billing.reconcile(), []);
  replica.close();
  await replica.db.$disconnect();
});

test("the expired-reservation sweep and settlement's charge lock account totals in one order: forced to overlap, neither deadlocks (40P01) and the totals stay right", async () => {
  // Nine accounts; their rows are written in a scrambled order (the heap order a sweep's plan may
  // follow), the charge lists them in another (its aggregate's order): only the lock order helps.
  const accounts = Array.from({ length: 9 }, (_, i) => `0x${String(i + 1).padStart(39, "0")}d`);
  const scrambled = [4, 8, 0, 6, 2, 7, 1, 5, 3].map((i) => accounts[i]!);
  for (const a of scrambled) {
    await one.db.$executeRaw`
      INSERT INTO gateway_accounts (account_address, reserved_wei) VALUES (${a}, 100)`;
    // An expired hold of each account (a crashed replica's), the sweep's to release.
    await one.db.$executeRaw`
      INSERT INTO gateway_reservations (id, account_address, max_cost_wei, expires_at)
      VALUES (gen_random_uuid(), ${a}, 100, now() - interval '1 minute')`;
  }
  const middle = accounts[4]!;
  // A third transaction holds the middle account, so both stop part-way through their rows.
  const {
    pid: blocker0,
    unblock,
    blocker,
  } = await holdLock(
    Prisma.sql`SELECT account_address FROM gateway_accounts WHERE account_address = ${middle} FOR UPDATE`,
  );
  // The sweep (another replica's: its own pool) releases every expired hold and waits...
  const sweeper = new InferenceRecorder(
    createDb(env.env.DATABASE_URL!),
    one.producer,
    one.billing,
    one.catalog,
    one.log,
  );
  const sweep = sweeper.finalize("expired");
  const [sweeping] = await until("the sweep to wait", async () => {
    const pids = await blockedBy([blocker0]);
    return pids.length === 1 ? pids : undefined;
  });
  // ...then settlement applies a charge of the same accounts (its own transaction), and waits too.
  const amounts = new Map([...accounts].reverse().map((a) => [a, 7n]));
  const charge = one.db.$transaction((tx) => addCleared(tx, amounts), { timeout: 60_000 });
  await until("the charge to wait", async () => {
    const pids = (await blockedBy([blocker0, sweeping!])).filter((p) => p !== sweeping);
    return pids.length === 1 ? pids : undefined;
  });
  unblock();
  await blocker;
  const [swept, charged] = await Promise.allSettled([sweep, charge]);
  assert.equal(swept.status, "fulfilled", String((swept as PromiseRejectedResult).reason));
  assert.equal(charged.status, "fulfilled", String((charged as PromiseRejectedResult).reason));
  const rows = await one.db.$queryRaw<{ reserved: string; cleared: string }[]>`
    SELECT reserved_wei::text AS reserved, cleared_wei::text AS cleared FROM gateway_accounts
     WHERE account_address = ANY(${accounts}::text[])`;
  assert.deepEqual(
    rows.map((r) => [r.reserved, r.cleared]),
    accounts.map(() => ["0", "7"]),
  );
  await one.db.$executeRaw`DELETE FROM gateway_accounts WHERE account_address = ANY(${accounts}::text[])`;
  await sweeper.db.$disconnect();
});
