/**
 * The load-and-fault drill (#20): the platform run on itself as an operator would, with faults.
 *
 * Starts `npm start`'s supervisor (scripts/platform.ts: its own local chain node, the four services)
 * on its own ports, with its own redis-server and its own database schema; funds several accounts in
 * the escrow; drives chat completions from all of them (streamed and not) for the whole run; and
 * injects, one after the other:
 *
 *   redis-kill          redis-server SIGKILLed, back (empty) after --outage-s
 *   service-sigkill     the settlement service SIGKILLed (the supervisor restarts it)
 *   gateway-kill-mid-stream  the gateway SIGKILLed while long streams are half delivered
 *   chain-freeze        the chain node SIGSTOPped for --freeze-s (and an epoch close asked meanwhile)
 *
 * Per fault: `servedDuring` (requests answered 200 while it lasted), `lost` (answered or streamed to
 * the client but with no inference row), `doubled` (an inference recorded, settled or entered in the
 * ledger more than once), `unbilledTokens` (tokens the client received beyond what its row bills),
 * `maxClientWaitMs` (longest wait of a request started during the fault for its answer's headers, or
 * for its failure; the epoch close too, for the chain freeze), `recoveredInSec` (from the fault's end
 * until every service says `ready` and every inference served during it is settled). The bound on
 * `maxClientWaitMs` is CHAIN_REQUEST_TIMEOUT_MS (the most a request waits on the chain) plus the p99
 * wait of the same load outside every fault window in this run (`boundMs`).
 *
 *   npm run drill -- [--json] [--concurrency 6] [--accounts 6] [--outage-s 15] [--freeze-s 20]
 *                    [--baseline-s 20] [--port-base N] [--database-url postgresql://…/db] [--keep]
 *                    [--only redis-kill,chain-freeze]
 *
 * A program like the benches, not a test (it runs for minutes); its latest output is in
 * bench/RESULTS.md. Progress goes to stderr, the JSON object (with --json) to stdout.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { createWriteStream } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { loadAddresses, OPEN } from "@openledger/chain";
import { devApiKeyRequest, type LocalChain, localAccounts } from "@openledger/chain/testing";
import { DEFAULT_BASE_MODEL_ID } from "@openledger/config";
import { createDb, withSchema } from "@openledger/db";
import { dropSchema } from "@openledger/db/testing";
import { freePort, startRedis } from "@openledger/service-kit/testing";
import { gatewayConfig } from "../apps/gateway/src/app.ts";
import { Billing } from "../apps/gateway/src/plugins/billing.ts";
import { depositToEscrow } from "../apps/gateway/src/testing.ts";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const args = process.argv.slice(2);
const arg = (name: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const JSON_OUT = args.includes("--json");
const KEEP = args.includes("--keep");
const CONCURRENCY = Number(arg("--concurrency") ?? 6);
const ACCOUNTS = Math.min(Number(arg("--accounts") ?? 6), 10);
const OUTAGE_MS = Number(arg("--outage-s") ?? 15) * 1000;
const FREEZE_MS = Number(arg("--freeze-s") ?? 20) * 1000;
const BASELINE_MS = Number(arg("--baseline-s") ?? 20) * 1000;
const PORT_BASE = arg("--port-base");
/** Run only these faults (comma-separated names); default all four. */
const ONLY = arg("--only")?.split(",");
const DATABASE = arg("--database-url") ?? "postgresql://postgres@127.0.0.1:5432/openledger_drill";
const CHAIN_REQUEST_TIMEOUT_MS = 2500;
const ADMIN_TOKEN = "drill-admin-token-0123456789";
const BASE_MODEL = DEFAULT_BASE_MODEL_ID;

const log = (line: string) => process.stderr.write(`[drill] ${line}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------- set-up

const port = async (offset: number) => (PORT_BASE ? Number(PORT_BASE) + offset : freePort());
const ports = {
  redis: await port(0),
  chain: await port(1),
  datanets: await port(2),
  attribution: await port(3),
  gateway: await port(4),
  settlement: await port(5),
  explorer: await port(6),
  factory: await port(7),
  // The further local validators (#2, #3): their own ports, not ATTRIBUTION_PORT + 10 / + 20 (which
  // may be anyone's).
  validator2: await port(8),
  validator3: await port(9),
};
const url = (s: "datanets" | "attribution" | "gateway" | "settlement") => `http://127.0.0.1:${ports[s]}`;
const work = await mkdtemp(path.join(tmpdir(), "openledger-drill-"));
const schema = `drill_${new Date().toISOString().replace(/\D/g, "").slice(0, 14)}`;
const databaseUrl = withSchema(DATABASE, schema);
const addressesFile = path.join(work, "addresses.json");
const platformLog = path.join(work, "platform.log");

let redis = await startRedis(ports.redis);
log(`redis-server on ${ports.redis}; database ${schema}; logs in ${platformLog}`);

const env: Record<string, string> = {
  ...(process.env as Record<string, string>),
  DATABASE_URL: databaseUrl,
  REDIS_URL: redis.url,
  QUEUE_PREFIX: "{drill}",
  CHAIN_RPC_URL: `http://127.0.0.1:${ports.chain}`,
  CHAIN_ADDRESSES_FILE: addressesFile,
  CHAIN_REQUEST_TIMEOUT_MS: String(CHAIN_REQUEST_TIMEOUT_MS),
  DATANETS_PORT: String(ports.datanets),
  ATTRIBUTION_PORT: String(ports.attribution),
  GATEWAY_PORT: String(ports.gateway),
  SETTLEMENT_PORT: String(ports.settlement),
  EXPLORER_PORT: String(ports.explorer),
  FACTORY_PORT: String(ports.factory),
  PLATFORM_VALIDATOR_PORTS: `${ports.validator2},${ports.validator3}`,
  LOG_LEVEL: "warn",
  LOG_FORMAT: "json",
  PLATFORM_RESTART_MS: "500",
  GATEWAY_DATA_DIR: path.join(work, "gateway"),
  GATEWAY_REPLICA_ID: "drill-gateway",
  GATEWAY_RATE_REQUESTS_PER_MIN: "0",
  GATEWAY_THREADS: "1",
  GATEWAY_MAX_NEW_TOKENS: "1000",
  GATEWAY_OUTBOX_SWEEP_MS: "3000",
  ATTRIBUTION_BLOB_DIR: path.join(work, "blobs"),
  SETTLEMENT_ADMIN_TOKEN: ADMIN_TOKEN,
  SETTLEMENT_EPOCH_INTERVAL_MS: "15000",
  // The base model has no datanet to attribute to: its inferences settle by the attribution deadline.
  SETTLEMENT_ATTRIBUTION_DEADLINE_MS: "10000",
  SETTLEMENT_RECHECK_MS: "2000",
};
delete env.CHAIN_PROFILE;
delete env.PLATFORM_SERVICES;

const logFile = createWriteStream(platformLog);
const supervisor: ChildProcess = spawn(
  process.execPath,
  ["--import", "tsx", path.join(ROOT, "scripts", "platform.ts")],
  { cwd: ROOT, env, stdio: ["pipe", "pipe", "pipe"] },
);
let supervisorOut = "";
for (const stream of [supervisor.stdout!, supervisor.stderr!]) {
  stream.on("data", (d: Buffer) => {
    logFile.write(d);
    supervisorOut = (supervisorOut + d.toString()).slice(-20_000);
  });
}
const supervisorExit = new Promise<number | null>((r) => supervisor.once("exit", (code) => r(code)));

async function cleanup(): Promise<void> {
  if (supervisor.exitCode === null && supervisor.signalCode === null) {
    const chainPid = childPids().get("chain");
    if (chainPid) {
      try {
        process.kill(chainPid, "SIGCONT");
      } catch {}
    }
    supervisor.kill("SIGTERM");
    await Promise.race([supervisorExit, sleep(30_000)]);
  }
  await redis.stop();
  if (!KEEP) {
    await dropSchema(databaseUrl).catch(() => {});
    await rm(work, { recursive: true, force: true });
  } else log(`kept: schema ${schema}, ${work}`);
}
process.on("SIGINT", () => void cleanup().then(() => process.exit(130)));

/** The supervisor's children by what they run: a service's name, or "chain". */
function childPids(): Map<string, number> {
  const found = new Map<string, number>();
  let listing = "";
  try {
    listing = execFileSync("ps", ["-o", "pid=,args=", "--ppid", String(supervisor.pid)], {
      encoding: "utf8",
    });
  } catch {
    return found;
  }
  for (const line of listing.split("\n")) {
    const m = /^\s*(\d+)\s+(.*)$/.exec(line);
    if (!m) continue;
    const service = /apps\/(\w+)\/src\/server\.ts/.exec(m[2]!)?.[1];
    if (service) found.set(service, Number(m[1]));
    else if (/hardhat.*\bnode\b/.test(m[2]!)) found.set("chain", Number(m[1]));
  }
  return found;
}

async function readyz(s: "datanets" | "attribution" | "gateway" | "settlement"): Promise<string> {
  try {
    const res = await fetch(`${url(s)}/readyz`, { signal: AbortSignal.timeout(3000) });
    if (res.status !== 200) return `http ${res.status}`;
    return ((await res.json()) as { status: string }).status;
  } catch {
    return "down";
  }
}

async function until(what: string, fn: () => Promise<boolean>, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await fn()) return true;
    await sleep(500);
  }
  log(`gave up waiting for ${what} after ${ms / 1000} s`);
  return false;
}

log("starting the platform (supervisor, chain node, four services)…");
const up = await until(
  "the platform",
  async () => {
    if (supervisor.exitCode !== null) return true;
    return supervisorOut.includes("OpenLedger is up");
  },
  600_000,
);
if (!up || supervisor.exitCode !== null) {
  log(`the platform did not come up:\n${supervisorOut.slice(-4000)}`);
  await cleanup();
  process.exit(1);
}
const addresses = await loadAddresses(addressesFile);
const chainLike = {
  rpcUrl: env.CHAIN_RPC_URL!,
  chainId: addresses.chainId,
  addresses,
} as unknown as LocalChain;
const db = createDb(databaseUrl);

log(`funding ${ACCOUNTS} accounts and creating their API keys…`);
const users = localAccounts().users.slice(0, ACCOUNTS);
const keys: string[] = [];
for (const [i, user] of users.entries()) {
  await depositToEscrow(chainLike, user, 10_000n * OPEN);
  const res = await fetch(`${url("gateway")}/v1/api-keys`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(await devApiKeyRequest(user.address, addresses.chainId, `drill-${i}`)),
  });
  if (res.status !== 201) throw new Error(`api key for ${user.address}: ${res.status} ${await res.text()}`);
  keys.push(((await res.json()) as { key: string }).key);
}

// ---------------------------------------------------------------- load

interface Sent {
  started: number;
  /** ms until the answer's headers (or the failure). */
  waitMs: number;
  status: number | "error";
  stream: boolean;
  id: string | undefined;
  /** Tokens the client was told it received (non-streamed: usage; streamed: pieces of text). */
  received: number;
  /** The text the client received. */
  text: string;
  done: boolean;
}
const sent: Sent[] = [];

async function chat(
  key: string,
  stream: boolean,
  maxTokens: number,
  onChunk?: (n: number) => void,
): Promise<Sent> {
  const started = Date.now();
  const s: Sent = {
    started,
    waitMs: 0,
    status: "error",
    stream,
    id: undefined,
    received: 0,
    text: "",
    done: false,
  };
  try {
    const res = await fetch(`${url("gateway")}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
      body: JSON.stringify({
        model: BASE_MODEL,
        messages: [{ role: "user", content: `drill ${started % 997}` }],
        max_tokens: maxTokens,
        stream,
      }),
      signal: AbortSignal.timeout(120_000),
    });
    s.waitMs = Date.now() - started;
    s.status = res.status;
    s.id = res.headers.get("x-openledger-inference-id") ?? undefined;
    if (!stream) {
      const body = (await res.json()) as {
        usage?: { completion_tokens: number };
        choices?: { message?: { content?: string } }[];
      };
      if (res.status === 200) {
        s.received = body.usage?.completion_tokens ?? 0;
        s.text = body.choices?.[0]?.message?.content ?? "";
      }
      s.done = res.status === 200;
    } else if (res.body) {
      let buffer = "";
      let chunks = 0;
      const decoder = new TextDecoder();
      try {
        for await (const part of res.body as unknown as AsyncIterable<Uint8Array>) {
          buffer += decoder.decode(part, { stream: true });
          let nl = buffer.indexOf("\n\n");
          while (nl >= 0) {
            const event = buffer.slice(0, nl);
            buffer = buffer.slice(nl + 2);
            nl = buffer.indexOf("\n\n");
            const data = event.replace(/^data: /, "");
            if (data === "[DONE]") s.done = true;
            else if (data.startsWith("{")) {
              const delta = (JSON.parse(data) as { choices?: { delta?: { content?: string } }[] })
                .choices?.[0]?.delta?.content;
              if (delta) {
                s.received += 1;
                s.text += delta;
                onChunk?.(++chunks);
              }
            }
          }
        }
      } catch {
        // The connection went away mid-stream: what arrived is what counts.
      }
    }
  } catch {
    s.waitMs = s.waitMs || Date.now() - started;
  }
  return s;
}

let loading = true;
let turn = 0;
const workers = Array.from({ length: CONCURRENCY }, async () => {
  while (loading) {
    const i = turn++;
    const s = await chat(keys[i % keys.length]!, i % 3 === 0, i % 3 === 0 ? 24 : 12);
    sent.push(s);
    if (s.status !== 200) await sleep(200); // a refused or failed request: do not spin
  }
});

// ---------------------------------------------------------------- faults

interface Window {
  name: string;
  start: number;
  end: number;
  extraWaits: number[];
  extra: Sent[];
  recoveredInSec: number | null;
}
const windows: Window[] = [];

/** Every service ready and every inference served during the window settled. */
async function recover(w: Window): Promise<void> {
  const ok = await until(
    `recovery after ${w.name}`,
    async () => {
      for (const s of ["datanets", "attribution", "gateway", "settlement"] as const) {
        if ((await readyz(s)) !== "ready") return false;
      }
      const ids = [...inWindow(w), ...w.extra].filter((s) => s.id).map((s) => s.id!);
      if (ids.length === 0) return true;
      const [row] = await db.$queryRawUnsafe<{ rows: number; settled: number }[]>(
        `SELECT (SELECT count(*)::int FROM inferences WHERE id = ANY($1::uuid[])) AS rows,
                (SELECT count(*)::int FROM settlements WHERE inference_id = ANY($1::uuid[])) AS settled`,
        ids,
      );
      return !!row && row.settled === row.rows;
    },
    240_000,
  );
  w.recoveredInSec = ok ? Math.round((Date.now() - w.end) / 100) / 10 : null;
}

function inWindow(w: Window): Sent[] {
  return sent.filter((s) => s.started >= w.start && s.started <= w.end);
}

log(`load: ${CONCURRENCY} concurrent clients over ${ACCOUNTS} accounts; baseline ${BASELINE_MS / 1000} s…`);
const baselineStart = Date.now();
await sleep(BASELINE_MS);
log(`baseline: ${sent.filter((s) => s.status === 200).length} answers`);

async function fault(name: string, inject: (w: Window) => Promise<void>): Promise<void> {
  if (ONLY && !ONLY.includes(name)) return;
  const w: Window = { name, start: Date.now(), end: 0, extraWaits: [], extra: [], recoveredInSec: null };
  log(`fault: ${name}`);
  await inject(w);
  w.end = Date.now();
  windows.push(w);
  await recover(w);
  log(`  ${name}: recovered in ${w.recoveredInSec ?? "—"} s`);
  await sleep(5000);
}

await fault("redis-kill", async () => {
  await redis.stop();
  await sleep(OUTAGE_MS);
  redis = await startRedis(ports.redis);
});

await fault("service-sigkill", async () => {
  const pid = childPids().get("settlement");
  if (!pid) throw new Error("no settlement process");
  process.kill(pid, "SIGKILL");
  await until(
    "settlement restarted",
    async () => {
      const now = childPids().get("settlement");
      return now !== undefined && now !== pid && (await readyz("settlement")) !== "down";
    },
    180_000,
  );
});

await fault("gateway-kill-mid-stream", async (w) => {
  const pid = childPids().get("gateway");
  if (!pid) throw new Error("no gateway process");
  // Long streams, cut by the kill once each has delivered some of its tokens (or ended).
  let midway = 0;
  let ended = 0;
  const long = keys.slice(0, 4).map((key) =>
    chat(key, true, 800, (n) => {
      if (n === 10) midway++;
    }).then((s) => {
      ended++;
      return s;
    }),
  );
  await until("long streams under way", async () => midway + ended >= long.length && midway > 0, 120_000);
  process.kill(pid, "SIGKILL");
  w.extra = await Promise.all(long);
  await until(
    "gateway restarted",
    async () => {
      const now = childPids().get("gateway");
      return now !== undefined && now !== pid && (await readyz("gateway")) !== "down";
    },
    300_000,
  );
});

await fault("chain-freeze", async (w) => {
  const pid = childPids().get("chain");
  if (!pid) throw new Error("no chain process");
  process.kill(pid, "SIGSTOP");
  try {
    await sleep(2000);
    const t0 = Date.now();
    const close = await fetch(`${url("settlement")}/v1/epochs/close`, {
      method: "POST",
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
      signal: AbortSignal.timeout(120_000),
    }).catch(() => undefined);
    w.extraWaits.push(Date.now() - t0);
    log(`  epoch close during the freeze: ${close?.status ?? "no answer"} after ${Date.now() - t0} ms`);
    await sleep(Math.max(0, FREEZE_MS - (Date.now() - w.start)));
  } finally {
    process.kill(pid, "SIGCONT");
  }
});

loading = false;
await Promise.all(workers);
log("load stopped; waiting for every inference to settle…");
await until(
  "every inference settled",
  async () => {
    const [row] = await db.$queryRawUnsafe<{ rows: number; settled: number }[]>(
      `SELECT (SELECT count(*)::int FROM inferences) AS rows, (SELECT count(*)::int FROM settlements) AS settled`,
    );
    return !!row && row.rows === row.settled;
  },
  300_000,
);

// ---------------------------------------------------------------- results

const all = [...sent, ...windows.flatMap((w) => w.extra)];
const ids = all.filter((s) => s.id).map((s) => s.id!);
const rows = new Map(
  (
    await db.$queryRawUnsafe<{ id: string; output_tokens: number; output: string }[]>(
      `SELECT id::text AS id, output_tokens, output FROM inferences WHERE id = ANY($1::uuid[])`,
      ids,
    )
  ).map((r) => [r.id, r]),
);

/**
 * Tokens the client received that its inference row does not bill. Not streamed: the usage it was
 * told beyond the row's output tokens. Streamed (cut or not): the received text must be a prefix of
 * the billed output (what was sent was written first); anything beyond the common prefix counts, in
 * bytes (the tiny model's tokens are bytes).
 */
function unbilled(s: Sent): number {
  const row = s.id ? rows.get(s.id) : undefined;
  if (!s.stream) return Math.max(0, s.received - (row?.output_tokens ?? 0));
  const billed = row?.output ?? "";
  let common = 0;
  while (common < s.text.length && common < billed.length && s.text[common] === billed[common]) common++;
  return Buffer.byteLength(s.text.slice(common));
}

/** Inferences recorded, settled or entered in the ledger more than once. */
async function doubledOf(list: string[]): Promise<number> {
  const [r] = await db.$queryRawUnsafe<{ n: number }[]>(
    `SELECT ((SELECT count(*) FROM settlements WHERE inference_id = ANY($1::uuid[]))
           - (SELECT count(DISTINCT inference_id) FROM settlements WHERE inference_id = ANY($1::uuid[]))
           + (SELECT count(*) FROM ledger_transactions WHERE external_key = ANY($2::text[]))
           - (SELECT count(DISTINCT external_key) FROM ledger_transactions WHERE external_key = ANY($2::text[]))
           + (SELECT count(*) FROM inferences WHERE id = ANY($1::uuid[]))
           - (SELECT count(DISTINCT id) FROM inferences WHERE id = ANY($1::uuid[])))::int AS n`,
    list,
    list.map((id) => `fee:${id}`),
  );
  return r?.n ?? 0;
}

// The bound: a fault may add at most CHAIN_REQUEST_TIMEOUT_MS (the most a request waits on the chain)
// to what a request of this load waits anyway — the p99 wait of the answers outside every fault.
const steady = sent
  .filter(
    (s) =>
      s.started >= baselineStart &&
      s.status === 200 &&
      !windows.some((w) => s.started >= w.start && s.started <= w.end),
  )
  .map((s) => s.waitMs)
  .sort((a, b) => a - b);
const baselineP99 = steady[Math.min(steady.length - 1, Math.floor(steady.length * 0.99))] ?? 0;
const boundMs = CHAIN_REQUEST_TIMEOUT_MS + baselineP99;
log(`outside the faults: ${steady.length} answers, p99 wait ${baselineP99} ms → bound ${boundMs} ms`);

const faults = [];
for (const w of windows) {
  const during = [...inWindow(w), ...w.extra];
  const delivered = during.filter((s) => s.status === 200 && (s.received > 0 || s.done));
  const lost = delivered.filter((s) => !s.id || !rows.has(s.id)).length;
  const unbilledTokens = delivered.reduce((sum, s) => sum + unbilled(s), 0);
  const offenders = delivered
    .filter((s) => !s.id || !rows.has(s.id) || unbilled(s) > 0)
    .slice(0, 5)
    .map((s) => ({
      id: s.id ?? null,
      stream: s.stream,
      done: s.done,
      received: s.text,
      billed: s.id ? (rows.get(s.id)?.output ?? null) : null,
      billedTokens: s.id ? (rows.get(s.id)?.output_tokens ?? null) : null,
    }));
  if (offenders.length) log(`  ${w.name}: not billed as received: ${JSON.stringify(offenders)}`);
  const waits = [...during.map((s) => s.waitMs), ...w.extraWaits];
  faults.push({
    name: w.name,
    servedDuring: during.filter((s) => s.status === 200).length,
    lost,
    doubled: await doubledOf(during.filter((s) => s.id).map((s) => s.id!)),
    unbilledTokens,
    maxClientWaitMs: Math.max(0, ...waits),
    boundMs,
    recoveredInSec: w.recoveredInSec,
  });
}

const [totals] = await db.$queryRawUnsafe<{ rows: number; settled: number }[]>(
  `SELECT (SELECT count(*)::int FROM inferences) AS rows, (SELECT count(*)::int FROM settlements) AS settled`,
);
const reconciliation = (await fetch(`${url("settlement")}/v1/reconciliation`)
  .then((r) => r.json())
  .catch(() => ({ ok: false }))) as { ok: boolean; checks?: { name: string; ok: boolean }[] };
const billing = new Billing({
  config: gatewayConfig({ DATABASE_URL: databaseUrl }),
  db,
  chain: { read: () => Promise.reject(new Error("not used")) },
  log: { warn() {}, info() {} } as never,
});
const totalsDrift = await billing.reconcile();
const result = {
  load: {
    requests: all.length,
    ok: all.filter((s) => s.status === 200).length,
    rows: totals?.rows ?? 0,
    settled: totals?.settled ?? 0,
  },
  faults,
  checks: {
    ledgerAndChainReconciled: reconciliation.ok,
    runningTotalsMatchHistory: totalsDrift.length === 0,
    doubledOverall: await doubledOf(ids),
  },
  setup: {
    concurrency: CONCURRENCY,
    accounts: ACCOUNTS,
    outageSec: OUTAGE_MS / 1000,
    freezeSec: FREEZE_MS / 1000,
    chainRequestTimeoutMs: CHAIN_REQUEST_TIMEOUT_MS,
    baselineP99WaitMs: baselineP99,
  },
};

await db.$disconnect();
await cleanup();

if (JSON_OUT) process.stdout.write(`${JSON.stringify(result)}\n`);
else {
  const pad = (v: unknown, n: number) => String(v).padStart(n);
  process.stdout.write(
    `\nload: ${result.load.requests} requests, ${result.load.ok} ok, ${result.load.rows} rows, ${result.load.settled} settled\n\n`,
  );
  process.stdout.write(
    `${"fault".padEnd(24)}${pad("served", 8)}${pad("lost", 6)}${pad("doubled", 9)}${pad("unbilled", 10)}${pad("max wait ms", 13)}${pad("bound ms", 10)}${pad("recovered s", 13)}\n`,
  );
  for (const f of faults) {
    process.stdout.write(
      `${f.name.padEnd(24)}${pad(f.servedDuring, 8)}${pad(f.lost, 6)}${pad(f.doubled, 9)}${pad(f.unbilledTokens, 10)}${pad(f.maxClientWaitMs, 13)}${pad(f.boundMs, 10)}${pad(f.recoveredInSec ?? "—", 13)}\n`,
    );
  }
  process.stdout.write(`\nchecks: ${JSON.stringify(result.checks)}\n`);
}
const pass =
  faults.every(
    (f) => f.lost === 0 && f.doubled === 0 && f.unbilledTokens === 0 && f.maxClientWaitMs <= f.boundMs,
  ) &&
  result.load.rows === result.load.settled &&
  result.checks.ledgerAndChainReconciled &&
  result.checks.runningTotalsMatchHistory;
process.exit(pass ? 0 : 1);
