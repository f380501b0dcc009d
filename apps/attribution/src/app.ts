import { type AttributionConfig, attributionEnv, parseConfig } from "@openledger/config";
import { AppError } from "@openledger/errors";
import {
  ApiKeys,
  authenticateCaller,
  type BuildOptions,
  bearerMatches,
  buildService,
  defineService,
} from "@openledger/service-kit";
import type { FastifyRequest } from "fastify";
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
    // The routes that cost CPU or give a paid model away answer the platform's own services
    // (ATTRIBUTION_SERVICE_TOKEN) and accounts (their gateway API key); the explorer's reads stay public,
    // and the validators' own work runs in this process's workers, not over HTTP.
    const apiKeys = new ApiKeys(app.db);
    const requireCaller = async (request: FastifyRequest) => {
      await authenticateCaller(request, { serviceToken: opts.config.ATTRIBUTION_SERVICE_TOKEN, apiKeys });
    };
    // The small model's graph is what its owner is paid for: only the gateway (which serves and bills it)
    // holds the token; an API key costs nothing to create, so it does not open this one.
    const requireService = async (request: FastifyRequest) => {
      if (!bearerMatches(request.headers.authorization, opts.config.ATTRIBUTION_SERVICE_TOKEN ?? "")) {
        throw new AppError(
          "UNAUTHORIZED",
          "only the platform's services (Bearer ATTRIBUTION_SERVICE_TOKEN)",
          {
            status: 401,
          },
        );
      }
    };
    const guarded = { ...opts, requireCaller, requireService };
    await app.register(indexRoutes, guarded);
    await app.register(attributeRoutes, guarded);
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
