import type { ConnectionOptions } from "bullmq";
import { Cluster, Redis, type RedisOptions } from "ioredis";

/** ioredis options from a redis:// or rediss:// URL. */
export function redisOptionsFromUrl(url: string): RedisOptions {
  const u = new URL(url);
  const db = u.pathname.length > 1 ? Number(u.pathname.slice(1)) : 0;
  if (!Number.isInteger(db) || db < 0) throw new Error(`invalid Redis database in URL: ${u.pathname}`);
  const options: RedisOptions = {
    host: u.hostname || "127.0.0.1",
    port: u.port ? Number(u.port) : 6379,
    db,
    // Keep reconnecting, but never faster than 2 s apart, so an outage is survived.
    retryStrategy: (times) => Math.min(100 * times, 2000),
  };
  if (u.username) options.username = decodeURIComponent(u.username);
  if (u.password) options.password = decodeURIComponent(u.password);
  if (u.protocol === "rediss:") options.tls = {};
  return options;
}

/**
 * Producers fail fast when Redis is down (BullMQ production guide): the caller gets an
 * error it can turn into a 503 instead of a request that hangs.
 */
export function producerConnection(url: string): RedisOptions {
  return {
    ...redisOptionsFromUrl(url),
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: 2000,
  };
}

/** Workers wait for Redis forever: blocking commands need maxRetriesPerRequest null. */
export function workerConnection(url: string): RedisOptions {
  return { ...redisOptionsFromUrl(url), maxRetriesPerRequest: null };
}

/**
 * A BullMQ connection for Redis standalone or Redis Cluster. Standalone: options (BullMQ opens
 * and closes its own connections). Cluster: one ioredis `Cluster` seeded by `url` (the other
 * nodes are discovered), which BullMQ shares and we close. Keys stay in one slot per queue because
 * the queue prefix carries a `{hash tag}` (QUEUE_PREFIX).
 */
export interface QueueConnection {
  connection: ConnectionOptions;
  close(): Promise<void>;
}

export function queueConnection(url: string, role: "producer" | "worker", cluster = false): QueueConnection {
  const options = role === "producer" ? producerConnection(url) : workerConnection(url);
  if (!cluster) return { connection: options as ConnectionOptions, close: async () => {} };
  const { host, port, ...redisOptions } = options;
  const c = new Cluster([{ host: host ?? "127.0.0.1", port: port ?? 6379 }], {
    redisOptions,
    enableOfflineQueue: role === "worker",
    // Producers fail fast (as standalone); workers wait for the cluster to come back.
    ...(role === "producer" ? { maxRedirections: 16, retryDelayOnClusterDown: 100 } : {}),
  });
  return {
    connection: c as unknown as ConnectionOptions,
    close: async () => {
      await c.quit().catch(() => c.disconnect());
    },
  };
}

/** A plain Redis client (caches, readiness) for standalone or cluster. */
export function createRedisClient(
  url: string,
  cluster: boolean,
  options: RedisOptions = {},
): Redis | Cluster {
  const base = { ...redisOptionsFromUrl(url), ...options };
  if (!cluster) return new Redis(base);
  const { host, port, ...redisOptions } = base;
  return new Cluster([{ host: host ?? "127.0.0.1", port: port ?? 6379 }], {
    redisOptions,
    lazyConnect: options.lazyConnect ?? false,
    enableOfflineQueue: options.enableOfflineQueue ?? true,
  });
}
