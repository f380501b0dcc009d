import { type GatewayConfig, gatewayEnv, parseConfig } from "@openledger/config";
import { type BuildOptions, buildService, type ServiceDefinition } from "@openledger/service-kit";

/**
 * The gateway service as a plugin: HTTP routes and (when RUN_WORKERS) queue workers.
 * OpenLoRA: OpenAI-compatible inference over one base model and many LoRA adapters.
 */
export const gatewayService: ServiceDefinition<GatewayConfig> = {
  name: "gateway",
  title: "OpenLedger Gateway",
  description: "OpenLoRA: OpenAI-compatible inference over one base model and many LoRA adapters.",
  // Routes and workers arrive with the gateway issue; the shared kit gives /healthz,
  // /readyz, /metrics and /docs.
  routes: async () => {},
  queues: [],
};

/** Builds the app from a config (tests pass their own; the server parses the environment). */
export function buildGateway(config: GatewayConfig, options?: BuildOptions) {
  return buildService(gatewayService, config, options);
}

/** Config from an explicit environment map, for tests. */
export function gatewayConfig(env: Record<string, string | undefined>): GatewayConfig {
  return parseConfig("gateway", gatewayEnv, env);
}
