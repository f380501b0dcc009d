// The gateway's background sweeper on real Postgres: while a pass is stuck (here: the outbox table
// is locked by another transaction) later ticks do not start overlapping passes, and stopSweeper
// waits for the pass in flight, so nothing uses the database after it is closed.
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { gatewayEnv, parseConfig } from "@openledger/config";
import { createTestDatabase, type TestDatabase } from "@openledger/db/testing";
import type { Producer } from "@openledger/queue";
import type { FastifyBaseLogger } from "fastify";
import { GatewayState } from "./gateway.ts";

let database: TestDatabase;
let dir: string;
const silent = { warn() {}, info() {}, error() {}, debug() {} } as unknown as FastifyBaseLogger;

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "gw-sweeper-"));
  database = await createTestDatabase("gwsweep");
});

after(async () => {
  await database?.drop();
  if (dir) await rm(dir, { recursive: true, force: true });
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

test("a stuck sweep is not overlapped by later ticks, and stopSweeper waits for it", async () => {
  const config = parseConfig("gateway", gatewayEnv, {
    DATABASE_URL: database.url,
    GATEWAY_DATA_DIR: dir,
    GATEWAY_CHAIN_REGISTRATION: "false",
    GATEWAY_OUTBOX_SWEEP_MS: "100",
    LOG_LEVEL: "silent",
  });
  const state = new GatewayState(config, database.db, {} as Producer, silent);
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
  state.startSweeper();
  let stopping: Promise<void> | undefined;
  try {
    while ((await blockedSweeps()) === 0) await sleep(50);
    // Ten more ticks while the first pass is stuck.
    await sleep(1_000);
    assert.equal(await blockedSweeps(), 1, "one pass in flight, ticks did not pile up");
    let stopped = false;
    stopping = Promise.resolve(state.stopSweeper()).then(() => {
      stopped = true;
    });
    await sleep(200);
    assert.equal(stopped, false, "stopSweeper waits for the pass in flight");
  } finally {
    release();
    await holder;
    await stopping;
  }
  assert.equal(await blockedSweeps(), 0);
});
