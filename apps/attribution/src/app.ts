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
import type { FastifyInstance, FastifyRequest } from "fastify";
import fp from "fastify-plugin";
import { attributionContext } from "./lib/context.ts";
import { disputeDuty } from "./lib/disputes.ts";
import { attestClosedEpochs } from "./lib/epoch-attestor.ts";
import { attributeRoutes } from "./routes/attribute.ts";
import { indexRoutes } from "./routes/indexes.ts";
import { inferenceRoutes } from "./routes/inferences.ts";
import { validatorRoutes } from "./routes/validator.ts";
import { indexWorker } from "./workers/index-worker.ts";
import { scoreWorker } from "./workers/score-worker.ts";
import { validatorScan } from "./workers/validator-scan.ts";

/**
 * The validator's own duties as background tasks (only with RUN_WORKERS): it attributes every recent
 * inference it has not attributed yet (`validatorScan`: each validator reads the public record rather
 * than sharing one job queue), recounts and attests each closed epoch's root (settlement holds no
 * validator key: roots are posted only with a quorum of validator processes' signatures), and signs and
 * files disputes against validators that signed a result other than the quorum's (ATTRIBUTION_AUTO_DISPUTE).
 */
const validatorDuties = fp<{ config: AttributionConfig }>(
  async (app: FastifyInstance, { config }) => {
    app.background.every("validator scan", config.ATTRIBUTION_VALIDATOR_SCAN_MS, validatorScan(app));
    app.background.every("validator epoch attest", config.ATTRIBUTION_EPOCH_ATTEST_INTERVAL_MS, async () => {
      const [chain, identities] = await Promise.all([app.attribution.chain(), app.attribution.validators()]);
      for (const identity of identities) await attestClosedEpochs(app.db, chain, identity, app.log);
    });
    // Disputes against validators that signed a result other than the quorum's (lib/disputes.ts).
    if (config.ATTRIBUTION_AUTO_DISPUTE) {
      app.background.every(
        "validator disputes",
        config.ATTRIBUTION_EPOCH_ATTEST_INTERVAL_MS,
        disputeDuty(app),
      );
    }
  },
  { name: "attribution-validator-duties", dependencies: ["attribution-context"] },
);

/**
 * The attribution service as a plugin: HTTP routes and (when RUN_WORKERS) queue workers.
 * Proof of Attribution: suffix-array indexes, span attribution, influence scores and validator-signed results.
 */
export const attributionService = defineService({
  name: "attribution",
  title: "OpenLedger Attribution",
  description:
    "Proof of Attribution: suffix-array indexes, span attribution, influence scores and validator-signed results.",
  plugins: [attributionContext, validatorDuties],
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
    await app.register(validatorRoutes, opts);
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

export { attestClosedEpochs, recountEpoch } from "./lib/epoch-attestor.ts";

/** Builds the app from a config (tests pass their own; the server parses the environment). */
export function buildAttribution(config: AttributionConfig, options?: BuildOptions) {
  return buildService(attributionService, config, options);
}

/** Config from an explicit environment map, for tests. */
export function attributionConfig(env: Record<string, string | undefined>): AttributionConfig {
  return parseConfig("attribution", attributionEnv, env);
}
