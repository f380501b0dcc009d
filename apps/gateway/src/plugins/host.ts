import type { GatewayConfig } from "@openledger/config";
import type { FastifyInstance } from "fastify";
import fp from "fastify-plugin";
import { engineMetrics } from "../lib/metrics.ts";
import { ModelHost } from "../lib/model-host.ts";
import { type RequestPhaseMetrics, requestPhaseMetrics } from "../lib/request-phases.ts";

declare module "fastify" {
  interface FastifyInstance {
    /** The base model, its runtime and the serving engine (adapter tiers, scheduler, engine loop). */
    host: ModelHost;
    /** The request path's phases before the engine (/metrics; `hooks.onPhases` for the benchmark). */
    requestPhases: RequestPhaseMetrics;
  }
}

/**
 * Loads the base model (or generates the tiny one) and starts the engine; its metrics go to the
 * service's registry. The app — and /readyz — is only up once the model is loaded (service-kit's
 * plugin timeout leaves a SmolLM-sized model enough time).
 */
export const hostPlugin = fp<{ config: GatewayConfig }>(
  async (app: FastifyInstance, { config }) => {
    const metrics = engineMetrics(app.metrics);
    const host = await ModelHost.start(config);
    host.hooks.onStep = metrics.onStep;
    host.hooks.onFinished = metrics.onFinished;
    host.hooks.onError = (err) => app.log.error({ err }, "engine loop failed");
    metrics.attach(host);
    app.decorate("host", host);
    app.decorate("requestPhases", requestPhaseMetrics(app.metrics));
    app.addHook("onClose", async () => {
      await host.close();
    });
    app.log.info({ model: config.GATEWAY_BASE_MODEL_ID, dir: host.modelDir }, "base model loaded");
  },
  { name: "gateway-host" },
);
