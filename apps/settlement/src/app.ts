import { parseConfig, type SettlementConfig, settlementEnv } from "@openledger/config";
import { type BuildOptions, buildService, type ServiceDefinition } from "@openledger/service-kit";

/**
 * The settlement service as a plugin: HTTP routes and (when RUN_WORKERS) queue workers.
 * Fees, splits, the double-entry ledger, epochs, on-chain roots and claims.
 */
export const settlementService: ServiceDefinition<SettlementConfig> = {
  name: "settlement",
  title: "OpenLedger Settlement",
  description: "Fees, splits, the double-entry ledger, epochs, on-chain roots and claims.",
  // Routes and workers arrive with the settlement issue; the shared kit gives /healthz,
  // /readyz, /metrics and /docs.
  routes: async () => {},
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
