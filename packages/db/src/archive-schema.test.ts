import assert from "node:assert/strict";
import { after, test } from "node:test";
import { archiveSchema, createDb } from "./client.ts";
import { migrate } from "./migrator.ts";
import { createTestDatabase, dropSchema } from "./testing.ts";
import { withSchema } from "./url.ts";

const database = await createTestDatabase("archive");
const archives: string[] = [];
after(async () => {
  await database.drop();
  for (const a of archives) await dropSchema(withSchema(database.url, a));
});

test("archiveSchema moves a migrated schema aside with its rows and leaves an empty one; an empty one is left alone", async () => {
  await database.db.contributor.create({ data: { address: `0x${"cd".repeat(20)}` } });
  await database.db.$disconnect();
  const archived = await archiveSchema(database.url, "before_chain_1");
  assert.equal(archived, `${database.schema}_before_chain_1`);
  archives.push(archived!);
  // The archive kept the rows.
  const old = createDb(withSchema(database.url, archived!), { maxConnections: 1 });
  try {
    assert.equal(await old.contributor.count(), 1);
  } finally {
    await old.$disconnect();
  }
  // The schema itself is empty: nothing to archive again, and it migrates from scratch.
  assert.equal(await archiveSchema(database.url, "before_chain_2"), undefined);
  const result = await migrate({ databaseUrl: database.url });
  assert.ok(result.applied.length > 0 && result.alreadyApplied.length === 0);
  const fresh = createDb(database.url, { maxConnections: 1 });
  try {
    assert.equal(await fresh.contributor.count(), 0);
  } finally {
    await fresh.$disconnect();
  }
});

test("archiveSchema refuses a name that is not a plain identifier", async () => {
  await assert.rejects(archiveSchema(database.url, 'x"; DROP SCHEMA public; --'), /plain schema name/);
});
