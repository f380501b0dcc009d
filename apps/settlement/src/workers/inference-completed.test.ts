// The batch form of `inference.completed` through the real worker, on real Postgres, Redis and a
// local chain: a batch mixing a fresh inference (twice), one already settled, one still waiting
// for its attribution quorum and one the database does not know yet. Nothing is lost, nothing is
// paid twice, and the ledger sums to zero.
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import {
  commitValidatorResult,
  type LocalChain,
  revealValidatorResult,
  startLocalChain,
  validatorWeightsResult,
} from "@openledger/chain/testing";
import { createDb, Prisma } from "@openledger/db";
import type { App } from "@openledger/service-kit";
import { testEnvironment } from "@openledger/service-kit/testing";
import { buildSettlement, settlementConfig } from "../app.ts";
import { settleBatch } from "../lib/settle.ts";

const MODEL = "adapter-batch-test";
let chain: LocalChain;
let env: Awaited<ReturnType<typeof testEnvironment>>;
let app: App;
let dir: string;
let config: ReturnType<typeof settlementConfig>;
const lower = (a: string) => a.toLowerCase();

async function poll<T>(fn: () => Promise<T | undefined | null>, what: string, tries = 300): Promise<T> {
  for (let i = 0; i < tries; i++) {
    const v = await fn();
    if (v) return v;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail(`timed out waiting for ${what}`);
}

/** An inference (with the given id, if any) and `validators` agreeing, signed results. */
/** An inference that `validators` commit to and reveal; `committed` commit to the same result, revealing later. */
async function makeInference(validators: number[], id?: string, committed: number[] = []): Promise<string> {
  const consumer = chain.accounts.users[0]!;
  const inf = await app.db.inference.create({
    data: {
      ...(id ? { id } : {}),
      modelId: MODEL,
      accountAddress: lower(consumer.address),
      prompt: "p",
      output: "o",
      inputTokens: 321,
      outputTokens: 123,
    },
  });
  const weights = [
    { address: lower(chain.accounts.users[1]!.address), ppm: 600_001 },
    { address: lower(chain.accounts.users[2]!.address), ppm: 399_999 },
  ];
  const input = (i: number) => validatorWeightsResult(chain, i, inf.id, weights);
  for (const i of [...validators, ...committed]) await commitValidatorResult(app.db, input(i));
  for (const i of validators) await revealValidatorResult(app.db, input(i));
  return inf.id;
}

async function snapshot() {
  const [r] = await app.db.$queryRawUnsafe<{ t: number; e: number; s: number; sum: string }[]>(
    `SELECT (SELECT count(*)::int FROM ledger_transactions) AS t, (SELECT count(*)::int FROM ledger_entries) AS e,
            (SELECT count(*)::int FROM settlements) AS s,
            (SELECT COALESCE(sum(amount_wei), 0)::text FROM ledger_entries) AS sum`,
  );
  return r!;
}

async function journal(inferenceId: string): Promise<string> {
  const rows = await app.db.$queryRawUnsafe<{ account: string; amount: string }[]>(
    `SELECT e.account, e.amount_wei::text AS amount FROM ledger_entries e
       JOIN ledger_transactions t ON t.id = e.transaction_id
      WHERE t.external_key = $1 ORDER BY e.id`,
    `fee:${inferenceId}`,
  );
  return JSON.stringify(rows);
}

async function finished(jobId: string) {
  const queue = app.producer.queue("settlement");
  return poll(async () => {
    const job = await queue.getJob(jobId);
    return job?.finishedOn ? job : undefined;
  }, `job ${jobId} finished`);
}

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "settlement-batch-test-"));
  const addressesFile = path.join(dir, "addresses.json");
  chain = await startLocalChain({ writeAddresses: addressesFile });
  env = await testEnvironment("settlement-batch");
  config = settlementConfig({
    ...env.env,
    CHAIN_RPC_URL: chain.rpcUrl,
    CHAIN_ADDRESSES_FILE: addressesFile,
    SETTLEMENT_EPOCH_INTERVAL_MS: "0",
    SETTLEMENT_RECHECK_MS: "100",
  });
  app = await buildSettlement(config);
  await app.db.model.create({
    data: {
      id: MODEL,
      kind: "adapter",
      ownerAddress: lower(chain.accounts.users[3]!.address),
      contentHash: "cd".repeat(32),
      priceInPer1kWei: new Prisma.Decimal("1000000000000000007"),
      priceOutPer1kWei: new Prisma.Decimal("2000000000000000003"),
    },
  });
});

after(async () => {
  await app?.close();
  await chain?.stop();
  await env?.cleanup();
  if (dir) await rm(dir, { recursive: true, force: true });
});

test("a batch with a duplicate, a settled, a waiting and an unknown id: each handled once, none lost", async () => {
  const settled = await makeInference([0, 1]);
  assert.equal(await app.settlement.settle(settled), "settled");
  const settledJournal = await journal(settled);
  const fresh = await makeInference([0, 1]);
  const waiting = await makeInference([0], undefined, [1]); // one validator revealed: no quorum yet
  const unknown = crypto.randomUUID(); // not in the database (yet)
  const before1 = await snapshot();

  const job = await app.producer.enqueue("inference.completed", {
    inferenceIds: [fresh, settled, fresh, waiting, unknown],
  });
  const done = await finished(job.id);
  assert.equal(done.failedReason, undefined, "the batch completes");
  assert.deepEqual(done.returnvalue, {
    outcomes: { settled: 2, already: 1, pending: 1, missing: 1 },
    requeued: [unknown],
  });
  const after1 = await snapshot();
  assert.equal(after1.t, before1.t + 1, "one ledger transaction: the fresh inference's, once");
  assert.equal(after1.s, before1.s + 1);
  assert.equal(after1.sum, "0", "the ledger sums to zero");
  assert.equal(await journal(settled), settledJournal, "the settled inference is untouched");
  assert.equal((await app.db.settlement.findMany({ where: { inferenceId: fresh } })).length, 1);
  assert.ok(
    await app.db.settlementPending.findUnique({ where: { inferenceId: waiting } }),
    "waiting: parked",
  );
  assert.equal(await app.db.settlement.count({ where: { inferenceId: waiting } }), 0);
  // The unknown id got its own one-inference job (its own retries) instead of failing the batch.
  const own = await app.producer.queue("settlement").getJob(`inference.completed.${unknown}`);
  assert.ok(own, "the unknown id is handed to its own job");

  // Its inference is committed now: a retry of its own job settles it.
  await makeInference([1, 0], unknown);
  await poll(
    () => app.db.settlement.findUnique({ where: { inferenceId: unknown } }),
    "unknown id settled",
    400,
  );
  // The waiting one's second validator (committed in time) reveals: the sweeper settles it.
  const first = await app.db.attributionResult.findFirstOrThrow({
    where: { inferenceId: waiting },
    include: { weights: true },
  });
  await revealValidatorResult(app.db, {
    privateKey: chain.accounts.validators[1]!.privateKey,
    chainId: chain.chainId,
    verifyingContract: chain.addresses!.contracts.RewardDistributor,
    inferenceId: waiting,
    canonicalJson: first.canonicalJson,
    weights: first.weights.map((w) => ({ contributorAddress: w.contributorAddress, weightPpm: w.weightPpm })),
  });
  await poll(() => app.db.settlement.findUnique({ where: { inferenceId: waiting } }), "waiting id settled");
  const after2 = await snapshot();
  assert.equal(after2.t, before1.t + 3);
  assert.equal(after2.sum, "0");

  // The same batch enqueued again (ids in another order) is the same job: not run twice.
  const journals = await Promise.all([settled, fresh, waiting, unknown].map(journal));
  const same = await app.producer.enqueue("inference.completed", {
    inferenceIds: [unknown, waiting, fresh, settled],
  });
  assert.equal(same.id, job.id);
  // Redelivered (a new job with the same ids), in another batch, and as single events: nothing changes.
  const queue = app.producer.queue("settlement");
  await queue.add(
    "inference.completed",
    { inferenceIds: [unknown, waiting, fresh, settled] },
    { jobId: "redelivered-batch" },
  );
  const redone = await finished("redelivered-batch");
  assert.deepEqual(redone.returnvalue, { outcomes: { already: 4 }, requeued: [] });
  const other = await app.producer.enqueue("inference.completed", { inferenceIds: [fresh, unknown] });
  assert.deepEqual((await finished(other.id)).returnvalue, { outcomes: { already: 2 }, requeued: [] });
  for (const id of [fresh, settled]) {
    await queue.add("inference.completed", { inferenceId: id }, { jobId: `redelivered-${id}` });
    await finished(`redelivered-${id}`);
  }
  assert.deepEqual(await snapshot(), after2);
  assert.deepEqual(await Promise.all([settled, fresh, waiting, unknown].map(journal)), journals);
});

test("two batches sharing ids, settled at the same time, pay each inference once", async () => {
  const ids: string[] = [];
  for (let i = 0; i < 12; i++) ids.push(await makeInference([0, 1]));
  const before1 = await snapshot();
  const [a, b] = await Promise.all([
    app.producer.enqueue("inference.completed", { inferenceIds: ids.slice(0, 8) }),
    app.producer.enqueue("inference.completed", { inferenceIds: ids.slice(4) }),
  ]);
  await Promise.all([finished(a.id), finished(b.id)]);
  const after1 = await snapshot();
  assert.equal(after1.t, before1.t + 12);
  assert.equal(after1.s, before1.s + 12);
  assert.equal(after1.sum, "0");
});

test("two settlement processes (own connection pools) racing on the same ids: each inference paid once", async () => {
  // What two worker processes do when a batch is delivered to both: the `fee:<id>` unique key
  // decides, and only the winner's entries and settlement row are written.
  // One at a time: a burst of 40 transactions could wait past the pool's connect timeout on a
  // loaded machine.
  const ids: string[] = [];
  for (let i = 0; i < 40; i++) ids.push(await makeInference([0, 1]));
  const ctx = await app.settlement.settleContext();
  const other = [createDb(config.DATABASE_URL, { maxConnections: 4 }), createDb(config.DATABASE_URL)];
  try {
    const before1 = await snapshot();
    const shuffled = [...ids].reverse();
    const runs = await Promise.all([
      settleBatch(other[0]!, ids, ctx),
      settleBatch(other[1]!, shuffled, ctx),
      settleBatch(other[0]!, ids.slice(10, 30), ctx),
    ]);
    assert.equal(
      runs.reduce((n, r) => n + r.settled, 0),
      40,
      "40 settled in all, whoever won each",
    );
    for (const id of ids) {
      const won = runs.filter((r) => r.outcomes.get(id) === "settled").length;
      assert.equal(won, 1, `${id} settled by exactly one writer`);
    }
    const after1 = await snapshot();
    assert.equal(after1.t, before1.t + 40);
    assert.equal(after1.s, before1.s + 40);
    assert.equal(after1.sum, "0");
    const [bad] = await app.db.$queryRawUnsafe<{ n: number }[]>(
      `SELECT count(*)::int AS n FROM (SELECT transaction_id FROM ledger_entries GROUP BY transaction_id
        HAVING sum(amount_wei) <> 0) x`,
    );
    assert.equal(bad?.n, 0, "every ledger transaction balances");
  } finally {
    await Promise.all(other.map((d) => d.$disconnect()));
  }
});
