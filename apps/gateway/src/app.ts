import { type GatewayConfig, gatewayEnv, parseConfig } from "@openledger/config";
import { type App, type BuildOptions, buildService, type ServiceDefinition } from "@openledger/service-kit";
import type { FastifyInstance } from "fastify";
import { GatewayState } from "./gateway.ts";
import { engineMetrics } from "./metrics.ts";
import { ModelHost } from "./model-host.ts";
import { adapterRoutes } from "./routes/adapters.ts";
import { adminRoutes } from "./routes/admin.ts";
import { openaiRoutes } from "./routes/openai.ts";
import { smallModelRoutes } from "./routes/small-models.ts";

/** The gateway state of a built app (tests and the benchmark reach the engine through it). */
const STATES = new WeakMap<object, GatewayState>();
/** Models loaded before the app is built, by config object. */
const PRELOADED = new WeakMap<GatewayConfig, Promise<ModelHost>>();

/**
 * Loads the base model and builds the engine ahead of the app: a SmolLM-sized model takes
 * longer than Fastify's plugin timeout (10 s), so `buildGateway` and the server call this
 * first and the route plugin picks the host up.
 */
export function preloadModel(config: GatewayConfig): Promise<ModelHost> {
  let p = PRELOADED.get(config);
  if (!p) {
    p = ModelHost.start(config);
    PRELOADED.set(config, p);
  }
  return p;
}

export function gatewayState(app: FastifyInstance): GatewayState {
  const s = STATES.get(app.server);
  if (!s) throw new Error("not a gateway app");
  return s;
}

/**
 * The gateway service as a plugin. Start-up loads the base model (or generates the tiny
 * one), builds the runtime and the serving engine once, mirrors servable models from
 * Postgres, then registers the OpenAI routes, the adapter registry and the admin routes.
 * The app is ready (and /readyz answers) only once the model is loaded.
 */
export const gatewayService: ServiceDefinition<GatewayConfig> = {
  name: "gateway",
  title: "OpenLedger Gateway",
  description:
    "OpenLoRA: OpenAI-compatible inference over one base model and many LoRA adapters, and small (influence) models of labelled datanet versions.",
  routes: async (app, { config }) => {
    const state = new GatewayState(config, app.db, app.producer, app.log);
    const metrics = engineMetrics(app.metrics);
    const host = await preloadModel(config);
    PRELOADED.delete(config);
    host.hooks.locator = { dirOf: (id) => state.adapterDir(id) };
    host.hooks.onStep = metrics.onStep;
    host.hooks.onFinished = metrics.onFinished;
    host.hooks.onError = (err) => app.log.error({ err }, "engine loop failed");
    metrics.attach(host);
    try {
      await state.init(host);
    } catch (err) {
      await host.close();
      throw err;
    }
    STATES.set(app.server, state);
    state.startSweeper();
    app.addHook("onClose", async () => {
      await state.stopSweeper();
      await state.smallModels.close();
      await host.close();
    });
    app.log.info(
      { model: config.GATEWAY_BASE_MODEL_ID, dir: host.modelDir, adapters: state.models.size - 1 },
      "base model loaded",
    );
    await app.register(openaiRoutes, { state });
    await app.register(adapterRoutes, { state });
    await app.register(smallModelRoutes, { state });
    await app.register(adminRoutes, { state });
  },
  queues: [],
  // Adapter uploads are multipart (their own limits); JSON bodies stay small.
  bodyLimit: 4 * 1024 * 1024,
};

/** Builds the app from a config (tests pass their own; the server parses the environment). */
export async function buildGateway(config: GatewayConfig, options?: BuildOptions): Promise<App> {
  await preloadModel(config);
  return buildService(gatewayService, config, options);
}

/** Config from an explicit environment map, for tests. */
export function gatewayConfig(env: Record<string, string | undefined>): GatewayConfig {
  return parseConfig("gateway", gatewayEnv, env);
}
