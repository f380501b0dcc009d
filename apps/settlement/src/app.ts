import { parseConfig, type SettlementConfig, settlementEnv } from "@openledger/config";
import { type BuildOptions, buildService, type ServiceDefinition } from "@openledger/service-kit";
import { runtimeFor } from "./lib/runtime.ts";
import { settlementRoutes } from "./routes/settlement.ts";
import { inferenceCompletedWorker } from "./workers/inference-completed.ts";

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
  },
  queues: ["settlement"],
  registerWorkers: (workers, app, config) => {
    workers.handle("inference.completed", inferenceCompletedWorker(app, config));
    // The pending sweeper and the epoch ticker run where the workers run.
    const rt = runtimeFor(app.db, config, app.log);
    app.addHook("onReady", async () => rt.start());
    app.addHook("preClose", async () => rt.stop());
  },
};

/** Builds the app from a config (tests pass their own; the server parses the environment). */
export function buildSettlement(config: SettlementConfig, options?: BuildOptions) {
  return buildService(settlementService, config, options);
}

/** Config from an explicit environment map, for tests. */
export function settlementConfig(env: Record<string, string | undefined>): SettlementConfig {
  return parseConfig("settlement", settlementEnv, env);
}
