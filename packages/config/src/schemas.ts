import { z } from "zod";
import { boolFlag, logLevel, port, postgresUrl, redisUrl } from "./fields.ts";

/**
 * The platform's default base model: pretrained by the project itself on Moby-Dick
 * (scripts/pretrain-base.ts; the repository keeps the result), relative to the repository root.
 * The gateway serves it, the factory tunes adapters of it and attribution tokenizes with its
 * tokenizer unless told otherwise.
 */
export const DEFAULT_BASE_MODEL_DIR = "models/openledger-moby";
export const DEFAULT_BASE_MODEL_ID = "openledger-moby";
/** The value of GATEWAY_MODEL_DIR / FACTORY_MODEL_DIR that selects the built-in tiny random model (tests). */
export const TINY_MODEL = "tiny";
/** Where the tiny model is generated, relative to the repository root (the gateway, the factory and validators: one path). */
export const TINY_MODEL_DIR = ".data/models/tiny";
/**
 * The environment that puts the gateway, the factory and attribution on the tiny model (its byte
 * tokenizer): what most service tests run on — fast, and the byte-level behaviour they were written
 * for. The platform (npm start, the demo, the e2e) runs the default base model.
 */
export const TINY_MODEL_ENV = {
  GATEWAY_MODEL_DIR: TINY_MODEL,
  GATEWAY_BASE_MODEL_ID: "openledger-tiny",
  FACTORY_MODEL_DIR: TINY_MODEL,
  ATTRIBUTION_TOKENIZER: "byte",
} as const;

/** Variables every service reads. Defaults work on a developer machine. */
export const baseEnv = z.object({
  /** Log level for pino. Health and readiness polls and metric scrapes log at `debug`. */
  LOG_LEVEL: logLevel,
  /** `pretty` (colourised lines for people), `json` (one object a line, for log shippers) or
   *  `auto`: pretty when stdout is a terminal. `npm start` passes its own terminal's choice on. */
  LOG_FORMAT: z.enum(["auto", "json", "pretty"]).default("auto"),
  /** Interface the HTTP server binds to (0.0.0.0 inside containers). */
  HOST: z.string().min(1).default("127.0.0.1"),
  /** Postgres connection string; `?schema=name` selects a schema (tests use one per run). */
  DATABASE_URL: postgresUrl.default("postgresql://postgres@127.0.0.1:5432/openledger"),
  /** Redis used by BullMQ and caches. */
  REDIS_URL: redisUrl.default("redis://127.0.0.1:6379"),
  /** Redis is a Redis Cluster: REDIS_URL names one seed node, the other nodes are discovered. */
  REDIS_CLUSTER: boolFlag(false),
  /** BullMQ key prefix. The {hash tag} keeps every queue on one Redis Cluster slot. */
  QUEUE_PREFIX: z
    .string()
    .regex(/^[A-Za-z0-9{}_.-]+$/, "letters, digits, {}, _, . and - only")
    .default("{openledger}"),
  /** The most /readyz waits for one dependency's probe. A dependency known to be down (Redis
   *  disconnected, the chain's circuit open, a probe still hanging) is reported at once. */
  READY_TIMEOUT_MS: z.coerce.number().int().min(50).max(30_000).default(500),
  /** Run this service's queue workers in the same process (false = HTTP only). */
  RUN_WORKERS: boolFlag(true),
  /** Stop gracefully when standard input closes; the `npm start` supervisor sets it so
   *  that services never outlive it. */
  EXIT_WITH_STDIN: boolFlag(false),
  /** JSON-RPC endpoint of the EVM chain (a local Hardhat node in development). */
  CHAIN_RPC_URL: z.string().url().default("http://127.0.0.1:8545"),
  /** The most a request waits on the chain, ms: every chain read on a request path (balances, stakes,
   *  signatures, claims) is abandoned after it — 503 CHAIN_UNAVAILABLE, or a bounded fallback such as
   *  the gateway's cached balance — and while the chain keeps not answering, reads fail at once. */
  CHAIN_REQUEST_TIMEOUT_MS: z.coerce.number().int().min(50).max(60_000).default(2500),
  /** Bound of one RPC request of background work (transactions, receipts, epoch posts), ms. */
  CHAIN_RPC_TIMEOUT_MS: z.coerce.number().int().min(100).max(600_000).default(20_000),
  /** Contract addresses written by the deployment; default `.data/chain/addresses.<chainId>.json`. */
  CHAIN_ADDRESSES_FILE: z.string().min(1).optional(),
  /** `dev`: a key a service needs but was not given is the local deployment's well-known Hardhat
   *  account for that role (operator #1, settler #2, validators #5-7), and only on a local chain
   *  (31337/1337). `production`: every key must be configured; nothing falls back. `npm start`,
   *  the demo and the tests set `dev` explicitly. */
  CHAIN_PROFILE: z.enum(["dev", "production"]).default("production"),
});

export type BaseConfig = z.output<typeof baseEnv>;

export const datanetsEnv = baseEnv.extend({
  /** HTTP port of the datanets service. */
  DATANETS_PORT: port(4001),
  /** SIWE: the `domain` (host[:port]) sign-in messages must name; anything else is refused. */
  DATANETS_SIWE_DOMAIN: z.string().min(1).default("localhost:4001"),
  /** SIWE: seconds a server nonce stays valid (single-use). */
  DATANETS_NONCE_TTL_SECONDS: z.coerce.number().int().min(10).max(3600).default(300),
  /** Seconds a session token (issued by POST /v1/auth/verify) stays valid. */
  DATANETS_SESSION_TTL_SECONDS: z.coerce
    .number()
    .int()
    .min(60)
    .max(7 * 86400)
    .default(3600),
  /** Operator key (PUBLISHER_ROLE on DatanetRegistry, SLASHER_ROLE on Staking). Empty on chain 31337 =
   *  Hardhat's well-known account #1 (the local deployment's operator); required on any other chain. */
  DATANETS_OPERATOR_PRIVATE_KEY: z.preprocess(
    (v) => (v === "" ? undefined : v),
    z
      .string()
      .regex(/^0x[0-9a-fA-F]{64}$/, "0x + 64 hex digits")
      .optional(),
  ),
  /** Largest uploaded file, in bytes (413 above it). */
  DATANETS_MAX_FILE_BYTES: z.coerce
    .number()
    .int()
    .min(1024)
    .default(32 * 1024 * 1024),
  /** Near-duplicate threshold (estimated Jaccard of word-2 shingles) used by the validator. */
  DATANETS_NEAR_DUPLICATE_THRESHOLD: z.coerce.number().gt(0).max(1).default(0.5),
  /** Seconds the accused has to dispute a slashing proposal before it can be executed. */
  DATANETS_DISPUTE_WINDOW_SECONDS: z.coerce
    .number()
    .int()
    .min(0)
    .default(3 * 86400),
  /** Share of the contributor's active stake a slashing proposal asks for, in basis points. */
  DATANETS_SLASH_BPS: z.coerce.number().int().min(1).max(10_000).default(1000),
  /** Every this many ms the worker re-enqueues contributions left pending (lost enqueue) and
   *  executes slashing proposals whose dispute window is over; 0 disables the sweeper. */
  DATANETS_SWEEP_INTERVAL_MS: z.coerce.number().int().min(0).default(30_000),
  /** Memory budget of the per-datanet dedupe indexes kept between jobs (~430 bytes per accepted
   *  row); least recently used ones beyond it are dropped and rebuilt from Postgres when needed. */
  DATANETS_INDEX_CACHE_BYTES: z.coerce
    .number()
    .int()
    .min(0)
    .default(2 * 1024 * 1024 * 1024),
});
export type DatanetsConfig = z.output<typeof datanetsEnv>;

export const attributionEnv = baseEnv.extend({
  /** HTTP port of the attribution service. */
  ATTRIBUTION_PORT: port(4002),
  /** Directory of the content-addressed blob store (span indexes, influence models, ONNX). */
  ATTRIBUTION_BLOB_DIR: z.string().min(1).default(".data/blobs"),
  /** Tokenizer of the served model: the path of a model directory holding tokenizer.json (relative =
   *  the repository root; default: the platform's default base model) or "byte" (the built-in tiny
   *  model: UTF-8 bytes). Indexes and outputs must use the same one. */
  ATTRIBUTION_TOKENIZER: z.string().min(1).default(DEFAULT_BASE_MODEL_DIR),
  /** Span attribution: minimum span length in tokens (bytes with the byte tokenizer). */
  ATTRIBUTION_MIN_SPAN_TOKENS: z.coerce.number().int().min(1).max(4096).default(16),
  /** Span attribution: spans occurring more often than this in the corpus are not evidence. */
  ATTRIBUTION_MAX_SPAN_COUNT: z.coerce.number().int().min(1).max(1_000_000).default(100),
  /** LoRA influence: base model directories this validator can load, comma-separated, beside the served
   *  model's (ATTRIBUTION_TOKENIZER when it names a directory). An adapter's lineage names its base model by
   *  the SHA-256 of model.safetensors; the directory with that hash is used (none: the adapter's answers are
   *  attributed by spans only). Default: the generated tiny model's directory. */
  ATTRIBUTION_MODEL_DIRS: z.string().min(1).default(TINY_MODEL_DIR),
  /** LoRA influence: where this validator gets an adapter's files (the weights the answer's gradient needs).
   *  `dir` (default; one machine): ATTRIBUTION_ADAPTER_DIR, the gateway's own store on a shared disk. A gateway
   *  URL (http(s)://…; independent validators): fetched from its GET /v1/adapter-files/{hash}/{file}, signed by
   *  this process's validator key (the gateway serves active validators only), checked against the registered
   *  content hash before use and kept in `<ATTRIBUTION_BLOB_DIR>/adapters/<content hash>/`. Several gateway
   *  replicas: their URLs comma-separated, tried in order (an adapter's files live on the replica it was
   *  uploaded to: absent only when every replica answers 404). */
  ATTRIBUTION_ADAPTER_SOURCE: z
    .string()
    .transform((v) =>
      v
        .split(",")
        .map((u) => u.trim().replace(/\/+$/, ""))
        .join(","),
    )
    .refine((v) => v === "dir" || v.split(",").every((u) => /^https?:\/\/[^/]/.test(u)), {
      message: '"dir", or the gateway\'s http:// or https:// URL (several replicas: comma-separated)',
    })
    .default("dir"),
  /** LoRA influence with ATTRIBUTION_ADAPTER_SOURCE=dir: root of the gateway's content-addressed adapter store
   *  (`<dir>/adapters/<content hash>/`), read-only: its GATEWAY_DATA_DIR on a shared disk. Files are checked
   *  against the registered content hash. */
  ATTRIBUTION_ADAPTER_DIR: z.string().min(1).default(".data/gateway"),
  /** LoRA influence from a gateway URL: the most bytes one adapter's two files may have; a fetch stops (and
   *  keeps nothing) past it. The gateway's own upload limit (GATEWAY_ADAPTER_MAX_BYTES) by default. */
  ATTRIBUTION_ADAPTER_MAX_BYTES: z.coerce
    .number()
    .int()
    .min(1024)
    .default(512 * 1024 * 1024),
  /** LoRA influence from a gateway URL: the most bytes the fetched adapters in `<ATTRIBUTION_BLOB_DIR>/adapters/`
   *  may hold together; past it the least recently used ones are removed (fetched and checked again when next
   *  needed). 4 GiB: eight adapters at the largest ATTRIBUTION_ADAPTER_MAX_BYTES, hundreds of typical ones. */
  ATTRIBUTION_ADAPTER_CACHE_BYTES: z.coerce
    .number()
    .int()
    .min(0)
    .default(4 * 1024 * 1024 * 1024),
  /** Jobs of the attribution queue (scores, index builds) this process runs at once. A score waits
   *  on Postgres and the chain most of its time; an index build runs in its own worker thread. */
  ATTRIBUTION_WORKER_CONCURRENCY: z.coerce.number().int().min(1).max(256).default(4),
  /** How often this validator looks for recent inferences it has not attributed yet (ms; 0 = never). */
  ATTRIBUTION_VALIDATOR_SCAN_MS: z.coerce.number().int().min(0).max(600_000).default(1_000),
  /** Commit-reveal: a validator reveals its result once every active validator has committed to one, or once
   *  a quorum has and this long has passed since its own commitment (ms). A validator that commits later than
   *  the first reveal is not counted for that inference. */
  ATTRIBUTION_REVEAL_WAIT_MS: z.coerce.number().int().min(0).max(600_000).default(2_000),
  /** How often this validator looks for closed epochs to recount and attest (ms; 0 = never). */
  ATTRIBUTION_EPOCH_ATTEST_INTERVAL_MS: z.coerce.number().int().min(0).max(600_000).default(1_000),
  /** Disputes (at the epoch attest interval): sign ValidatorDisputes' AttributionDispute against every validator
   *  that signed a result other than the quorum's when this validator's own result is the quorum's, and file
   *  `fileDispute` once enough active validators signed. false = sign and file nothing. */
  ATTRIBUTION_AUTO_DISPUTE: boolFlag(true),
  /** Validator keys, comma-separated (0x + 64 hex each); each signs as its own validator. Empty on
   *  chain 31337 = the local deployment's three validators (Hardhat accounts #5-7); never logged. */
  /** Bearer token of the platform's own callers (the gateway fetching small models' ONNX, operators, `npm start`
   *  generates one) on the routes that cost CPU or give a paid model away: POST /v1/attribute, POST /v1/indexes,
   *  GET …/influence/onnx. An account's gateway API key works there too; the other reads stay public.
   *  Required when HOST is not loopback. */
  ATTRIBUTION_SERVICE_TOKEN: z.preprocess((v) => (v === "" ? undefined : v), z.string().min(16).optional()),
  VALIDATOR_PRIVATE_KEYS: z.preprocess(
    (v) => (v === "" ? undefined : v),
    z
      .string()
      .regex(/^0x[0-9a-fA-F]{64}(,0x[0-9a-fA-F]{64})*$/, "comma-separated 0x + 64 hex digits")
      .optional(),
  ),
});
export type AttributionConfig = z.output<typeof attributionEnv>;

const optionalString = z.preprocess((v) => (v === "" ? undefined : v), z.string().min(1).optional());

export const gatewayEnv = baseEnv.extend({
  /** HTTP port of the OpenLoRA gateway. */
  GATEWAY_PORT: port(4003),
  /** Base model directory (config.json + model.safetensors [+ tokenizer.json]; any Hugging Face
   *  Llama-family checkpoint). Empty = the platform's default base model, `models/openledger-moby`
   *  (pretrained on Moby-Dick by scripts/pretrain-base.ts); "tiny" = the built-in tiny random
   *  byte-level model, generated into `<repo>/.data/models/tiny` (tests). */
  GATEWAY_MODEL_DIR: optionalString,
  /** The id clients pass as `model` to use the base model without an adapter. */
  GATEWAY_BASE_MODEL_ID: z
    .string()
    .regex(/^[A-Za-z0-9._:/-]{1,128}$/)
    .default(DEFAULT_BASE_MODEL_ID),
  /** Where uploaded adapters are stored, content-addressed (`<dir>/adapters/<sha256>/`). */
  GATEWAY_DATA_DIR: z.string().min(1).default(".data/gateway"),
  /** Operator key (REGISTRAR_ROLE on ModelRegistry) registering adapters for their builders.
   *  Empty with CHAIN_PROFILE=dev = the local deployment's operator (Hardhat account #1); required
   *  otherwise (registrations stay pending, naming this variable). */
  GATEWAY_OPERATOR_PRIVATE_KEY: z.preprocess(
    (v) => (v === "" ? undefined : v),
    z
      .string()
      .regex(/^0x[0-9a-fA-F]{64}$/, "0x + 64 hex digits")
      .optional(),
  ),
  /** Register uploaded adapters on-chain in ModelRegistry (false: Postgres only, e.g. benchmarks). */
  GATEWAY_CHAIN_REGISTRATION: boolFlag(true),
  /** Device adapter slots of the runtime, slot 0 (no adapter) included. */
  GATEWAY_SLOTS: z.coerce.number().int().min(2).max(1024).default(65),
  /** Slot rank: adapters of a larger rank are refused at upload. */
  GATEWAY_MAX_ADAPTER_RANK: z.coerce.number().int().min(1).max(256).default(16),
  /** Adapter loads (disk -> RAM) in flight at once; cold adapters' requests wait on them. */
  GATEWAY_MAX_CONCURRENT_LOADS: z.coerce.number().int().min(1).max(64).default(6),
  /** Keep each adapter in the runtime's slot layout beside its files (written when it is first
   *  decoded: at upload, or its first load), so a cold load is one read instead of a decode
   *  (~4x less CPU for a rank-16 SmolLM adapter; disk: the adapter in f32, ~7.4 MB for that one).
   *  false: decode the PEFT files at every cold load and write nothing. */
  GATEWAY_ADAPTER_SLOT_FILES: boolFlag(true),
  /** Save the RAM tier's adapters (<GATEWAY_DATA_DIR>/hot-adapters.json) and load them back in the
   *  background after a restart, at the lowest load priority and only while the RAM budget has room. */
  GATEWAY_HOT_SET: boolFlag(true),
  /** How often the hot set is saved (also on close), ms. */
  GATEWAY_HOT_SET_SAVE_MS: z.coerce.number().int().min(1000).default(60_000),
  /** RAM budget of decoded adapters, bytes (LRU beyond it). */
  GATEWAY_ADAPTER_RAM_BYTES: z.coerce
    .number()
    .int()
    .min(1)
    .default(512 * 1024 * 1024),
  /** Tokens per engine step (prefill chunks + decode rows, padded). */
  GATEWAY_MAX_BATCH_TOKENS: z.coerce.number().int().min(1).default(512),
  /** Prompt tokens per engine step (padded, prefill rows only; 0 = GATEWAY_MAX_BATCH_TOKENS): the
   *  chunked-prefill budget. Long prompts are split into chunks of at most this and bursts of
   *  arrivals over several steps, so no prefill step is long (serving-core's maxPrefillTokens). */
  GATEWAY_MAX_PREFILL_TOKENS: z.coerce.number().int().min(0).default(0),
  /** Sequences decoding at once. */
  GATEWAY_MAX_RUNNING: z.coerce.number().int().min(1).default(64),
  /** Prefill steps: "separate" (own steps, alternating with decode steps: arrivals share a prefill
   *  run; a request held back by its adapter's load rides the next decode step) or "mixed" beside the decode rows (admitted at every step: one step less to the first
   *  token, a second session run in each step with arrivals; best for the tiny model). */
  GATEWAY_PREFILL_MODE: z.enum(["separate", "mixed"]).default("separate"),
  /** Longest prompt accepted, tokens (400 above it). */
  GATEWAY_MAX_PROMPT_TOKENS: z.coerce.number().int().min(1).default(512),
  /** Largest max_tokens accepted (400 above it). */
  GATEWAY_MAX_NEW_TOKENS: z.coerce.number().int().min(1).default(256),
  /** onnxruntime intra-op threads (0 = all cores). */
  GATEWAY_THREADS: z.coerce.number().int().min(0).default(0),
  /** Base weights as served: "f32" as loaded, "int8" / "int4" blockwise-quantized from them at start-up,
   *  or "int8c" (int8, one scale per output channel, onnxruntime's integer GEMM: the fastest at batch 1).
   *  Quantized weights are faster and smaller at batch 1; speed and quality in bench/RESULTS.md, "Peers". */
  GATEWAY_WEIGHTS: z.enum(["f32", "int8", "int4", "int8c"]).default("f32"),
  /** Per-account request rate: bucket size and refill per minute (0 = unlimited). */
  GATEWAY_RATE_REQUESTS_PER_MIN: z.coerce.number().int().min(0).default(600),
  /** How long an on-chain escrow balance read is reused, ms. */
  GATEWAY_BALANCE_CACHE_MS: z.coerce.number().int().min(0).default(2000),
  /** When the chain does not answer (CHAIN_REQUEST_TIMEOUT_MS), admit on a balance read no longer ago
   *  than this, ms (never more than half the escrow's withdrawal delay: see apps/gateway/README.md);
   *  /readyz says degraded meanwhile, and unready once the chain has been away longer. */
  GATEWAY_BALANCE_STALE_MS: z.coerce.number().int().min(0).default(60_000),
  /** How long the active validator set (who may fetch adapter files) is reused, ms: a removed validator
   *  loses access, and an admitted one gains it, within this. Re-read sooner only when a block was mined. */
  GATEWAY_VALIDATOR_SET_CACHE_MS: z.coerce.number().int().min(0).default(10_000),
  /** Prices of the base model, wei of OPEN per 1,000 input / output tokens. */
  GATEWAY_BASE_PRICE_IN_PER_THOUSAND_WEI: z
    .string()
    .regex(/^\d{1,60}$/)
    .default("1000000000000000"),
  GATEWAY_BASE_PRICE_OUT_PER_THOUSAND_WEI: z
    .string()
    .regex(/^\d{1,60}$/)
    .default("2000000000000000"),
  /** Interval of the outbox sweeper re-enqueueing `inference.completed` jobs, ms. */
  GATEWAY_OUTBOX_SWEEP_MS: z.coerce.number().int().min(100).default(10_000),
  /** This replica's identity in Postgres (its in-flight requests, released when it restarts). Must
   *  be stable across restarts and unique among live replicas. Empty = host name + port + data dir. */
  GATEWAY_REPLICA_ID: optionalString,
  /** Largest adapter upload, bytes, counted after decompression (every entry of an archive): an
   *  upload stops with 413 the moment it passes this, so a decompression bomb is never expanded. */
  GATEWAY_ADAPTER_MAX_BYTES: z.coerce
    .number()
    .int()
    .min(1024)
    .default(512 * 1024 * 1024),
  /** Active adapters one account may have at once (403 ADAPTER_QUOTA_EXCEEDED beyond it). */
  GATEWAY_ADAPTER_QUOTA_COUNT: z.coerce.number().int().min(1).default(100),
  /** Total bytes of one account's active adapters (403 ADAPTER_QUOTA_EXCEEDED beyond it). */
  GATEWAY_ADAPTER_QUOTA_BYTES: z.coerce
    .number()
    .int()
    .min(1024)
    .default(10 * 1024 * 1024 * 1024),
  /** Base URL of the attribution service: small models are served from the ONNX export of a
   *  datanet version's influence model, fetched from there once per gateway node (hash-checked). */
  GATEWAY_ATTRIBUTION_URL: z.string().url().default("http://127.0.0.1:4002"),
  /** The attribution service's ATTRIBUTION_SERVICE_TOKEN, sent when fetching small models' ONNX graphs
   *  (without it they cannot be served). Required when HOST is not loopback. */
  GATEWAY_ATTRIBUTION_TOKEN: z.preprocess((v) => (v === "" ? undefined : v), z.string().min(16).optional()),
});
export type GatewayConfig = z.output<typeof gatewayEnv>;

const settlementKey = z.preprocess(
  (v) => (v === "" ? undefined : v),
  z
    .string()
    .regex(/^0x[0-9a-fA-F]{64}$/, "0x + 64 hex digits")
    .optional(),
);

export const settlementEnv = baseEnv.extend({
  /** HTTP port of the settlement service. */
  SETTLEMENT_PORT: port(4004),
  /** Treasury address credited in the ledger and paid through the distributor. Empty on chain 31337 =
   *  the local deployment's treasury (Hardhat account #3); required on any other chain. */
  SETTLEMENT_TREASURY_ADDRESS: z.preprocess(
    (v) => (v === "" ? undefined : v),
    z
      .string()
      .regex(/^0x[0-9a-fA-F]{40}$/, "0x + 40 hex digits")
      .optional(),
  ),
  /** Key holding SETTLER_ROLE on InferenceEscrow; also relays postEpoch. Empty on chain 31337 = Hardhat
   *  account #2 (the local settlement account); required on any other chain. Never logged. */
  SETTLEMENT_SETTLER_PRIVATE_KEY: settlementKey,
  /** How long one epoch tick waits for the validator processes' root attestations (ms) before it leaves
   *  the epoch closed for the next tick. Settlement holds no validator key: validators sign roots. */
  SETTLEMENT_ATTESTATION_WAIT_MS: z.coerce.number().int().min(0).max(600_000).default(15_000),
  /** After this long without a quorum an inference settles with the no-attribution policy. */
  SETTLEMENT_ATTRIBUTION_DEADLINE_MS: z.coerce
    .number()
    .int()
    .min(0)
    .default(10 * 60_000),
  /** Delay between re-checks of an inference still waiting for its attribution quorum. */
  SETTLEMENT_RECHECK_MS: z.coerce.number().int().min(10).default(5_000),
  /** Close an epoch every this many ms (when it has settlements); 0 = only by size or by the API. */
  SETTLEMENT_EPOCH_INTERVAL_MS: z.coerce
    .number()
    .int()
    .min(0)
    .default(5 * 60_000),
  /** How long POST /v1/epochs/close waits for the epoch it drives, ms; past it the call answers 202
   *  and the epoch goes on in the background (a slow chain never holds the caller longer). */
  SETTLEMENT_EPOCH_CLOSE_WAIT_MS: z.coerce.number().int().min(0).default(30_000),
  /** Close an epoch as soon as this many settlements wait for one. */
  SETTLEMENT_EPOCH_MAX_SETTLEMENTS: z.coerce.number().int().min(1).default(10_000),
  /** Largest number of inferences written in one ledger transaction by the batching worker. */
  SETTLEMENT_BATCH_MAX: z.coerce.number().int().min(1).max(10_000).default(500),
  /** `inference.completed` jobs taken at once by this process (they meet in the group commit). */
  SETTLEMENT_WORKER_CONCURRENCY: z.coerce.number().int().min(1).max(4096).default(256),
  /** The write-off rule: fees the escrow has not covered for this long (ms) may be written off by an
   *  operator (POST /v1/writeoffs, with a reason); never automatically. */
  SETTLEMENT_WRITEOFF_AFTER_MS: z.coerce
    .number()
    .int()
    .min(0)
    .default(7 * 86_400_000),
  /** Bearer token for the admin routes (POST /v1/epochs/close, /v1/reconcile, /v1/writeoffs, ...); empty = disabled. */
  SETTLEMENT_ADMIN_TOKEN: z.preprocess((v) => (v === "" ? undefined : v), z.string().min(16).optional()),
});
// (The fee split is not configuration: governance sets it on chain, RewardDistributor.feeSplit().)
export type SettlementConfig = z.output<typeof settlementEnv>;

const serviceUrl = (fallback: string) =>
  z
    .string()
    .url()
    .refine((v) => v.startsWith("http://") || v.startsWith("https://"), {
      message: "must be an http:// or https:// URL",
    })
    .transform((v) => v.replace(/\/+$/, ""))
    .default(fallback);

/** The explorer: a web app (apps/explorer) that reads the other services' public APIs. */
export const explorerEnv = baseEnv.extend({
  /** HTTP port of the explorer (its pages and the read-only API paths it forwards). */
  EXPLORER_PORT: port(4005),
  /** Base URL of the datanets service, as the explorer's server reaches it. */
  EXPLORER_DATANETS_URL: serviceUrl("http://127.0.0.1:4001"),
  /** Base URL of the attribution service. */
  EXPLORER_ATTRIBUTION_URL: serviceUrl("http://127.0.0.1:4002"),
  /** Base URL of the gateway. */
  EXPLORER_GATEWAY_URL: serviceUrl("http://127.0.0.1:4003"),
  /** Base URL of the settlement service. */
  EXPLORER_SETTLEMENT_URL: serviceUrl("http://127.0.0.1:4004"),
  /** Folder of the built web app (`npm run build -w @openledger/explorer`); default apps/explorer/dist. */
  EXPLORER_STATIC_DIR: optionalString,
});
export type ExplorerConfig = z.output<typeof explorerEnv>;
const weiString = z.string().regex(/^\d{1,60}$/, "a decimal string of wei");

export const factoryEnv = baseEnv.extend({
  /** HTTP port of the factory (fine-tuning jobs). */
  FACTORY_PORT: port(4006),
  /** Base model directory the factory trains adapters of (config.json + model.safetensors [+ tokenizer.json]).
   *  Empty = the platform's default base model, the same one the gateway serves by default ("tiny": the
   *  built-in tiny model, as GATEWAY_MODEL_DIR=tiny). Jobs are refused
   *  when its weights are not the ones the gateway serves (SHA-256 of model.safetensors). */
  FACTORY_MODEL_DIR: optionalString,
  /** The gateway that registers and serves the adapters (its existing upload path) and holds the escrow. */
  FACTORY_GATEWAY_URL: z.string().url().default("http://127.0.0.1:4003"),
  /** Job working directories: the training data, checkpoints and the finished adapter (relative = repo root). */
  FACTORY_DATA_DIR: z.string().min(1).default(".data/factory"),
  /** Price of training, wei of OPEN per 1,000 trained tokens (label tokens, every epoch), paid from the
   *  builder's InferenceEscrow deposit to the datanets' contributors by their trained tokens. */
  FACTORY_PRICE_PER_THOUSAND_TRAINED_TOKENS_WEI: weiString.default("500000000000000"),
  /** Default prices of a fine-tuned adapter (a job may set its own), wei per 1,000 input / output tokens. */
  FACTORY_ADAPTER_PRICE_IN_PER_THOUSAND_WEI: weiString.default("1000000000000000"),
  FACTORY_ADAPTER_PRICE_OUT_PER_THOUSAND_WEI: weiString.default("2000000000000000"),
  /** Fine-tuning jobs this process trains at once (each in its own child process). */
  FACTORY_WORKER_CONCURRENCY: z.coerce.number().int().min(1).max(16).default(1),
  /** onnxruntime threads of one training process (stored with the job: a resume must use the same
   *  count to stay bit-identical). */
  FACTORY_TRAIN_THREADS: z.coerce.number().int().min(1).max(64).default(2),
  /** Save a checkpoint every this many steps (a cancelled or crashed run resumes from the last one). */
  FACTORY_CHECKPOINT_EVERY_STEPS: z.coerce.number().int().min(1).default(25),
  /** Longest job accepted, in optimizer steps (400 above it). */
  FACTORY_MAX_STEPS: z.coerce.number().int().min(1).default(20_000),
  /** How long the escrow hold of a job lasts (its grant's expiry): a job not finished by then fails. */
  FACTORY_JOB_TTL_HOURS: z.coerce
    .number()
    .int()
    .min(1)
    .max(24 * 30)
    .default(48),
  /** How often jobs whose runner went away (a crash, a shutdown) are resumed, ms. */
  FACTORY_RESUME_SWEEP_MS: z.coerce.number().int().min(100).default(15_000),
});
export type FactoryConfig = z.output<typeof factoryEnv>;

/** The `npm start` supervisor. */
export const platformEnv = baseEnv.extend({
  /** Start (and deploy to) a local Hardhat node when nothing answers at CHAIN_RPC_URL. */
  LOCAL_CHAIN: boolFlag(true),
  /** Unset: `dev` for the services when the chain is a local one (31337/1337), else `production`. */
  CHAIN_PROFILE: z.enum(["dev", "production"]).optional(),
  /** The services the supervisor runs, comma-separated (default all five and the explorer). */
  PLATFORM_SERVICES: z
    .string()
    .default("datanets,attribution,gateway,settlement,factory,explorer")
    .transform((v) => v.split(",").map((s) => s.trim()))
    .pipe(
      z.array(z.enum(["datanets", "attribution", "gateway", "settlement", "factory", "explorer"])).min(1),
    ),
  /** A crashed service is restarted after this long, doubled after each crash up to
   *  PLATFORM_RESTART_MAX_MS, and back to this once it has stayed up for a minute. */
  PLATFORM_RESTART_MS: z.coerce.number().int().min(0).default(1000),
  PLATFORM_RESTART_MAX_MS: z.coerce.number().int().min(0).default(30_000),
  /** Ports of the further local validator processes (#2, #3 on the dev chain), comma-separated. Empty:
   *  ATTRIBUTION_PORT + 10 and + 20. Tests and drills give free ports here, so nothing collides. */
  PLATFORM_VALIDATOR_PORTS: z
    .string()
    .default("")
    .transform((v) =>
      v
        .split(",")
        .map((s) => s.trim())
        .filter(Boolean)
        .map(Number),
    )
    .pipe(z.array(z.number().int().min(1).max(65535))),
});
export type PlatformConfig = z.output<typeof platformEnv>;

/** Every service's schema by name; docker-compose and .env.example are checked against these. */
export const SERVICE_ENVS = {
  datanets: datanetsEnv,
  attribution: attributionEnv,
  gateway: gatewayEnv,
  settlement: settlementEnv,
  explorer: explorerEnv,
  factory: factoryEnv,
} as const;
export type ServiceName = keyof typeof SERVICE_ENVS;

/**
 * Variables a service must have set before it listens on a HOST that is not loopback: service-kit's
 * `buildService` refuses to start without them (`assertSafeExposure`), and docker-compose.yml (whose
 * containers bind 0.0.0.0) requires them. On 127.0.0.1 (`npm start`, tests) they may stay unset.
 */
export const EXPOSED_REQUIRES: {
  readonly [S in ServiceName]: readonly {
    readonly variable: keyof z.output<(typeof SERVICE_ENVS)[S]> & string;
    /** What it protects, for the refusal's message. */
    readonly guards: string;
  }[];
} = {
  datanets: [],
  attribution: [
    {
      variable: "ATTRIBUTION_SERVICE_TOKEN",
      guards: "the platform's own calls to POST /v1/attribute, POST /v1/indexes and GET …/influence/onnx",
    },
  ],
  gateway: [
    {
      variable: "GATEWAY_ATTRIBUTION_TOKEN",
      guards:
        "serving small models (the attribution service gives their ONNX graphs to its token's holders only)",
    },
  ],
  settlement: [
    {
      variable: "SETTLEMENT_ADMIN_TOKEN",
      guards: "the operator's routes (POST /v1/writeoffs, /v1/epochs/close, /v1/reconcile, …)",
    },
  ],
  explorer: [],
  factory: [],
};
