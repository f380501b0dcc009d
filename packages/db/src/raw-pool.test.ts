import assert from "node:assert/strict";
import { after, test } from "node:test";
import { createDb, rawPool } from "./client.ts";
import { createTestDatabase } from "./testing.ts";

const database = await createTestDatabase("raw-pool");
after(() => database.drop());

test("rawPool: the client's own pool, pinned to its schema, and usable again after a disconnect", async () => {
  const db = createDb(database.url, { maxConnections: 2 });
  try {
    const pool = rawPool(db);
    assert.equal(rawPool(db), pool, "one pool per client");
    const { rows } = await pool.query<{ schema: string }>("SELECT current_schema() AS schema");
    assert.equal(rows[0]?.schema, database.schema);
    // Both paths see each other's writes (same database, same schema).
    await pool.query(`INSERT INTO contributors (address) VALUES ('0x${"ab".repeat(20)}')`);
    assert.equal(await db.contributor.count(), 1);
    await db.$disconnect();
    assert.equal(pool.ended, true, "$disconnect ends the shared pool");
    const again = rawPool(db);
    assert.notEqual(again, pool);
    const { rows: r2 } = await again.query<{ n: number }>("SELECT count(*)::int AS n FROM contributors");
    assert.equal(r2[0]?.n, 1);
    await again.end();
  } finally {
    await db.$disconnect();
  }
  assert.throws(() => rawPool({} as never), /not created by createDb/);
});
