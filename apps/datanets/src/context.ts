import type { DatanetsConfig } from "@openledger/config";
import { type DatanetIndex, resolveValidationConfig, type ValidationConfig } from "@openledger/datanet-core";
import type { Db } from "@openledger/db";
import type { FastifyInstance } from "fastify";
import { ChainConnector } from "./chain.ts";

/** Per-datanet dedupe index kept in memory between jobs (rebuilt from Postgres when stale). */
export interface CachedIndex {
  index: DatanetIndex;
}

/** What routes and workers of one app instance share (chain connection, index cache, settings). */
export interface DatanetsContext {
  config: DatanetsConfig;
  db: Db;
  chain: ChainConnector;
  validation: ValidationConfig;
  indexes: Map<string, CachedIndex>;
  /** Redis key prefix for auth state (nonces, sessions); follows QUEUE_PREFIX so tests are isolated. */
  keyPrefix: string;
}

const contexts = new WeakMap<object, DatanetsContext>();

/** The context of an app (root or an encapsulated child: they share the `db` decorator). */
export function contextOf(app: FastifyInstance, config?: DatanetsConfig): DatanetsContext {
  let ctx = contexts.get(app.db);
  if (!ctx) {
    const cfg = config ?? (app.config as DatanetsConfig);
    ctx = {
      config: cfg,
      db: app.db,
      chain: new ChainConnector(cfg),
      validation: resolveValidationConfig({ nearDuplicateThreshold: cfg.DATANETS_NEAR_DUPLICATE_THRESHOLD }),
      indexes: new Map(),
      keyPrefix: `${cfg.QUEUE_PREFIX}:datanets`,
    };
    contexts.set(app.db, ctx);
  }
  return ctx;
}
