import type { RedisOptions } from "ioredis";

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
