import { createHash, randomUUID } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { parseDatabaseUrl, poolConfig } from "./url.ts";

/** prisma/migrations at the repository root. */
export const DEFAULT_MIGRATIONS_DIR = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  "../../../prisma/migrations",
);

/** The advisory-lock key `prisma migrate` itself takes, so the two never run at once. */
const PRISMA_MIGRATE_LOCK = 72707369;

export class MigrationError extends Error {
  readonly code: "CHECKSUM_MISMATCH" | "FAILED_MIGRATION" | "MIGRATION_FAILED" | "NO_MIGRATIONS";
  constructor(code: MigrationError["code"], message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "MigrationError";
    this.code = code;
  }
}

export interface MigrationFile {
  name: string;
  sql: string;
  /** SHA-256 hex of the file bytes — what Prisma stores in `_prisma_migrations.checksum`. */
  checksum: string;
}

export interface MigrateOptions {
  databaseUrl: string;
  migrationsDir?: string;
  log?: (message: string) => void;
}

export interface MigrateResult {
  applied: string[];
  alreadyApplied: string[];
  schema: string;
}

export async function readMigrations(dir: string = DEFAULT_MIGRATIONS_DIR): Promise<MigrationFile[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  const names = entries
    .filter((e) => e.isDirectory())
    .map((e) => e.name)
    .sort();
  const files: MigrationFile[] = [];
  for (const name of names) {
    const bytes = await readFile(path.join(dir, name, "migration.sql"));
    files.push({
      name,
      sql: bytes.toString("utf8"),
      checksum: createHash("sha256").update(bytes).digest("hex"),
    });
  }
  return files;
}

// Same columns and types as the table Prisma Migrate creates, so `prisma migrate deploy`
// run later on a machine with the schema engine agrees on what has been applied.
const CREATE_TABLE = `CREATE TABLE IF NOT EXISTS "_prisma_migrations" (
  "id" VARCHAR(36) PRIMARY KEY NOT NULL,
  "checksum" VARCHAR(64) NOT NULL,
  "finished_at" TIMESTAMPTZ,
  "migration_name" VARCHAR(255) NOT NULL,
  "logs" TEXT,
  "rolled_back_at" TIMESTAMPTZ,
  "started_at" TIMESTAMPTZ NOT NULL DEFAULT now(),
  "applied_steps_count" INTEGER NOT NULL DEFAULT 0
)`;

interface AppliedRow {
  id: string;
  migration_name: string;
  checksum: string;
  finished_at: Date | null;
  rolled_back_at: Date | null;
}

/**
 * Applies pending migrations in name order, each in its own transaction, under the
 * advisory lock. Refuses to run when an applied migration's file has changed or a
 * previous attempt failed without being rolled back.
 */
export async function migrate(options: MigrateOptions): Promise<MigrateResult> {
  const log = options.log ?? (() => {});
  const target = parseDatabaseUrl(options.databaseUrl);
  const files = await readMigrations(options.migrationsDir);
  if (files.length === 0) {
    throw new MigrationError(
      "NO_MIGRATIONS",
      `no migrations found in ${options.migrationsDir ?? DEFAULT_MIGRATIONS_DIR}`,
    );
  }
  const client = new pg.Client(poolConfig(target));
  await client.connect();
  try {
    await client.query("SELECT pg_advisory_lock($1)", [PRISMA_MIGRATE_LOCK]);
    try {
      // Under the lock: CREATE SCHEMA IF NOT EXISTS is not safe against a concurrent twin.
      await client.query(`CREATE SCHEMA IF NOT EXISTS "${target.schema}"`);
      await client.query(CREATE_TABLE);
      const { rows } = await client.query<AppliedRow>(
        `SELECT id, migration_name, checksum, finished_at, rolled_back_at
           FROM "_prisma_migrations" ORDER BY started_at, migration_name`,
      );
      const done = new Map<string, AppliedRow>();
      for (const row of rows) {
        if (row.rolled_back_at !== null) continue;
        if (row.finished_at === null) {
          throw new MigrationError(
            "FAILED_MIGRATION",
            `migration ${row.migration_name} started but never finished in schema "${target.schema}"; ` +
              `inspect the database, then mark it rolled back (rolled_back_at) before migrating again`,
          );
        }
        done.set(row.migration_name, row);
      }
      for (const file of files) {
        const row = done.get(file.name);
        if (row && row.checksum !== file.checksum) {
          throw new MigrationError(
            "CHECKSUM_MISMATCH",
            `migration ${file.name} was already applied but its migration.sql has changed ` +
              `(applied checksum ${row.checksum}, file ${file.checksum}). Applied migrations are ` +
              `immutable: revert the file and add a new migration instead.`,
          );
        }
      }
      const result: MigrateResult = { applied: [], alreadyApplied: [], schema: target.schema };
      for (const file of files) {
        if (done.has(file.name)) {
          result.alreadyApplied.push(file.name);
          continue;
        }
        const id = randomUUID();
        await client.query(
          `INSERT INTO "_prisma_migrations" (id, checksum, migration_name, started_at, applied_steps_count)
           VALUES ($1, $2, $3, now(), 0)`,
          [id, file.checksum, file.name],
        );
        try {
          // Postgres DDL is transactional: a failing migration leaves nothing behind.
          await client.query("BEGIN");
          await client.query(file.sql);
          await client.query(
            `UPDATE "_prisma_migrations" SET finished_at = now(), applied_steps_count = 1 WHERE id = $1`,
            [id],
          );
          await client.query("COMMIT");
        } catch (err) {
          await client.query("ROLLBACK").catch(() => {});
          const message = err instanceof Error ? err.message : String(err);
          // Nothing of it was applied, so record it as rolled back: a fixed file can be re-run.
          await client.query(
            `UPDATE "_prisma_migrations" SET logs = $2, rolled_back_at = now() WHERE id = $1`,
            [id, message],
          );
          throw new MigrationError("MIGRATION_FAILED", `migration ${file.name} failed: ${message}`, {
            cause: err,
          });
        }
        log(`applied migration ${file.name}`);
        result.applied.push(file.name);
      }
      return result;
    } finally {
      await client.query("SELECT pg_advisory_unlock($1)", [PRISMA_MIGRATE_LOCK]).catch(() => {});
    }
  } finally {
    await client.end();
  }
}
