export { archiveSchema, type CreateDbOptions, createDb, type Db, ensureDatabase, rawPool } from "./client.ts";
export { inferenceEpochBlockSql } from "./epochs.ts";
export * from "./generated/prisma/client.ts";
export { ensureAccountsSql, lockAccountsSql, lockReservationsSql } from "./locks.ts";
export {
  DEFAULT_MIGRATIONS_DIR,
  type MigrateOptions,
  type MigrateResult,
  MigrationError,
  type MigrationFile,
  migrate,
  readMigrations,
} from "./migrator.ts";
export { type TransactionOptions, type Tx, toWei, withTransaction } from "./transaction.ts";
export { type DatabaseTarget, parseDatabaseUrl, poolConfig, withDatabase, withSchema } from "./url.ts";
