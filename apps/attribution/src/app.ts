import { type AttributionConfig, attributionEnv, parseConfig } from "@openledger/config";
import { type BuildOptions, buildService, defineService } from "@openledger/service-kit";
import { attributionContext } from "./lib/context.ts";
import { attributeRoutes } from "./routes/attribute.ts";
import { indexRoutes } from "./routes/indexes.ts";
import { inferenceRoutes } from "./routes/inferences.ts";
import { indexWorker } from "./workers/index-worker.ts";
import { scoreWorker } from "./workers/score-worker.ts";

/**
 * The attribution service as a plugin: HTTP routes and (when RUN_WORKERS) queue workers.
 * Proof of Attribution: suffix-array indexes, span attribution, influence scores and validator-signed results.
 */
export const attributionService = defineService({
  name: "attribution",
  title: "OpenLedger Attribution",
  description:
    "Proof of Attribution: suffix-array indexes, span attribution, influence scores and validator-signed results.",
  plugins: [attributionContext],
  chain: { validators: "VALIDATOR_PRIVATE_KEYS" },
  routes: async (app, opts: { config: AttributionConfig }) => {
    await app.register(indexRoutes, opts);
    await app.register(attributeRoutes, opts);
    await app.register(inferenceRoutes, opts);
  },
  background: {
    queues: ["attribution"],
    concurrency: (config: AttributionConfig) => ({ attribution: config.ATTRIBUTION_WORKER_CONCURRENCY }),
    jobs: (app) => ({
      "attribution.index": indexWorker(app),
      "attribution.score": scoreWorker(app),
    }),
  },
  // POST /v1/attribute takes texts up to 200k characters.
  bodyLimit: 2 * 1024 * 1024,
});

/** Builds the app from a config (tests pass their own; the server parses the environment). */
export function buildAttribution(config: AttributionConfig, options?: BuildOptions) {
  return buildService(attributionService, config, options);
}

/** Config from an explicit environment map, for tests. */
export function attributionConfig(env: Record<string, string | undefined>): AttributionConfig {
  return parseConfig("attribution", attributionEnv, env);
}
