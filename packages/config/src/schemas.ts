import { z } from "zod";
import { boolFlag, logLevel, port, postgresUrl, redisUrl } from "./fields.ts";

/** Variables every service reads. Defaults work on a developer machine. */
export const baseEnv = z.object({
  /** Log level for pino. */
  LOG_LEVEL: logLevel,
  /** Interface the HTTP server binds to (0.0.0.0 inside containers). */
  HOST: z.string().min(1).default("127.0.0.1"),
  /** Postgres connection string; `?schema=name` selects a schema (tests use one per run). */
  DATABASE_URL: postgresUrl.default("postgresql://postgres@127.0.0.1:5432/openledger"),
  /** Redis used by BullMQ and caches. */
  REDIS_URL: redisUrl.default("redis://127.0.0.1:6379"),
  /** BullMQ key prefix. The {hash tag} keeps every queue on one Redis Cluster slot. */
  QUEUE_PREFIX: z
    .string()
    .regex(/^[A-Za-z0-9{}_.-]+$/, "letters, digits, {}, _, . and - only")
    .default("{openledger}"),
  /** How long /readyz waits for Postgres and Redis before answering 503. */
  READY_TIMEOUT_MS: z.coerce.number().int().min(50).max(30_000).default(1000),
  /** Run this service's queue workers in the same process (false = HTTP only). */
  RUN_WORKERS: boolFlag(true),
  /** Stop gracefully when standard input closes; the `npm start` supervisor sets it so
   *  that services never outlive it. */
  EXIT_WITH_STDIN: boolFlag(false),
  /** JSON-RPC endpoint of the EVM chain (a local Hardhat node in development). */
  CHAIN_RPC_URL: z.string().url().default("http://127.0.0.1:8545"),
  /** Contract addresses written by the deployment; default `.data/chain/addresses.<chainId>.json`. */
  CHAIN_ADDRESSES_FILE: z.string().min(1).optional(),
});

export type BaseConfig = z.output<typeof baseEnv>;

export const datanetsEnv = baseEnv.extend({
  /** HTTP port of the datanets service. */
  DATANETS_PORT: port(4001),
});
export type DatanetsConfig = z.output<typeof datanetsEnv>;

export const attributionEnv = baseEnv.extend({
  /** HTTP port of the attribution service. */
  ATTRIBUTION_PORT: port(4002),
});
export type AttributionConfig = z.output<typeof attributionEnv>;

export const gatewayEnv = baseEnv.extend({
  /** HTTP port of the OpenLoRA gateway. */
  GATEWAY_PORT: port(4003),
});
export type GatewayConfig = z.output<typeof gatewayEnv>;

export const settlementEnv = baseEnv.extend({
  /** HTTP port of the settlement service. */
  SETTLEMENT_PORT: port(4004),
});
export type SettlementConfig = z.output<typeof settlementEnv>;

/** The `npm start` supervisor. */
export const platformEnv = baseEnv.extend({
  /** Start (and deploy to) a local Hardhat node when nothing answers at CHAIN_RPC_URL. */
  LOCAL_CHAIN: boolFlag(true),
});
export type PlatformConfig = z.output<typeof platformEnv>;

/** Every service's schema by name; docker-compose and .env.example are checked against these. */
export const SERVICE_ENVS = {
  datanets: datanetsEnv,
  attribution: attributionEnv,
  gateway: gatewayEnv,
  settlement: settlementEnv,
} as const;
export type ServiceName = keyof typeof SERVICE_ENVS;
