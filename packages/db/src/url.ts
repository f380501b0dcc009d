import type { PoolConfig } from "pg";

export interface DatabaseTarget {
  /** Connection string without Prisma's `schema` parameter (pg does not know it). */
  connectionString: string;
  /** Postgres schema that holds the tables ("public" unless `?schema=` says otherwise). */
  schema: string;
  /** Database name from the URL path. */
  database: string;
}

const SCHEMA_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

/** Splits a Prisma-style URL (`postgresql://…/db?schema=name`) into what pg needs. */
export function parseDatabaseUrl(url: string): DatabaseTarget {
  const parsed = new URL(url);
  const schema = parsed.searchParams.get("schema") ?? "public";
  if (!SCHEMA_NAME.test(schema)) {
    throw new Error(`DATABASE_URL schema "${schema}" is not a plain identifier`);
  }
  parsed.searchParams.delete("schema");
  const database = decodeURIComponent(parsed.pathname.replace(/^\//, "")) || "postgres";
  return { connectionString: parsed.toString(), schema, database };
}

/** pg pool settings for a target: search_path pinned to its schema, bounded waits. */
export function poolConfig(target: DatabaseTarget, overrides: PoolConfig = {}): PoolConfig {
  return {
    connectionString: target.connectionString,
    options: `-c search_path="${target.schema}"`,
    connectionTimeoutMillis: 3000,
    idleTimeoutMillis: 10_000,
    max: 10,
    ...overrides,
  };
}

/** The same server and credentials, another database (e.g. "postgres" for CREATE DATABASE). */
export function withDatabase(connectionString: string, database: string): string {
  const parsed = new URL(connectionString);
  parsed.pathname = `/${encodeURIComponent(database)}`;
  return parsed.toString();
}

export function withSchema(url: string, schema: string): string {
  const parsed = new URL(url);
  parsed.searchParams.set("schema", schema);
  return parsed.toString();
}
