import type { BaseConfig } from "@openledger/config";
import { createDb, type Db } from "@openledger/db";
import { createRedisClient, Producer } from "@openledger/queue";
import type { FastifyInstance } from "fastify";
import fp from "fastify-plugin";
import type { Cluster, Redis } from "ioredis";

declare module "fastify" {
  interface FastifyInstance {
    /** Prisma client (Postgres is the system of record). */
    db: Db;
    /** Redis (or Redis Cluster) for readiness checks and caches (queues use their own connections). */
    redis: Redis | Cluster;
    /** Typed queue producer. */
    producer: Producer;
    config: BaseConfig;
  }
}

export interface InfraOptions {
  config: BaseConfig;
}

/**
 * Postgres, Redis and the queue producer as decorators, closed in onClose. Connections
 * are lazy and self-healing: the service starts while a dependency is down, answers
 * /readyz with 503, and recovers when it comes back.
 */
export const infraPlugin = fp<InfraOptions>(
  async (app: FastifyInstance, { config }) => {
    const db = createDb(config.DATABASE_URL, {
      onPoolError: (err) => app.log.warn({ err }, "postgres connection error"),
    });
    const redis = createRedisClient(config.REDIS_URL, config.REDIS_CLUSTER, {
      lazyConnect: true,
      // Fail commands at once while disconnected instead of queueing them.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      connectTimeout: 2000,
    });
    let redisDown = false;
    redis.on("error", (err) => {
      if (!redisDown) app.log.warn({ err: err.message }, "redis connection error");
      redisDown = true;
    });
    redis.on("ready", () => {
      if (redisDown) app.log.info("redis connection restored");
      redisDown = false;
    });
    redis.connect().catch(() => {}); // errors are reported by the "error" listener
    const producer = new Producer(
      { redisUrl: config.REDIS_URL, prefix: config.QUEUE_PREFIX, cluster: config.REDIS_CLUSTER },
      (err) => app.log.warn({ err: err.message }, "queue connection error"),
    );
    app.decorate("config", config);
    app.decorate("db", db);
    app.decorate<Redis | Cluster>("redis", redis);
    app.decorate("producer", producer);
    // Open the first pooled connection (and Prisma's query engine) before the first
    // request, so /readyz measures Postgres rather than cold start. Failure is fine here:
    // /readyz reports it.
    app.addHook("onReady", async () => {
      await Promise.race([db.$queryRaw`SELECT 1`, new Promise((r) => setTimeout(r, 5000))]).catch(() => {});
    });
    app.addHook("onClose", async () => {
      await producer.close();
      redis.disconnect();
      await db.$disconnect();
    });
  },
  { name: "openledger-infra" },
);
