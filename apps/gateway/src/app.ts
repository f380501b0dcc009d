import { type GatewayConfig, gatewayEnv, parseConfig } from "@openledger/config";
import { type App, type BuildOptions, buildService, type ServiceDefinition } from "@openledger/service-kit";
import type { FastifyInstance, FastifyPluginAsync } from "fastify";
import fp from "fastify-plugin";
import { billingPlugin } from "./plugins/billing.ts";
import { catalogPlugin } from "./plugins/catalog.ts";
import { grantsPlugin } from "./plugins/grants.ts";
import { hostPlugin } from "./plugins/host.ts";
import { hotSetPlugin } from "./plugins/hot-set.ts";
import { inferencesPlugin } from "./plugins/inferences.ts";
import { keysPlugin } from "./plugins/keys.ts";
import { registrationPlugin } from "./plugins/registration.ts";
import { sweeperPlugin } from "./plugins/sweeper.ts";
import { adapterFileRoutes } from "./routes/adapter-files.ts";
import { adapterRoutes } from "./routes/adapters.ts";
import { adminRoutes } from "./routes/admin.ts";
import { catalogRoutes } from "./routes/catalog.ts";
import { keyRoutes } from "./routes/keys.ts";
import { openaiRoutes } from "./routes/openai.ts";
import { smallModelRoutes } from "./routes/small-models.ts";
import { trainingGrantRoutes } from "./routes/training-grants.ts";

/**
 * The gateway's parts, each a decorator of its own (fastify-plugin, so tests and the benchmark
 * reach them on the app): `host` (model + engine), `catalog` (servable models), `apiKeys`,
 * `billing` (balance check, reservations; the chain through the kit's `app.chain`), `registration`
 * (models + chain intents),
 * `inferences` (recording + outbox), then the background sweeper, the adapter hot set (saved, and
 * warmed after a restart) and the routes.
 */
const gatewayPlugins: FastifyPluginAsync<{ config: GatewayConfig }> = fp(
  async (app: FastifyInstance, { config }: { config: GatewayConfig }) => {
    await app.register(hostPlugin, { config });
    await app.register(catalogPlugin, { config });
    await app.register(keysPlugin);
    await app.register(billingPlugin, { config });
    await app.register(registrationPlugin, { config });
    await app.register(inferencesPlugin);
    await app.register(grantsPlugin);
    await app.register(sweeperPlugin, { config });
    await app.register(hotSetPlugin, { config });
    app.log.info({ adapters: app.catalog.models.size - 1 }, "models loaded");
    await app.register(openaiRoutes, { config });
    await app.register(adapterRoutes, { config });
    await app.register(adapterFileRoutes, { config });
    await app.register(smallModelRoutes, { config });
    await app.register(adminRoutes, { config });
    await app.register(keyRoutes);
    await app.register(catalogRoutes);
    await app.register(trainingGrantRoutes);
  },
  { name: "gateway" },
);

/**
 * The gateway service. Start-up loads the base model (or generates the tiny one), builds the
 * runtime and the serving engine once, mirrors servable models from Postgres, then registers the
 * OpenAI routes, the adapter registry (and its files, for validators) and the admin routes. The app is ready (and /readyz
 * answers) only once the model is loaded.
 */
export const gatewayService: ServiceDefinition<GatewayConfig> = {
  name: "gateway",
  title: "OpenLedger Gateway",
  description:
    "OpenLoRA: OpenAI-compatible inference over one base model and many LoRA adapters, and small (influence) models of labelled datanet versions.",
  routes: gatewayPlugins,
  chain: { operator: "GATEWAY_OPERATOR_PRIVATE_KEY" },
  // Without the chain the gateway admits requests on balances read before, for as long as they may
  // be used (Billing.staleLimitMs); then it can no longer admit anyone.
  readiness: (config) => ({ chain: { degradedForMs: config.GATEWAY_BALANCE_STALE_MS } }),
  // Adapter uploads are multipart (their own limits); JSON bodies stay small.
  bodyLimit: 4 * 1024 * 1024,
};

/** Builds the app from a config (tests pass their own; the server parses the environment). */
export function buildGateway(config: GatewayConfig, options?: BuildOptions): Promise<App> {
  return buildService(gatewayService, config, options);
}

/** Config from an explicit environment map, for tests. */
export function gatewayConfig(env: Record<string, string | undefined>): GatewayConfig {
  return parseConfig("gateway", gatewayEnv, env);
}
