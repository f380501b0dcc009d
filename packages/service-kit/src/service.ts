import swagger from "@fastify/swagger";
import swaggerUi from "@fastify/swagger-ui";
import type { BaseConfig, ServiceName } from "@openledger/config";
import { createLogger, type Logger } from "@openledger/logger";
import { type QueueName, WorkerSet } from "@openledger/queue";
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyPluginAsync } from "fastify";
import {
  jsonSchemaTransform,
  serializerCompiler,
  validatorCompiler,
  type ZodTypeProvider,
} from "fastify-type-provider-zod";
import { registerErrorHandler } from "./error-handler.ts";
import { registerHealthRoutes, standardChecks } from "./health.ts";
import { infraPlugin } from "./infra.ts";
import { registerMetrics } from "./metrics.ts";

export type App = FastifyInstance;

export interface ServiceDefinition<C extends BaseConfig> {
  name: ServiceName;
  title: string;
  description: string;
  /** The service's routes, registered after the shared infrastructure. */
  routes: FastifyPluginAsync<{ config: C }>;
  /** Queues whose jobs this service's workers consume (each job needs a handler). */
  queues: readonly QueueName[];
  /** Registers one handler per consumed job. */
  registerWorkers?: (workers: WorkerSet, app: App, config: C) => void;
  /** Largest accepted request body. */
  bodyLimit?: number;
}

export interface BuildOptions {
  logger?: Logger;
}

/**
 * Builds a service: logging, zod validation, the one error shape, OpenAPI docs at /docs,
 * /healthz, /readyz, /metrics, Postgres/Redis/queue decorators, the service's routes and
 * (when RUN_WORKERS) its queue workers. Returns the app ready to `listen` or `inject`.
 */
export async function buildService<C extends BaseConfig>(
  def: ServiceDefinition<C>,
  config: C,
  options: BuildOptions = {},
): Promise<App> {
  const logger = options.logger ?? createLogger({ name: def.name, level: config.LOG_LEVEL });
  const app = Fastify({
    loggerInstance: logger as FastifyBaseLogger,
    bodyLimit: def.bodyLimit ?? 1024 * 1024,
    requestIdHeader: "x-request-id",
    return503OnClosing: true,
    // Fastify's default (10 s) fails a start-up that is merely slow: a service's routes plugin
    // loads models and mirrors state from Postgres, which takes longer on a loaded machine.
    // /readyz, not this timeout, is what tells an orchestrator the service is up.
    pluginTimeout: 120_000,
  }).withTypeProvider<ZodTypeProvider>();
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
  await app.register(infraPlugin, { config });
  registerMetrics(app, def.name);
  registerHealthRoutes(app, standardChecks(app), config.READY_TIMEOUT_MS);
  await app.register(def.routes, { config });

  if (config.RUN_WORKERS && def.queues.length > 0) {
    const workers = new WorkerSet({
      redisUrl: config.REDIS_URL,
      prefix: config.QUEUE_PREFIX,
      queues: def.queues,
      logger: app.log.child({ component: "workers" }),
    });
    def.registerWorkers?.(workers, app, config);
    app.addHook("onReady", async () => {
      await workers.start();
    });
    app.addHook("preClose", async () => {
      await workers.close();
    });
  }
  await app.ready();
  return app;
}
