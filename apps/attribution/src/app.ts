import { type AttributionConfig, attributionEnv, parseConfig } from "@openledger/config";
import { type BuildOptions, buildService, type ServiceDefinition } from "@openledger/service-kit";
import { attributeRoutes } from "./routes/attribute.ts";
import { indexRoutes } from "./routes/indexes.ts";
import { inferenceRoutes } from "./routes/inferences.ts";
import { indexWorker } from "./workers/index-worker.ts";
import { scoreWorker } from "./workers/score-worker.ts";
import { startSweeper } from "./workers/sweeper.ts";

/**
 * The attribution service as a plugin: HTTP routes and (when RUN_WORKERS) queue workers.
 * Proof of Attribution: suffix-array indexes, span attribution, influence scores and validator-signed results.
 */
export const attributionService: ServiceDefinition<AttributionConfig> = {
  name: "attribution",
  title: "OpenLedger Attribution",
  description:
    "Proof of Attribution: suffix-array indexes, span attribution, influence scores and validator-signed results.",
  routes: async (app, opts) => {
    await app.register(indexRoutes, opts);
    await app.register(attributeRoutes, opts);
    await app.register(inferenceRoutes, opts);
  },
  queues: ["attribution"],
  registerWorkers: (workers, app, config) => {
    workers.handle("attribution.index", indexWorker(app, config));
    workers.handle("attribution.score", scoreWorker(app, config));
    let stop = () => {};
    app.addHook("onReady", async () => {
      stop = startSweeper(app, config);
    });
    app.addHook("preClose", async () => stop());
  },
  // POST /v1/attribute takes texts up to 200k characters.
  bodyLimit: 2 * 1024 * 1024,
};

/** Builds the app from a config (tests pass their own; the server parses the environment). */
export function buildAttribution(config: AttributionConfig, options?: BuildOptions) {
  return buildService(attributionService, config, options);
}

/** Config from an explicit environment map, for tests. */
export function attributionConfig(env: Record<string, string | undefined>): AttributionConfig {
  return parseConfig("attribution", attributionEnv, env);
}
