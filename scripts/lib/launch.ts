// Starts the whole platform for a test: a local chain (contracts deployed), a migrated
// Postgres schema and a Redis prefix of its own, and the five services as child processes
// on free ports (what `npm start` does, but each service can be killed and restarted).
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { type LocalChain, startLocalChain } from "@openledger/chain/testing";
import { createTestDatabase, type TestDatabase } from "@openledger/db/testing";
import { deletePrefix, uniquePrefix } from "@openledger/queue/testing";
import { freePort } from "@openledger/service-kit/testing";
import type { StoryPlatform } from "./story.ts";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");

/**
 * The processes: the five services, and two more validators. Each validator is its own attribution process
 * with one key (Hardhat #5 in `attribution`, #6 and #7 in `validator-2` and `validator-3`): it attributes every
 * inference itself and attests epoch roots; settlement holds no validator key.
 */
export const SERVICE_NAMES = [
  "datanets",
  "attribution",
  "validator-2",
  "validator-3",
  "gateway",
  "settlement",
  "factory",
] as const;
export type Service = (typeof SERVICE_NAMES)[number];
/** The attribution processes, one per validator key (index = the local deployment's validator). */
export const VALIDATOR_PROCESSES = [
  "attribution",
  "validator-2",
  "validator-3",
] as const satisfies readonly Service[];
const APP_DIR: Record<Service, string> = {
  datanets: "datanets",
  attribution: "attribution",
  "validator-2": "attribution",
  "validator-3": "attribution",
  gateway: "gateway",
  settlement: "settlement",
  factory: "factory",
};

export interface LaunchedPlatform {
  platform: StoryPlatform;
  chain: LocalChain;
  database: TestDatabase;
  prefix: string;
  env: Record<string, string>;
  /** SIGKILL (default) or SIGTERM a service and wait until it has exited. */
  kill(name: Service, signal?: NodeJS.Signals): Promise<void>;
  /** Start a service again (after kill) and wait for /readyz. */
  start(name: Service): Promise<void>;
  /** Recent output of a service (for failure messages). */
  output(name: Service): string;
  stop(): Promise<void>;
}

export async function launchPlatform(extraEnv: Record<string, string> = {}): Promise<LaunchedPlatform> {
  const dir = await mkdtemp(path.join(tmpdir(), "openledger-e2e-"));
  const addressesFile = path.join(dir, "addresses.json");
  const [chain, database] = await Promise.all([
    startLocalChain({ writeAddresses: addressesFile }),
    createTestDatabase("e2e"),
  ]);
  const prefix = uniquePrefix("e2e");
  const ports: Record<Service, number> = {
    datanets: await freePort(),
    attribution: await freePort(),
    "validator-2": await freePort(),
    "validator-3": await freePort(),
    gateway: await freePort(),
    settlement: await freePort(),
    factory: await freePort(),
  };
  const adminToken = "e2e-settlement-admin-token";
  const attributionToken = "e2e-attribution-service-token";
  const env: Record<string, string> = {
    LOG_LEVEL: "warn",
    DATABASE_URL: database.url,
    QUEUE_PREFIX: prefix,
    CHAIN_RPC_URL: chain.rpcUrl,
    CHAIN_ADDRESSES_FILE: addressesFile,
    DATANETS_PORT: String(ports.datanets),
    ATTRIBUTION_PORT: String(ports.attribution),
    GATEWAY_PORT: String(ports.gateway),
    SETTLEMENT_PORT: String(ports.settlement),
    FACTORY_PORT: String(ports.factory),
    ATTRIBUTION_BLOB_DIR: path.join(dir, "blobs"),
    GATEWAY_DATA_DIR: path.join(dir, "gateway"),
    // Validator #1 reads factory-trained adapters from the gateway's content-addressed store (LoRA influence);
    // #2 and #3 fetch them from the gateway (ownEnv).
    ATTRIBUTION_ADAPTER_DIR: path.join(dir, "gateway"),
    GATEWAY_THREADS: "1",
    GATEWAY_SLOTS: "4",
    GATEWAY_BALANCE_CACHE_MS: "0",
    GATEWAY_OUTBOX_SWEEP_MS: "1000",
    GATEWAY_ATTRIBUTION_URL: `http://127.0.0.1:${ports.attribution}`,
    ATTRIBUTION_SERVICE_TOKEN: attributionToken,
    GATEWAY_ATTRIBUTION_TOKEN: attributionToken,
    FACTORY_GATEWAY_URL: `http://127.0.0.1:${ports.gateway}`,
    FACTORY_DATA_DIR: path.join(dir, "factory"),
    // One thread: the run is bit-identical wherever it runs (the thread count is part of a job).
    FACTORY_TRAIN_THREADS: "1",
    SETTLEMENT_ADMIN_TOKEN: adminToken,
    SETTLEMENT_EPOCH_INTERVAL_MS: "0",
    SETTLEMENT_RECHECK_MS: "300",
    // Past this, settlement settles a completed inference it has no quorum for as unattributed. LoRA
    // influence (a fine-tuned adapter's answer with no span) rebuilds its rows' gradients on the default
    // base model first: under a loaded CI machine that took more than 20 s and the contributors' share went
    // to the treasury. Only a lost hand-off waits this long.
    SETTLEMENT_ATTRIBUTION_DEADLINE_MS: "90000",
    SETTLEMENT_EPOCH_CLOSE_WAIT_MS: "600000",
    DATANETS_DISPUTE_WINDOW_SECONDS: "2",
    DATANETS_SWEEP_INTERVAL_MS: "500",
    ATTRIBUTION_VALIDATOR_SCAN_MS: "300",
    ATTRIBUTION_EPOCH_ATTEST_INTERVAL_MS: "300",
    // A local chain with the well-known dev accounts.
    CHAIN_PROFILE: "dev",
    ...extraEnv,
  };
  const children = new Map<Service, ChildProcess>();
  const outputs = new Map<Service, string>();

  const url = (name: Service) => `http://127.0.0.1:${ports[name]}`;
  async function waitReady(name: Service, timeoutMs = 120_000) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const child = children.get(name);
      if (!child || child.exitCode !== null || child.signalCode !== null) {
        throw new Error(`${name} exited during start-up:\n${(outputs.get(name) ?? "").slice(-3000)}`);
      }
      try {
        const res = await fetch(`${url(name)}/readyz`, { signal: AbortSignal.timeout(2000) });
        if (res.status === 200) return;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline)
        throw new Error(`${name} not ready after ${timeoutMs} ms:\n${outputs.get(name)}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  /**
   * A validator process's own port and its one key. Validators #2 and #3 share no disk with the gateway:
   * they fetch adapters' files from it over HTTP (signed, checked against the content hash, kept in their
   * own blob store), and their ATTRIBUTION_ADAPTER_DIR names a directory that does not exist.
   */
  function ownEnv(name: Service): Record<string, string> {
    const i = (VALIDATOR_PROCESSES as readonly Service[]).indexOf(name);
    if (i < 0) return {};
    return {
      ATTRIBUTION_PORT: String(ports[name]),
      VALIDATOR_PRIVATE_KEYS: chain.accounts.validators[i]!.privateKey,
      ...(i > 0
        ? {
            ATTRIBUTION_ADAPTER_SOURCE: url("gateway"),
            ATTRIBUTION_ADAPTER_DIR: path.join(dir, `no-gateway-disk-${name}`),
          }
        : {}),
    };
  }
  function spawnService(name: Service) {
    const child = spawn(
      process.execPath,
      ["--import", "tsx", path.join(ROOT, "apps", APP_DIR[name], "src", "server.ts")],
      {
        cwd: ROOT,
        env: { ...process.env, ...env, ...ownEnv(name), EXIT_WITH_STDIN: "true" },
        stdio: ["pipe", "pipe", "pipe"],
      },
    );
    const keep = (d: Buffer) => {
      outputs.set(name, ((outputs.get(name) ?? "") + d.toString()).slice(-20_000));
    };
    child.stdout!.on("data", keep);
    child.stderr!.on("data", keep);
    children.set(name, child);
  }
  async function kill(name: Service, signal: NodeJS.Signals = "SIGKILL") {
    const child = children.get(name);
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    child.kill(signal);
    await exited;
  }
  async function stop() {
    await Promise.all(SERVICE_NAMES.map((n) => kill(n, "SIGTERM")));
    await chain.stop();
    await database.drop();
    await deletePrefix(prefix);
    await rm(dir, { recursive: true, force: true });
  }

  try {
    // The services first, then the further validators (a loaded machine starts fewer at once).
    const later = (n: Service) => n === "validator-2" || n === "validator-3";
    for (const group of [SERVICE_NAMES.filter((n) => !later(n)), SERVICE_NAMES.filter(later)]) {
      for (const n of group) spawnService(n);
      await Promise.all(group.map((n) => waitReady(n)));
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    platform: {
      datanetsUrl: url("datanets"),
      attributionUrl: url("attribution"),
      validatorUrls: VALIDATOR_PROCESSES.map(url),
      gatewayUrl: url("gateway"),
      settlementUrl: url("settlement"),
      factoryUrl: url("factory"),
      rpcUrl: chain.rpcUrl,
      addresses: chain.addresses!,
      settlementAdminToken: adminToken,
      attributionDeadlineMs: Number(env.SETTLEMENT_ATTRIBUTION_DEADLINE_MS),
      disputeWindowSeconds: Number(env.DATANETS_DISPUTE_WINDOW_SECONDS),
      sweepIntervalMs: Number(env.DATANETS_SWEEP_INTERVAL_MS),
    },
    chain,
    database,
    prefix,
    env,
    kill,
    async start(name) {
      spawnService(name);
      await waitReady(name);
    },
    output: (name) => outputs.get(name) ?? "",
    stop,
  };
}
