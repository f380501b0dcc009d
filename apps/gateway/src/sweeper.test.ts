// The gateway's background sweeper on real Postgres: while a pass is stuck (here: the outbox table
// is locked by another transaction) later ticks do not start overlapping passes, and stopSweeper
// waits for the pass in flight, so nothing uses the database after it is closed.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { createTestDatabase, type TestDatabase } from "@openledger/db/testing";
import type { FastifyBaseLogger } from "fastify";
import { Sweeper } from "./plugins/sweeper.ts";

let database: TestDatabase;
const silent = { warn() {}, info() {}, error() {}, debug() {} } as unknown as FastifyBaseLogger;

before(async () => {
  database = await createTestDatabase("gwsweep");
});

after(async () => {
  await database?.drop();
});

/** Queries of this schema's outbox sweep waiting on the lock. */
async function blockedSweeps(): Promise<number> {
  const rows = await database.db.$queryRawUnsafe<{ n: number }[]>(
    `SELECT count(*)::int AS n FROM pg_stat_activity
      WHERE wait_event_type = 'Lock' AND query LIKE '%' || $1 || '%gateway_outbox%'`,
    database.schema,
  );
  return rows[0]!.n;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test("a stuck sweep is not overlapped by later ticks, and stop waits for it", async () => {
  // The outbox pass as the gateway runs it (a read of pending rows), every 100 ms.
  const sweeper = new Sweeper(
    100,
    [{ name: "outbox", run: () => database.db.gatewayOutbox.findMany({ where: { enqueuedAt: null } }) }],
    silent,
  );
  let release!: () => void;
  const gate = new Promise<void>((r) => {
    release = r;
  });
  let locked!: () => void;
  const isLocked = new Promise<void>((r) => {
    locked = r;
  });
  const holder = database.db.$transaction(
    async (tx) => {
      await tx.$executeRawUnsafe(`LOCK TABLE gateway_outbox IN ACCESS EXCLUSIVE MODE`);
      locked();
      await gate;
    },
    { timeout: 120_000, maxWait: 60_000 },
  );
  await isLocked;
  sweeper.start();
  let stopping: Promise<void> | undefined;
  try {
    while ((await blockedSweeps()) === 0) await sleep(50);
    // Ten more ticks while the first pass is stuck.
    await sleep(1_000);
    assert.equal(await blockedSweeps(), 1, "one pass in flight, ticks did not pile up");
    let stopped = false;
    stopping = sweeper.stop().then(() => {
      stopped = true;
    });
    await sleep(200);
    assert.equal(stopped, false, "stop waits for the pass in flight");
  } finally {
    release();
    await holder;
    await stopping;
  }
  assert.equal(await blockedSweeps(), 0);
});
