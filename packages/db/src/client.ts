import { PrismaPg } from "@prisma/adapter-pg";
import pg from "pg";
import { PrismaClient } from "./generated/prisma/client.ts";
import { type DatabaseTarget, parseDatabaseUrl, poolConfig, withDatabase } from "./url.ts";

export type Db = InstanceType<typeof PrismaClient>;

export interface CreateDbOptions {
  /** Maximum pool size. */
  maxConnections?: number;
  /** Called when an idle pooled connection errors (e.g. Postgres restarted). */
  onPoolError?: (err: Error) => void;
}

/**
 * The only place a Prisma client is created. It talks to Postgres through
 * @prisma/adapter-pg (Prisma 7's Rust-free client), in the schema named by the URL.
 */
export function createDb(databaseUrl: string, options: CreateDbOptions = {}): Db {
  const target = parseDatabaseUrl(databaseUrl);
  const adapter = new PrismaPg(poolConfig(target, { max: options.maxConnections ?? 10 }), {
    schema: target.schema,
    onPoolError: options.onPoolError ?? (() => {}),
  });
  return new PrismaClient({ adapter });
}

/** Creates the database named in the URL when it does not exist (safe to race). */
export async function ensureDatabase(databaseUrl: string): Promise<DatabaseTarget> {
  const target = parseDatabaseUrl(databaseUrl);
  const admin = new pg.Client({
    connectionString: withDatabase(target.connectionString, "postgres"),
    connectionTimeoutMillis: 5000,
  });
  await admin.connect();
  try {
    const found = await admin.query("SELECT 1 FROM pg_database WHERE datname = $1", [target.database]);
    if (found.rowCount === 0) {
      try {
        await admin.query(`CREATE DATABASE "${target.database.replaceAll('"', '""')}"`);
      } catch (err) {
        // 42P04 duplicate_database: another process created it between our check and create.
        if ((err as { code?: string }).code !== "42P04") throw err;
      }
    }
  } finally {
    await admin.end();
  }
  return target;
}
