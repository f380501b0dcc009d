import { type AttributionConfig, attributionEnv, parseConfig } from "@openledger/config";
import { type BuildOptions, buildService, type ServiceDefinition } from "@openledger/service-kit";

/**
 * The attribution service as a plugin: HTTP routes and (when RUN_WORKERS) queue workers.
 * Proof of Attribution: suffix-array indexes, span attribution, influence scores and validator-signed results.
 */
export const attributionService: ServiceDefinition<AttributionConfig> = {
  name: "attribution",
  title: "OpenLedger Attribution",
  description:
    "Proof of Attribution: suffix-array indexes, span attribution, influence scores and validator-signed results.",
  // Routes and workers arrive with the attribution issue; the shared kit gives /healthz,
  // /readyz, /metrics and /docs.
  routes: async () => {},
  queues: [],
};

/** Builds the app from a config (tests pass their own; the server parses the environment). */
export function buildAttribution(config: AttributionConfig, options?: BuildOptions) {
  return buildService(attributionService, config, options);
}

/** Config from an explicit environment map, for tests. */
export function attributionConfig(env: Record<string, string | undefined>): AttributionConfig {
  return parseConfig("attribution", attributionEnv, env);
}
