// The platform supervisor behind `npm start`: migrates the database, starts the five
// services (each with its workers) and the explorer as child processes, waits until each answers
// /readyz, prints where each listens, and stops them all on Ctrl-C / SIGTERM.
// A service that crashes is restarted with backoff while the others keep running (what
// compose's `restart: unless-stopped` does for operators); only the loss of the local
// chain node it started stops the platform, loudly: that chain's state was in memory.

import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import path from "node:path";
import { fileURLToPath } from "node:url";
import {
  defaultAddressesPath,
  devProfileNotice,
  LOCAL_CHAIN_IDS,
  loadAddresses,
  type PlatformAddresses,
  rpcChainId,
  rpcRequest,
  writeAddresses,
} from "@openledger/chain";
import { type LocalChain, localAccounts, startLocalChain } from "@openledger/chain/testing";
import { loadConfig, platformEnv, SERVICE_ENVS, type ServiceName } from "@openledger/config";
import { archiveSchema, ensureDatabase, migrate } from "@openledger/db";
import { createLogger } from "@openledger/logger";
import { LOCAL_VALIDATOR_PROCESSES, validatorPort } from "./lib/validators.ts";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const log = createLogger({ name: "platform" });

const PORT_VARS: Record<ServiceName, string> = {
  datanets: "DATANETS_PORT",
  attribution: "ATTRIBUTION_PORT",
  gateway: "GATEWAY_PORT",
  settlement: "SETTLEMENT_PORT",
  explorer: "EXPLORER_PORT",
  factory: "FACTORY_PORT",
};

const config = loadConfig("platform", platformEnv);
const SERVICES = config.PLATFORM_SERVICES.map((name) => ({ name, portVar: PORT_VARS[name] }));
/** A service that stayed up this long crashed for a new reason: its backoff starts again. */
const STABLE_AFTER_MS = 60_000;
const children = new Map<string, ChildProcess>();
const restartTimers = new Set<NodeJS.Timeout>();
let chain: LocalChain | undefined;
let stopping = false;

async function stopAll(code: number): Promise<never> {
  if (!stopping) {
    stopping = true;
    for (const timer of restartTimers) clearTimeout(timer);
    log.info("stopping services");
    await Promise.all(
      [...children.values()].map(
        (child) =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null || child.signalCode !== null) return resolve();
            const force = setTimeout(() => child.kill("SIGKILL"), 15_000);
            child.once("exit", () => {
              clearTimeout(force);
              resolve();
            });
            child.kill("SIGTERM");
          }),
      ),
    );
    await chain?.stop();
  }
  process.exit(code);
}
process.on("SIGINT", () => void stopAll(0));
process.on("SIGTERM", () => void stopAll(0));
// `npm start` (scripts/start.mjs) holds our stdin: if it is killed, stop the services too.
process.stdin.on("end", () => void stopAll(0));
process.stdin.resume();

function prefixLines(name: string, stream: NodeJS.ReadableStream, out: NodeJS.WritableStream) {
  let buffer = "";
  stream.on("data", (chunk: Buffer) => {
    buffer += chunk.toString();
    const lines = buffer.split("\n");
    buffer = lines.pop() ?? "";
    for (const line of lines) out.write(`[${name}] ${line}\n`);
  });
}

// A service that crashes at start-up is restarted (with backoff), so this deadline catches one
// that never comes up; it is generous because a loaded 2-core machine can take minutes to start
// five tsx processes, the chain and the model at once.
async function waitReady(name: string, url: string, timeoutMs = 300_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = "no answer";
  while (Date.now() < deadline) {
    if (stopping) return;
    try {
      const res = await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(2000) });
      if (res.status === 200) return;
      last = `HTTP ${res.status}: ${await res.text()}`;
    } catch (err) {
      last = err instanceof Error ? err.message : String(err);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`${name} was not ready after ${timeoutMs} ms (${last})`);
}

log.info({ database: config.DATABASE_URL.replace(/\/\/[^@]*@/, "//***@") }, "migrating the database");
await ensureDatabase(config.DATABASE_URL);
// A Hardhat node keeps its state in memory: when none answers, the one started below is a new,
// empty chain (datanet, model and epoch ids start again at 1), so rows written against an
// earlier node would contradict it (and collide with its ids). Move them aside, nothing dropped.
const existing = await chainId(config.CHAIN_RPC_URL);
if (existing === undefined && config.LOCAL_CHAIN) {
  const stamp = new Date().toISOString().replace(/\D/g, "").slice(0, 14);
  const archived = await archiveSchema(config.DATABASE_URL, `before_chain_${stamp}`);
  if (archived) {
    log.warn(
      { archivedSchema: archived },
      "a new local chain starts empty: the database's earlier rows were moved to this schema, and the platform starts clean",
    );
  }
}
const migrated = await migrate({ databaseUrl: config.DATABASE_URL, log: (m) => log.info(m) });
log.info(
  { applied: migrated.applied.length, alreadyApplied: migrated.alreadyApplied.length },
  "database up to date",
);

/** The chain: reuse a node that answers at CHAIN_RPC_URL, or start a local Hardhat node. */
async function chainId(rpcUrl: string): Promise<number | undefined> {
  return rpcChainId(rpcUrl, 2000).catch(() => undefined);
}

async function deployedAt(rpcUrl: string, addresses: PlatformAddresses): Promise<boolean> {
  const code = await rpcRequest<string | null>(rpcUrl, "eth_getCode", [
    Object.values(addresses.contracts)[0],
    "latest",
  ]);
  return (code ?? "0x") !== "0x";
}

let addressesFile: string;
if (existing === undefined) {
  const url = new URL(config.CHAIN_RPC_URL);
  if (!config.LOCAL_CHAIN || !["127.0.0.1", "localhost"].includes(url.hostname)) {
    log.error(
      { rpc: config.CHAIN_RPC_URL },
      "no chain answers at CHAIN_RPC_URL (and LOCAL_CHAIN is off or not local)",
    );
    process.exit(1);
  }
  log.info({ port: url.port }, "starting a local Hardhat node and deploying the contracts");
  const started = await startLocalChain({ port: Number(url.port || 8545), log: (line) => log.info(line) });
  chain = started;
  addressesFile = config.CHAIN_ADDRESSES_FILE ?? defaultAddressesPath(started.chainId);
  await writeAddresses(addressesFile, started.addresses!);
  // The node holds the chain in memory: once it is gone, everything the services wrote against it
  // (balances, epochs, registrations) refers to a chain that no longer exists, and a new node would
  // be a different, empty chain. Restarting services cannot help; stop everything and say why.
  void started.exited.then(({ code, signal }) => {
    if (stopping) return;
    log.fatal(
      { rpc: config.CHAIN_RPC_URL, code, signal },
      "THE LOCAL CHAIN NODE EXITED: its state was in memory and is lost. Stopping the platform. " +
        "Fees served against it can no longer be charged; the next `npm start` moves its rows aside.",
    );
    void stopAll(1);
  });
} else {
  addressesFile = config.CHAIN_ADDRESSES_FILE ?? defaultAddressesPath(existing);
  const known = await loadAddresses(addressesFile).catch(() => undefined);
  if (!known || !(await deployedAt(config.CHAIN_RPC_URL, known))) {
    log.error(
      { rpc: config.CHAIN_RPC_URL, addressesFile },
      "a chain answers but the platform is not deployed on it: run `npm run deploy -w @openledger/contracts` first",
    );
    process.exit(1);
  }
  log.info({ rpc: config.CHAIN_RPC_URL, addressesFile }, "using the running chain");
}

const notice = devProfileNotice(await loadAddresses(addressesFile));
if (notice) log.warn(notice);
// A local chain runs the local deployment, whose roles are Hardhat's public dev accounts: the
// services use them only in the dev profile, which is therefore the default here (and only here).
const servedChainId = chain?.chainId ?? existing;
const chainProfile =
  config.CHAIN_PROFILE ??
  (servedChainId !== undefined && LOCAL_CHAIN_IDS.has(servedChainId) ? "dev" : "production");
log.info({ chainId: servedChainId, profile: chainProfile }, "chain profile (CHAIN_PROFILE)");
// Services print what the terminal running `npm start` can show: pretty lines on a TTY.
const logFormat =
  config.LOG_FORMAT === "auto" ? (process.stdout.isTTY ? "pretty" : "json") : config.LOG_FORMAT;

// The gateway fetches small models' ONNX graphs from the attribution service started here.
const attributionPort = loadConfig("attribution", SERVICE_ENVS.attribution).ATTRIBUTION_PORT;
const gatewayAttributionUrl = process.env.GATEWAY_ATTRIBUTION_URL || `http://127.0.0.1:${attributionPort}`;
// ... with the attribution service's token: the operator's, or one made for this run (never printed).
const attributionToken = process.env.ATTRIBUTION_SERVICE_TOKEN || randomBytes(24).toString("hex");
const gatewayAttributionToken = process.env.GATEWAY_ATTRIBUTION_TOKEN || attributionToken;
// The explorer reads the services started here, on whatever ports they were given.
const local = (service: "datanets" | "gateway" | "settlement", portVar: string) =>
  `http://127.0.0.1:${(loadConfig(service, SERVICE_ENVS[service]) as Record<string, unknown>)[portVar] as number}`;
const explorerUrls = {
  EXPLORER_DATANETS_URL: process.env.EXPLORER_DATANETS_URL || local("datanets", "DATANETS_PORT"),
  EXPLORER_ATTRIBUTION_URL: process.env.EXPLORER_ATTRIBUTION_URL || `http://127.0.0.1:${attributionPort}`,
  EXPLORER_GATEWAY_URL: process.env.EXPLORER_GATEWAY_URL || local("gateway", "GATEWAY_PORT"),
  EXPLORER_SETTLEMENT_URL: process.env.EXPLORER_SETTLEMENT_URL || local("settlement", "SETTLEMENT_PORT"),
};
// The factory registers adapters through (and bills training with) the gateway started here.
const gatewayPort = loadConfig("gateway", SERVICE_ENVS.gateway).GATEWAY_PORT;
const localGatewayUrl = `http://127.0.0.1:${gatewayPort}`;
const factoryGatewayUrl = process.env.FACTORY_GATEWAY_URL || localGatewayUrl;

/** Starts a service; when it exits without being asked to, starts it again after its backoff. */
/** One process: a service's app, under its own name (validator processes are more attribution apps). */
interface PlatformProcess {
  name: string;
  app: ServiceName;
  portVar: string;
  /** Its own variables (a validator process: its port and its one key). */
  env?: Record<string, string>;
}

function startService(service: PlatformProcess, backoffMs: number): void {
  const startedAt = Date.now();
  const child = spawn(
    process.execPath,
    ["--import", "tsx", path.join(ROOT, "apps", service.app, "src", "server.ts")],
    {
      cwd: ROOT,
      env: {
        ...process.env,
        EXIT_WITH_STDIN: "true",
        CHAIN_ADDRESSES_FILE: addressesFile,
        CHAIN_PROFILE: chainProfile,
        LOG_FORMAT: logFormat,
        GATEWAY_ATTRIBUTION_URL: gatewayAttributionUrl,
        ATTRIBUTION_SERVICE_TOKEN: attributionToken,
        GATEWAY_ATTRIBUTION_TOKEN: gatewayAttributionToken,
        ...explorerUrls,
        FACTORY_GATEWAY_URL: factoryGatewayUrl,
        ...service.env,
      },
      stdio: ["pipe", "pipe", "pipe"],
    },
  );
  children.set(service.name, child);
  log.info({ service: service.name, pid: child.pid }, "service started");
  prefixLines(service.name, child.stdout!, process.stdout);
  prefixLines(service.name, child.stderr!, process.stderr);
  // A pipe to a child that died is not our error (its exit is handled below).
  child.stdin!.on("error", () => {});
  child.on("exit", (code, signal) => {
    if (stopping) return;
    const stable = Date.now() - startedAt >= STABLE_AFTER_MS;
    const delay = stable ? config.PLATFORM_RESTART_MS : backoffMs;
    log.error(
      { service: service.name, pid: child.pid, code, signal, restartInMs: delay },
      "a service exited; restarting it (the other services keep running)",
    );
    const timer = setTimeout(() => {
      restartTimers.delete(timer);
      if (!stopping) startService(service, Math.min(Math.max(delay, 1) * 2, config.PLATFORM_RESTART_MAX_MS));
    }, delay);
    restartTimers.add(timer);
  });
}

const urls: [string, string][] = [];
// Validators are separate operators: on the local chain the attribution service is validator #1 (Hardhat #5)
// and two more attribution processes are validators #2 and #3 (#6, #7), each with its one key, on the
// ports of PLATFORM_VALIDATOR_PORTS (default ATTRIBUTION_PORT + 10 and + 20). Elsewhere the attribution
// service signs with the operator's VALIDATOR_PRIVATE_KEYS (one key) and other validators run their own.
// Validators #2 and #3 fetch adapters' files from the gateway over HTTP, as validators on other machines
// do (ATTRIBUTION_ADAPTER_SOURCE), unless the operator chose a source.
const processes: PlatformProcess[] = SERVICES.flatMap((service): PlatformProcess[] => {
  const own = { ...service, app: service.name };
  if (service.name !== "attribution" || chainProfile !== "dev" || process.env.VALIDATOR_PRIVATE_KEYS)
    return [own];
  const keys = localAccounts().validators.map((v) => v.privateKey);
  return keys.slice(0, LOCAL_VALIDATOR_PROCESSES).map((key, i) => ({
    ...own,
    name: i === 0 ? "attribution" : `validator-${i + 1}`,
    env: {
      VALIDATOR_PRIVATE_KEYS: key,
      ATTRIBUTION_PORT: String(validatorPort(attributionPort, i, config.PLATFORM_VALIDATOR_PORTS)),
      ...(i > 0 && !process.env.ATTRIBUTION_ADAPTER_SOURCE
        ? { ATTRIBUTION_ADAPTER_SOURCE: localGatewayUrl }
        : {}),
    },
  }));
});
for (const service of processes) {
  const serviceConfig = loadConfig(service.app, SERVICE_ENVS[service.app]);
  const port = Number(
    service.env?.ATTRIBUTION_PORT ?? (serviceConfig as Record<string, unknown>)[service.portVar],
  );
  startService(service, config.PLATFORM_RESTART_MS);
  const host = config.HOST === "0.0.0.0" ? "127.0.0.1" : config.HOST;
  urls.push([service.name, `http://${host}:${port}`]);
}

try {
  await Promise.all(urls.map(([name, url]) => waitReady(name, url)));
} catch (err) {
  log.error({ err }, "the platform did not come up");
  await stopAll(1);
}

const table = [
  `  ${"chain".padEnd(12)} ${config.CHAIN_RPC_URL}   (addresses in ${path.relative(ROOT, addressesFile)})`,
  ...urls.map(([name, url]) =>
    name === "explorer"
      ? `  ${name.padEnd(12)} ${url}   (open it in a browser: datanets, traces, reward flows, claims)`
      : `  ${name.padEnd(12)} ${url}   (docs ${url}/docs, ready ${url}/readyz)`,
  ),
].join("\n");
process.stdout.write(`\nOpenLedger is up:\n${table}\n\nPress Ctrl-C to stop.\n`);
