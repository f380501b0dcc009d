import { type DatanetsConfig, datanetsEnv, parseConfig } from "@openledger/config";
import { type BuildOptions, buildService, type ServiceDefinition } from "@openledger/service-kit";

/**
 * The datanets service as a plugin: HTTP routes and (when RUN_WORKERS) queue workers.
 * Datanets, contributions, validation, versions and slashing proposals.
 */
export const datanetsService: ServiceDefinition<DatanetsConfig> = {
  name: "datanets",
  title: "OpenLedger Datanets",
  description: "Datanets, contributions, validation, versions and slashing proposals.",
  // Routes and workers arrive with the datanets issue; the shared kit gives /healthz,
  // /readyz, /metrics and /docs.
  routes: async () => {},
  queues: [],
};

/** Builds the app from a config (tests pass their own; the server parses the environment). */
export function buildDatanets(config: DatanetsConfig, options?: BuildOptions) {
  return buildService(datanetsService, config, options);
}

/** Config from an explicit environment map, for tests. */
export function datanetsConfig(env: Record<string, string | undefined>): DatanetsConfig {
  return parseConfig("datanets", datanetsEnv, env);
}
