import { randomBytes } from "node:crypto";
import pg from "pg";
import { createDb, type Db, ensureDatabase } from "./client.ts";
import { migrate } from "./migrator.ts";
import { parseDatabaseUrl, withSchema } from "./url.ts";

/** Tests use their own database so they never touch the platform's data. */
export const TEST_DATABASE_URL =
  process.env.TEST_DATABASE_URL ?? "postgresql://postgres@127.0.0.1:5432/openledger_test";

export interface TestDatabase {
  /** DATABASE_URL for this test: its own schema, migrated. */
  url: string;
  schema: string;
  db: Db;
  /** Disconnects and drops the schema. */
  drop(): Promise<void>;
}

/** A fresh, isolated schema name (`t_<label>_<random>`). */
export function uniqueSchemaName(label = "test"): string {
  const clean = label
    .toLowerCase()
    .replace(/[^a-z0-9_]/g, "_")
    .slice(0, 30);
  return `t_${clean}_${randomBytes(5).toString("hex")}`;
}

export async function dropSchema(url: string): Promise<void> {
  const target = parseDatabaseUrl(url);
  const client = new pg.Client({ connectionString: target.connectionString });
  await client.connect();
  try {
    await client.query(`DROP SCHEMA IF EXISTS "${target.schema}" CASCADE`);
  } finally {
    await client.end();
  }
}

/** Creates a schema for one test file, applies every migration, and returns a client. */
export async function createTestDatabase(
  label?: string,
  options: { migrate?: boolean } = {},
): Promise<TestDatabase> {
  await ensureDatabase(TEST_DATABASE_URL);
  const schema = uniqueSchemaName(label);
  const url = withSchema(TEST_DATABASE_URL, schema);
  if (options.migrate ?? true) await migrate({ databaseUrl: url });
  const db = createDb(url, { maxConnections: 4 });
  return {
    url,
    schema,
    db,
    async drop() {
      await db.$disconnect();
      await dropSchema(url);
    },
  };
}

/**
 * Adds accepted text rows (labelled or not) to a datanet version, each from its own validated contribution, at
 * positions 0.. in order (what a published version holds once its contributions are accepted).
 */
export async function seedVersionRows(
  db: Db,
  datanetId: string,
  versionId: string,
  rows: readonly { who: string; text: string; label?: string }[],
): Promise<void> {
  for (const [position, r] of rows.entries()) {
    const c = await db.contribution.create({
      data: { datanetId, contributorAddress: r.who, source: "rows", status: "validated", rowCount: 1 },
    });
    const row = await db.datanetRow.create({
      data: {
        datanetId,
        contributionId: c.id,
        contributorAddress: r.who,
        ordinal: 0,
        text: r.text,
        label: r.label ?? null,
        normalizedHash: "cd".repeat(32),
        status: "accepted",
      },
    });
    await db.datanetVersionRow.create({ data: { versionId, position, rowId: row.id } });
  }
}
