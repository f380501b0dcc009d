import assert from "node:assert/strict";
import { cp, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, test } from "node:test";
import pg from "pg";
import { ensureDatabase } from "./client.ts";
import { DEFAULT_MIGRATIONS_DIR, MigrationError, migrate, readMigrations } from "./migrator.ts";
import { dropSchema, TEST_DATABASE_URL, uniqueSchemaName } from "./testing.ts";
import { parseDatabaseUrl, withSchema } from "./url.ts";

const created: string[] = [];
after(async () => {
  for (const url of created) await dropSchema(url);
});

async function freshUrl(label: string) {
  await ensureDatabase(TEST_DATABASE_URL);
  const url = withSchema(TEST_DATABASE_URL, uniqueSchemaName(label));
  created.push(url);
  return url;
}

async function query<T extends pg.QueryResultRow>(url: string, sql: string): Promise<T[]> {
  const target = parseDatabaseUrl(url);
  const client = new pg.Client({
    connectionString: target.connectionString,
    options: `-c search_path="${target.schema}"`,
  });
  await client.connect();
  try {
    return (await client.query<T>(sql)).rows;
  } finally {
    await client.end();
  }
}

test("fresh apply creates every table and records Prisma-compatible rows", async () => {
  const url = await freshUrl("mig_fresh");
  const files = await readMigrations();
  const result = await migrate({ databaseUrl: url });
  assert.deepEqual(
    result.applied,
    files.map((f) => f.name),
  );
  assert.deepEqual(result.alreadyApplied, []);
  const rows = await query<{
    migration_name: string;
    checksum: string;
    finished_at: Date | null;
    applied_steps_count: number;
  }>(
    url,
    `SELECT migration_name, checksum, finished_at, applied_steps_count FROM "_prisma_migrations" ORDER BY migration_name`,
  );
  assert.deepEqual(
    rows.map((r) => [r.migration_name, r.checksum, r.applied_steps_count]),
    files.map((f) => [f.name, f.checksum, 1]),
  );
  assert.ok(rows.every((r) => r.finished_at instanceof Date));
  const tables = await query<{ table_name: string }>(
    url,
    `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() ORDER BY 1`,
  );
  const names = tables.map((t) => t.table_name);
  for (const t of ["datanets", "contributions", "datanet_rows", "inferences", "ledger_entries", "epochs"]) {
    assert.ok(names.includes(t), `missing table ${t}`);
  }
});

test("re-running is a no-op", async () => {
  const url = await freshUrl("mig_rerun");
  await migrate({ databaseUrl: url });
  const again = await migrate({ databaseUrl: url });
  assert.deepEqual(again.applied, []);
  assert.equal(again.alreadyApplied.length, (await readMigrations()).length);
  const count = await query<{ n: string }>(url, `SELECT count(*)::text AS n FROM "_prisma_migrations"`);
  assert.equal(count[0]?.n, String(again.alreadyApplied.length));
});

test("a changed applied migration is refused with a clear error, and nothing new is applied", async () => {
  const url = await freshUrl("mig_changed");
  const dir = await mkdtemp(path.join(tmpdir(), "migrations-"));
  try {
    await cp(DEFAULT_MIGRATIONS_DIR, dir, { recursive: true });
    await migrate({ databaseUrl: url, migrationsDir: dir });
    const [first] = await readMigrations(dir);
    assert.ok(first);
    await writeFile(path.join(dir, first.name, "migration.sql"), `${first.sql}\n-- edited after apply\n`);
    // A new, valid migration after the edit must not be applied either.
    await cp(path.join(dir, first.name), path.join(dir, "99999999999999_later"), { recursive: true });
    await writeFile(
      path.join(dir, "99999999999999_later", "migration.sql"),
      `CREATE TABLE later_table (id int);`,
    );
    await assert.rejects(migrate({ databaseUrl: url, migrationsDir: dir }), (err: unknown) => {
      assert.ok(err instanceof MigrationError);
      assert.equal(err.code, "CHECKSUM_MISMATCH");
      assert.match(
        err.message,
        new RegExp(`migration ${first.name} was already applied but its migration.sql has changed`),
      );
      return true;
    });
    const later = await query(
      url,
      `SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = 'later_table'`,
    );
    assert.equal(later.length, 0);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("a failing migration leaves nothing half-applied and can be fixed and re-run", async () => {
  const url = await freshUrl("mig_fail");
  const dir = await mkdtemp(path.join(tmpdir(), "migrations-"));
  try {
    await cp(DEFAULT_MIGRATIONS_DIR, dir, { recursive: true });
    const bad = path.join(dir, "99999999999999_bad");
    await mkdir(bad);
    await writeFile(
      path.join(bad, "migration.sql"),
      `CREATE TABLE half_done (id int);\nSELECT no_such_function();`,
    );
    await assert.rejects(migrate({ databaseUrl: url, migrationsDir: dir }), (err: unknown) => {
      assert.ok(err instanceof MigrationError);
      assert.equal(err.code, "MIGRATION_FAILED");
      assert.match(err.message, /99999999999999_bad failed/);
      return true;
    });
    const half = await query(
      url,
      `SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = 'half_done'`,
    );
    assert.equal(half.length, 0, "the failed migration's first statement must be rolled back");
    await writeFile(path.join(bad, "migration.sql"), `CREATE TABLE half_done (id int);`);
    const fixed = await migrate({ databaseUrl: url, migrationsDir: dir });
    assert.deepEqual(fixed.applied, ["99999999999999_bad"]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("two migrators at once: one waits for the other's lock, the migration is applied once", async () => {
  const url = await freshUrl("mig_race");
  // Hold the lock from a third connection so both migrators must wait, then release it.
  const target = parseDatabaseUrl(url);
  const holder = new pg.Client({ connectionString: target.connectionString });
  await holder.connect();
  await holder.query("SELECT pg_advisory_lock(72707369)");
  let settled = 0;
  const a = migrate({ databaseUrl: url }).finally(() => settled++);
  const b = migrate({ databaseUrl: url }).finally(() => settled++);
  const both = Promise.allSettled([a, b]);
  try {
    // Wait until both are blocked on the lock (visible in pg_locks), proving they wait.
    // Other test files may be migrating too, so look for our two backends specifically.
    for (let i = 0; i < 400; i++) {
      const waiting = await holder.query(
        `SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND objid = 72707369 AND NOT granted`,
      );
      if (waiting.rows[0].n >= 2) break;
      await new Promise((r) => setTimeout(r, 25));
    }
    assert.equal(settled, 0, "neither migrator may finish while the lock is held");
  } finally {
    await holder.query("SELECT pg_advisory_unlock(72707369)");
    await holder.end();
  }
  await both;
  const [ra, rb] = await Promise.all([a, b]);
  const files = await readMigrations();
  assert.equal(ra.applied.length + rb.applied.length, files.length);
  assert.equal(ra.alreadyApplied.length + rb.alreadyApplied.length, files.length);
  const rows = await query<{ n: number }>(url, `SELECT count(*)::int AS n FROM "_prisma_migrations"`);
  assert.equal(rows[0]?.n, files.length);
});
