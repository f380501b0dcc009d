import { parseConfig, type SettlementConfig, settlementEnv } from "@openledger/config";
import { WorkerSet } from "@openledger/queue";
import { type BuildOptions, buildService, type ServiceDefinition } from "@openledger/service-kit";
import type { FastifyPluginAsync } from "fastify";
import { runtimeFor } from "./lib/runtime.ts";
import { settlementRoutes } from "./routes/settlement.ts";
import { inferenceCompletedWorker } from "./workers/inference-completed.ts";

/**
 * Workers of this service, started here rather than through `ServiceDefinition.queues`: the kit
 * runs its workers with concurrency 1, and settlement's throughput comes from many deliveries
 * meeting in one group-commit transaction (SETTLEMENT_WORKER_CONCURRENCY). Same WorkerSet, same
 * checks (every job of the queue handled), same graceful close. Also starts the pending sweeper
 * and the epoch ticker. Only when RUN_WORKERS.
 */
const settlementWorkers: FastifyPluginAsync<{ config: SettlementConfig }> = async (app, { config }) => {
  if (!config.RUN_WORKERS) return;
  const rt = runtimeFor(app.db, config, app.log);
  const workers = new WorkerSet({
    redisUrl: config.REDIS_URL,
    prefix: config.QUEUE_PREFIX,
    queues: ["settlement"],
    logger: app.log.child({ component: "workers" }),
    concurrency: { settlement: config.SETTLEMENT_WORKER_CONCURRENCY },
  });
  workers.handle("inference.completed", inferenceCompletedWorker(app, config));
  app.addHook("onReady", async () => {
    await workers.start();
    rt.start();
  });
  app.addHook("preClose", async () => {
    await workers.close();
    await rt.stop();
  });
};

/**
 * The settlement service as a plugin: HTTP routes and (when RUN_WORKERS) queue workers.
 * Fees, splits, the double-entry ledger, epochs, on-chain roots and claims.
 */
export const settlementService: ServiceDefinition<SettlementConfig> = {
  name: "settlement",
  title: "OpenLedger Settlement",
  description: "Fees, splits, the double-entry ledger, epochs, on-chain roots and claims.",
  routes: async (app, opts) => {
    await app.register(settlementRoutes, opts);
    await app.register(settlementWorkers, opts);
  },
  // Consumed by `settlementWorkers` above (queue "settlement"), with its own concurrency.
  queues: [],
};

/** Builds the app from a config (tests pass their own; the server parses the environment). */
export function buildSettlement(config: SettlementConfig, options?: BuildOptions) {
  return buildService(settlementService, config, options);
}

/** Config from an explicit environment map, for tests. */
export function settlementConfig(env: Record<string, string | undefined>): SettlementConfig {
  return parseConfig("settlement", settlementEnv, env);
}
