import { parseConfig, type SettlementConfig, settlementEnv } from "@openledger/config";
import { type BuildOptions, buildService, defineService } from "@openledger/service-kit";
import { settlementRuntime } from "./lib/runtime.ts";
import { readRoutes } from "./routes/reads.ts";
import { settlementRoutes } from "./routes/settlement.ts";
import { inferenceCompletedWorker } from "./workers/inference-completed.ts";

/**
 * The settlement service as a plugin: HTTP routes and (when RUN_WORKERS) queue workers and
 * background tasks. Fees, splits, the double-entry ledger, epochs, on-chain roots and claims.
 * `inference.completed` runs SETTLEMENT_WORKER_CONCURRENCY jobs at once: its throughput comes
 * from many deliveries meeting in one group-commit transaction.
 */
export const settlementService = defineService({
  name: "settlement",
  title: "OpenLedger Settlement",
  description: "Fees, splits, the double-entry ledger, epochs, on-chain roots and claims.",
  plugins: [settlementRuntime],
  chain: { settler: "SETTLEMENT_SETTLER_PRIVATE_KEY" },
  routes: async (app, opts: { config: SettlementConfig }) => {
    await app.register(settlementRoutes, opts);
    await app.register(readRoutes, opts);
  },
  background: {
    queues: ["settlement"],
    concurrency: (config: SettlementConfig) => ({ settlement: config.SETTLEMENT_WORKER_CONCURRENCY }),
    jobs: (app) => ({ "inference.completed": inferenceCompletedWorker(app) }),
  },
});

// The gateway's tests run settlement's charge statement against its own sweep (one lock order).
export { addCleared } from "./lib/charges.ts";

/** Builds the app from a config (tests pass their own; the server parses the environment). */
export function buildSettlement(config: SettlementConfig, options?: BuildOptions) {
  return buildService(settlementService, config, options);
}

/** Config from an explicit environment map, for tests. */
export function settlementConfig(env: Record<string, string | undefined>): SettlementConfig {
  return parseConfig("settlement", settlementEnv, env);
}
