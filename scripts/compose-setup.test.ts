// The compose `migrate` job binds the database to the chain deployment: the same live chain keeps
// the database; a new, empty chain (a restarted dev node, even with the contracts at the same
// addresses) moves the old rows aside instead of letting them contradict it. Real chains, real Postgres.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { type LocalChain, startLocalChain } from "@openledger/chain/testing";
import { parseDatabaseUrl, withSchema } from "@openledger/db";
import { createTestDatabase, type TestDatabase } from "@openledger/db/testing";
import pg from "pg";
import { bindAndMigrate } from "./compose-setup.ts";

let database: TestDatabase;
let chain: LocalChain | undefined;
const archived: string[] = [];
const logs: string[] = [];
const log = (msg: string) => logs.push(msg);

async function query<T extends pg.QueryResultRow>(
  url: string,
  sql: string,
  params: unknown[] = [],
): Promise<T[]> {
  const t = parseDatabaseUrl(url);
  const c = new pg.Client({ connectionString: t.connectionString });
  await c.connect();
  try {
    await c.query(`SET search_path TO "${t.schema}"`);
    return (await c.query<T>(sql, params)).rows;
  } finally {
    await c.end();
  }
}

before(async () => {
  database = await createTestDatabase("bind", { migrate: false });
});
after(async () => {
  await chain?.stop();
  for (const schema of archived) await query(database.url, `DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  await database.drop();
});

test("same chain: kept; a new chain: the old rows are moved aside, loudly", async () => {
  chain = await startLocalChain();
  const first = await bindAndMigrate({
    databaseUrl: database.url,
    rpcUrl: chain.rpcUrl,
    addresses: chain.addresses!,
    log,
  });
  assert.equal(first.archived, undefined);
  await query(database.url, "INSERT INTO contributors (address) VALUES ($1)", [
    "0x00000000000000000000000000000000000000aa",
  ]);

  // A second `up` against the same live chain keeps everything.
  const again = await bindAndMigrate({
    databaseUrl: database.url,
    rpcUrl: chain.rpcUrl,
    addresses: chain.addresses!,
    log,
  });
  assert.equal(again.archived, undefined);
  assert.equal((await query(database.url, "SELECT address FROM contributors")).length, 1);

  // The dev node restarts: a new, empty chain with the contracts redeployed (at the same addresses).
  const oldAddresses = chain.addresses!;
  await chain.stop();
  chain = await startLocalChain();
  assert.equal(
    chain.addresses!.contracts.OpenToken,
    oldAddresses.contracts.OpenToken,
    "same addresses, other chain",
  );
  const moved = await bindAndMigrate({
    databaseUrl: database.url,
    rpcUrl: chain.rpcUrl,
    addresses: chain.addresses!,
    log,
  });
  assert.ok(moved.archived, "the rows of the old chain were moved aside");
  archived.push(moved.archived);
  assert.ok(
    logs.some((l) => l.includes("moved aside")),
    "and the job says so",
  );
  assert.equal(
    (await query(database.url, "SELECT address FROM contributors")).length,
    0,
    "the platform starts clean",
  );
  const kept = await query(withSchema(database.url, moved.archived), "SELECT address FROM contributors");
  assert.equal(kept.length, 1, "nothing dropped");
});
