// The kit's periodic tasks (`app.background.every`) on real Postgres: while a run is stuck (here:
// the table it reads is locked by another transaction) later ticks do not start overlapping runs,
// `stop` waits for the run in flight (nothing uses the database after close), a failing run is
// followed by the next one, and `kick` runs a task at once.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { BaseConfig } from "@openledger/config";
import { createTestDatabase, type TestDatabase } from "@openledger/db/testing";
import type { FastifyBaseLogger } from "fastify";
import { Registry } from "prom-client";
import { Background } from "./background.ts";

let database: TestDatabase;
const warnings: string[] = [];
const log = {
  warn(_o: unknown, msg: string) {
    warnings.push(msg);
  },
  info() {},
  error() {},
  debug() {},
} as unknown as FastifyBaseLogger;

function background(runWorkers = true): Background {
  return new Background({ RUN_WORKERS: runWorkers } as BaseConfig, log, new Registry(), () => {
    throw new Error("no queues here");
  });
}

before(async () => {
  database = await createTestDatabase("kitbg");
});

after(async () => {
  await database?.drop();
});

/** Queries of this schema's read waiting on the lock. */
async function blockedRuns(): Promise<number> {
  const rows = await database.db.$queryRawUnsafe<{ n: number }[]>(
    `SELECT count(*)::int AS n FROM pg_stat_activity
      WHERE wait_event_type = 'Lock' AND query LIKE '%' || $1 || '%gateway_outbox%'`,
    database.schema,
  );
  return rows[0]!.n;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test("a stuck run is not overlapped by later ticks, and stop waits for it", async () => {
  const bg = background();
  // A read of a table, every 100 ms.
  bg.every("outbox", 100, () => database.db.gatewayOutbox.findMany({ where: { enqueuedAt: null } }));
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
  await bg.start();
  let stopping: Promise<void> | undefined;
  try {
    while ((await blockedRuns()) === 0) await sleep(50);
    // Ten more ticks' worth of time while the first run is stuck.
    await sleep(1_000);
    assert.equal(await blockedRuns(), 1, "one run in flight, ticks did not pile up");
    let stopped = false;
    stopping = bg.stop().then(() => {
      stopped = true;
    });
    await sleep(200);
    assert.equal(stopped, false, "stop waits for the run in flight");
  } finally {
    release();
    await holder;
    await stopping;
  }
  assert.equal(await blockedRuns(), 0);
});

test("a failing run is logged and the next one comes; kick runs at once; nothing runs when workers are off", async () => {
  const bg = background();
  let runs = 0;
  bg.every("flaky", 50, async () => {
    runs++;
    if (runs === 1) throw new Error("boom");
  });
  let kicked = 0;
  const onDemand = bg.every("on demand", 0, async () => {
    kicked++;
  });
  onDemand.kick(); // before start: background work is not running yet, so this does nothing
  await bg.start();
  while (runs < 3) await sleep(20);
  assert.ok(warnings.includes("flaky failed"), "the failure was logged");
  assert.equal(kicked, 0, "an interval of 0 runs only when kicked");
  onDemand.kick();
  while (kicked < 1) await sleep(10);
  await bg.stop();
  const after = runs;
  await sleep(150);
  assert.equal(runs, after, "no run after stop");

  const off = background(false);
  let ran = false;
  off.every("never", 10, async () => {
    ran = true;
  });
  await off.start();
  off.every("never either", 10, async () => {
    ran = true;
  });
  await sleep(100);
  await off.stop();
  assert.equal(ran, false, "RUN_WORKERS=false: no periodic work in this process");
});
