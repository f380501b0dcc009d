import swagger from "@fastify/swagger";
import swaggerUi from "@fastify/swagger-ui";
import type { BaseConfig, ServiceName } from "@openledger/config";
import { createLogger, type Logger } from "@openledger/logger";
import type { QueueName } from "@openledger/queue";
import Fastify, {
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyPluginAsync,
  type FastifyPluginCallback,
} from "fastify";
import {
  jsonSchemaTransform,
  serializerCompiler,
  validatorCompiler,
  type ZodTypeProvider,
} from "fastify-type-provider-zod";
import { Background, type BackgroundJobs } from "./background.ts";
import { type ChainRoles, chainPlugin } from "./chain.ts";
import { registerErrorHandler } from "./error-handler.ts";
import { assertSafeExposure } from "./exposure.ts";
import { type DependencyCheck, type Readiness, registerHealthRoutes, standardChecks } from "./health.ts";
import { infraPlugin } from "./infra.ts";
import { registerMetrics } from "./metrics.ts";

export type App = FastifyInstance;

const POLLED = new Set(["/healthz", "/readyz", "/metrics"]);
function isPoll(url: string | undefined): boolean {
  if (!url) return false;
  const q = url.indexOf("?");
  return POLLED.has(q < 0 ? url : url.slice(0, q));
}

export interface ServiceDefinition<C extends BaseConfig, Q extends QueueName = QueueName> {
  name: ServiceName;
  title: string;
  description: string;
  /**
   * The service's shared state as decorators (`fastify-plugin`, `declare module "fastify"`),
   * registered on the root app after the kit's own (db, redis, producer, chain, background,
   * metrics) and before the routes, so routes and job handlers reach them as `app.<name>`.
   */
  plugins?: readonly (FastifyPluginAsync<{ config: C }> | FastifyPluginCallback<{ config: C }>)[];
  /** The service's routes, registered after the shared infrastructure. */
  routes: FastifyPluginAsync<{ config: C }>;
  /** Config variables holding the keys of the roles this service plays on chain (see `app.chain`). */
  chain?: ChainRoles<C>;
  /** Queue workers (when RUN_WORKERS): consumed queues, one handler per job, concurrency per queue. */
  background?: BackgroundJobs<C, Q>;
  /** Largest accepted request body. */
  bodyLimit?: number;
  /** How /readyz treats Redis and the chain being down (default: degraded, still serving). */
  readiness?: (config: C) => Readiness;
  /**
   * Postgres, Redis and the queue producer (`app.db`, `app.redis`, `app.producer`); default true.
   * A service that keeps no state of its own (the explorer, which reads the other services' APIs)
   * says false: it opens no connection, and `checks` says what /readyz checks instead.
   */
  infra?: boolean;
  /** What /readyz checks instead of the standard Postgres, Redis and chain checks. */
  checks?: (app: FastifyInstance, config: C) => DependencyCheck[];
}

/** A service definition with its consumed queues inferred (so a missing job handler fails to compile). */
export function defineService<C extends BaseConfig, Q extends QueueName = never>(
  def: ServiceDefinition<C, Q>,
): ServiceDefinition<C, Q> {
  return def;
}

export interface BuildOptions {
  logger?: Logger;
}

/**
 * Builds a service: logging, zod validation, the one error shape, OpenAPI docs at /docs,
 * /healthz, /readyz, /metrics, Postgres/Redis/queue decorators, the service's routes and
 * (when RUN_WORKERS) its queue workers. Returns the app ready to `listen` or `inject`.
 */
export async function buildService<C extends BaseConfig, Q extends QueueName>(
  def: ServiceDefinition<C, Q>,
  config: C,
  options: BuildOptions = {},
): Promise<App> {
  // Before anything connects: a service exposed without its tokens does not start at all.
  const exposureWarnings = assertSafeExposure(def.name, config);
  const logger =
    options.logger ??
    createLogger({
      name: def.name,
      level: config.LOG_LEVEL,
      ...(config.LOG_FORMAT === "auto" ? {} : { pretty: config.LOG_FORMAT === "pretty" }),
    });
  const app = Fastify({
    loggerInstance: logger as FastifyBaseLogger,
    bodyLimit: def.bodyLimit ?? 1024 * 1024,
    requestIdHeader: "x-request-id",
    // Health and readiness polls and metric scrapes come every few seconds from supervisors, load
    // balancers and Prometheus: logged at debug (below), not as two info lines each.
    disableRequestLogging: (req) => isPoll(req.url),
    return503OnClosing: true,
    // Fastify's default (10 s) fails a start-up that is merely slow: a service's routes plugin
    // loads models and mirrors state from Postgres, which takes longer on a loaded machine.
    // /readyz, not this timeout, is what tells an orchestrator the service is up.
    pluginTimeout: 120_000,
  }).withTypeProvider<ZodTypeProvider>();
  for (const warning of exposureWarnings) app.log.warn({ host: config.HOST }, warning);
  app.addHook("onResponse", async (request, reply) => {
    if (isPoll(request.url))
      request.log.debug({ url: request.url, statusCode: reply.statusCode, ms: reply.elapsedTime }, "poll");
  });
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  registerErrorHandler(app);

  await app.register(swagger, {
    openapi: {
      info: { title: def.title, description: def.description, version: "0.1.0" },
      // Routes that need a session or an API key say `security: [{ bearer: [] }]`.
      components: { securitySchemes: { bearer: { type: "http", scheme: "bearer" } } },
    },
    transform: jsonSchemaTransform,
  });
  await app.register(swaggerUi, { routePrefix: "/docs" });
  if (def.infra === false) app.decorate("config", config as BaseConfig);
  else await app.register(infraPlugin, { config });
  registerMetrics(app, def.name);
  await app.register(chainPlugin, { config, roles: (def.chain ?? {}) as unknown as ChainRoles<BaseConfig> });
  const background = new Background(config, app.log.child({ component: "background" }), app.metrics, (q) =>
    app.producer.queue(q),
  );
  app.decorate("background", background);
  registerHealthRoutes(
    app,
    def.checks ? def.checks(app, config) : standardChecks(app, def.readiness?.(config)),
    config.READY_TIMEOUT_MS,
  );
  for (const plugin of def.plugins ?? []) await app.register(plugin, { config });
  await app.register(def.routes, { config });
  if (def.background) background.consume(app, config, def.background);
  app.addHook("onReady", async () => {
    await background.start();
  });
  app.addHook("preClose", async () => {
    await background.stop();
  });
  try {
    await app.ready();
  } catch (err) {
    // A start-up check refused (or a plugin failed): release connections so the process can exit.
    await app.close().catch(() => {});
    throw err;
  }
  return app;
}
