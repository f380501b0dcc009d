import type { DatanetsConfig } from "@openledger/config";
import { type DatanetIndex, resolveValidationConfig, type ValidationConfig } from "@openledger/datanet-core";
import type { Db } from "@openledger/db";
import type { Producer } from "@openledger/queue";
import type { ServiceChain } from "@openledger/service-kit";
import type { FastifyInstance } from "fastify";
import fp from "fastify-plugin";
import { type DatanetsMetrics, datanetsMetrics } from "./metrics.ts";

/** Per-datanet dedupe index kept in memory between jobs (rebuilt from Postgres when stale). */
export interface CachedIndex {
  index: DatanetIndex;
}

/** What routes, jobs and the sweeper of one app instance share (`app.datanets`). */
export interface DatanetsContext {
  config: DatanetsConfig;
  db: Db;
  /** The kit's chain connector (`app.chain`): the operator signs this service's writes. */
  chain: ServiceChain;
  producer: Producer;
  validation: ValidationConfig;
  indexes: Map<string, CachedIndex>;
  /** Redis key prefix for auth state (nonces, sessions); follows QUEUE_PREFIX so tests are isolated. */
  keyPrefix: string;
  metrics: DatanetsMetrics;
}

declare module "fastify" {
  interface FastifyInstance {
    datanets: DatanetsContext;
  }
}

/** Decorates the app with its datanets context (state on the instance, not in a module-level map). */
export const datanetsContext = fp<{ config: DatanetsConfig }>(
  async (app: FastifyInstance, { config }) => {
    app.decorate("datanets", {
      config,
      db: app.db,
      chain: app.chain,
      producer: app.producer,
      validation: resolveValidationConfig({
        nearDuplicateThreshold: config.DATANETS_NEAR_DUPLICATE_THRESHOLD,
      }),
      indexes: new Map(),
      keyPrefix: `${config.QUEUE_PREFIX}:datanets`,
      metrics: datanetsMetrics(app.metrics),
    } satisfies DatanetsContext);
  },
  { name: "datanets-context", dependencies: ["openledger-infra", "openledger-chain"] },
);
