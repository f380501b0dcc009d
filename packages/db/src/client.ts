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
  // One pool for Prisma and for `rawPool` users, so the connection bound holds for both.
  const pool = new pg.Pool(poolConfig(target, { max: options.maxConnections ?? 10 }));
  // Until Prisma connects (and adds its own listener that reports to onPoolError), an idle client's
  // error must not be an unhandled 'error' event.
  pool.on("error", () => {});
  const adapter = new PrismaPg(pool, {
    schema: target.schema,
    onPoolError: options.onPoolError ?? (() => {}),
    disposeExternalPool: true,
  });
  const db = new PrismaClient({ adapter });
  POOLS.set(db, pool);
  return db;
}

const POOLS = new WeakMap<Db, pg.Pool>();

/**
 * The pg pool under a client (search_path pinned to its schema), for hot paths where Prisma's
 * per-query overhead shows: multi-row writes of the settlement ledger. Anything else uses the
 * Prisma client. Ended by `db.$disconnect()`; used after that, it comes back as a new pool.
 */
export function rawPool(db: Db): pg.Pool {
  const pool = POOLS.get(db);
  if (!pool) throw new Error("rawPool: this client was not created by createDb");
  if (!pool.ended) return pool;
  // The client was disconnected (Prisma reconnects lazily with a pool of its own): so does this.
  const fresh = new pg.Pool(pool.options);
  fresh.on("error", () => {}); // idle-client errors (e.g. Postgres restarted): the next query reconnects
  POOLS.set(db, fresh);
  return fresh;
}

/** Creates the database named in the URL when it does not exist (safe to race). */
/**
 * Moves the URL's schema aside (renamed to `<schema>_<suffix>`, nothing dropped) when it holds
 * migrated tables, and leaves an empty schema in its place. Returns the archive's name, or
 * undefined when there was nothing to move. For a development platform whose database must
 * start again with a new, empty local chain.
 */
export async function archiveSchema(databaseUrl: string, suffix: string): Promise<string | undefined> {
  const target = parseDatabaseUrl(databaseUrl);
  const archive = `${target.schema}_${suffix}`;
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(archive)) throw new Error(`"${archive}" is not a plain schema name`);
  const client = new pg.Client({ connectionString: target.connectionString, connectionTimeoutMillis: 5000 });
  await client.connect();
  try {
    await client.query("BEGIN");
    const used = await client.query(
      "SELECT 1 FROM information_schema.tables WHERE table_schema = $1 AND table_name = '_prisma_migrations'",
      [target.schema],
    );
    if (used.rowCount === 0) {
      await client.query("ROLLBACK");
      return undefined;
    }
    await client.query(`ALTER SCHEMA "${target.schema}" RENAME TO "${archive}"`);
    await client.query(`CREATE SCHEMA "${target.schema}"`);
    await client.query("COMMIT");
    return archive;
  } catch (err) {
    await client.query("ROLLBACK").catch(() => {});
    throw err;
  } finally {
    await client.end();
  }
}

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
