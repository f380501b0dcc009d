/**
 * Gateway admission: what a refusal costs, and what an admission costs as an account's history grows.
 * Compares the gateway of this tree ("after") with the same gateway at an earlier commit ("before"),
 * interleaved in one run:
 *
 *  A. Refusals under load (HTTP, each gateway a real child process): one account whose rate bucket is
 *     empty sends requests from 8 / 32 / 128 concurrent clients; p50 / p99 of the 429s. Before, a
 *     request took the account's in-process queue and pg_advisory_xact_lock, summed the account's
 *     history, inserted a reservation, and only then met the engine's rate limit (and released);
 *     after, the limit is decided in memory first.
 *  B. Admission cost vs history (in-process): `reserveWithin` + `release` of each version's Billing
 *     for an account with 0 / 10,000 / 100,000 past inferences; p50 per admission.
 *
 *   npm run bench:gateway-admission -- --before <dir> [--json] [--rounds N]
 *
 * <dir> = a checkout of the earlier commit with its dependencies: `git archive <commit> | tar -x -C
 * <dir>`, its node_modules linking this tree's (with @openledger/* pointing into <dir>), then
 * `node scripts/prepare.mjs` there.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { OPEN } from "@openledger/chain";
import { devApiKeyRequest, startLocalChain } from "@openledger/chain/testing";
import { createTestDatabase } from "@openledger/db/testing";
import { deletePrefix, TEST_REDIS_URL, uniquePrefix } from "@openledger/queue/testing";
import { freePort } from "@openledger/service-kit/testing";
import { depositToEscrow } from "../apps/gateway/src/testing.ts";

const args = process.argv.slice(2);
const arg = (name: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const JSON_OUT = args.includes("--json");
const BEFORE = arg("--before");
const ROUNDS = Number(arg("--rounds") ?? 3);
const AFTER = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const log = (m: string) => process.stderr.write(`${m}\n`);
if (!BEFORE) {
  log("usage: npm run bench:gateway-admission -- --before <checkout of the earlier commit> [--json]");
  process.exit(2);
}

const pct = (xs: number[], p: number) => {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};

const addressesFile = path.join(await mkdtemp(path.join(tmpdir(), "adm-")), "addresses.json");
const chain = await startLocalChain({ writeAddresses: addressesFile });
const trees = { before: path.resolve(BEFORE), after: AFTER } as const;
type Arm = keyof typeof trees;
const children: ChildProcess[] = [];
const cleanups: (() => Promise<void>)[] = [];

interface Gateway {
  url: string;
  key: string;
}

/** One gateway of `tree` as a child process, its own schema and Redis prefix, a funded account. */
async function startGateway(arm: Arm, user: { address: string; privateKey: string }): Promise<Gateway> {
  const database = await createTestDatabase(`adm-${arm}`);
  const prefix = uniquePrefix(`adm-${arm}`);
  const dataDir = await mkdtemp(path.join(tmpdir(), `adm-${arm}-`));
  cleanups.push(async () => {
    await database.drop();
    await deletePrefix(prefix);
    await rm(dataDir, { recursive: true, force: true });
  });
  const port = await freePort();
  const child = spawn(
    process.execPath,
    ["--import", "tsx", path.join(trees[arm], "apps/gateway/src/server.ts")],
    {
      cwd: trees[arm],
      env: {
        ...process.env,
        LOG_LEVEL: "warn",
        DATABASE_URL: database.url,
        REDIS_URL: TEST_REDIS_URL,
        QUEUE_PREFIX: prefix,
        CHAIN_RPC_URL: chain.rpcUrl,
        CHAIN_ADDRESSES_FILE: addressesFile,
        GATEWAY_PORT: String(port),
        GATEWAY_DATA_DIR: dataDir,
        GATEWAY_ADMIN_TOKEN: "bench",
        // Whatever base model the tree serves by default, under the id the requests name.
        GATEWAY_BASE_MODEL_ID: "openledger-tiny",
        GATEWAY_CHAIN_REGISTRATION: "false",
        GATEWAY_THREADS: "1",
        GATEWAY_RATE_REQUESTS_PER_MIN: "20",
        GATEWAY_OUTBOX_SWEEP_MS: "600000",
      },
      stdio: ["ignore", "ignore", "pipe"],
    },
  );
  let err = "";
  child.stderr!.on("data", (d: Buffer) => {
    err = (err + d.toString()).slice(-4000);
  });
  children.push(child);
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) throw new Error(`${arm} gateway exited:\n${err}`);
    const ok = await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(2000) }).catch(() => undefined);
    if (ok?.status === 200) break;
    if (i > 900) throw new Error(`${arm} gateway not ready:\n${err}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  await depositToEscrow(chain, user, 1000n * OPEN);
  // The account's own signed request (later gateways), or the admin route (earlier ones).
  let res = await fetch(`${url}/v1/api-keys`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(await devApiKeyRequest(user.address, chain.chainId, "bench")),
  });
  if (res.status === 404) {
    res = await fetch(`${url}/admin/api-keys`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: "Bearer bench" },
      body: JSON.stringify({ account: user.address, name: "bench" }),
    });
  }
  const { key } = (await res.json()) as { key: string };
  return { url, key };
}

/** `total` requests from `concurrency` closed-loop clients; latency (ms) per status. */
async function burst(g: Gateway, concurrency: number, total: number): Promise<Map<number, number[]>> {
  const byStatus = new Map<number, number[]>();
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < total) {
        next++;
        const t = performance.now();
        const res = await fetch(`${g.url}/v1/completions`, {
          method: "POST",
          headers: { "content-type": "application/json", authorization: `Bearer ${g.key}` },
          body: JSON.stringify({ model: "openledger-tiny", prompt: "hi", max_tokens: 1, temperature: 0 }),
        });
        await res.arrayBuffer();
        const ms = performance.now() - t;
        const list = byStatus.get(res.status) ?? [];
        list.push(ms);
        byStatus.set(res.status, list);
      }
    }),
  );
  return byStatus;
}

// ---------------------------------------------------------------- A: refusals
const users = chain.accounts.users;
const gateways = {
  before: await startGateway("before", users[0]!),
  after: await startGateway("after", users[1]!),
};
log("gateways up");
const CONCURRENCY = [8, 32, 128];
const refusals: Record<Arm, Record<number, number[]>> = { before: {}, after: {} };
for (let r = 0; r < ROUNDS; r++) {
  for (const c of CONCURRENCY) {
    for (const arm of (r % 2 === 0 ? ["before", "after"] : ["after", "before"]) as Arm[]) {
      const res = await burst(gateways[arm], c, Math.max(256, 4 * c));
      refusals[arm][c] = [...(refusals[arm][c] ?? []), ...(res.get(429) ?? [])];
      log(
        `round ${r + 1} c=${c} ${arm}: ${[...res.entries()].map(([s, l]) => `${s}x${l.length}`).join(" ")}`,
      );
    }
  }
}
for (const child of children) child.kill("SIGTERM");

// ---------------------------------------------------------------- B: admission vs history
type AnyBilling = {
  reserveWithin: (...a: never[]) => Promise<{ id: string }>;
  release: (r: never) => Promise<void>;
  close: () => void;
};
async function billingOf(arm: Arm, account: string, history: number) {
  const testing = await import(path.join(trees[arm], "packages/db/src/testing.ts"));
  const configMod = await import(path.join(trees[arm], "packages/config/src/index.ts"));
  const billingMod = await import(path.join(trees[arm], "apps/gateway/src/plugins/billing.ts"));
  const database = await testing.createTestDatabase(`adm-b-${arm}`);
  cleanups.push(() => database.drop());
  const db = database.db;
  await db.$executeRawUnsafe(
    `INSERT INTO models (id, kind, owner_address, content_hash, price_in_per_1k_wei, price_out_per_1k_wei, updated_at)
     VALUES ('bench-model', 'base', '0x0000000000000000000000000000000000000000', repeat('a', 64), 1000, 2000, now())`,
  );
  await db.$executeRawUnsafe(
    `INSERT INTO inferences (id, model_id, account_address, prompt, output, input_tokens, output_tokens, price_in_per_1k_wei, price_out_per_1k_wei)
     SELECT gen_random_uuid(), 'bench-model', $1, 'p', 'o', 10, 10, 1000, 2000 FROM generate_series(1, $2::int)`,
    account,
    history,
  );
  if (arm === "after") {
    await db.$executeRawUnsafe(
      `INSERT INTO gateway_accounts (account_address, billed_wei) VALUES ($1, $2::numeric)`,
      account,
      String(history * 30),
    );
  }
  await db.$executeRawUnsafe("ANALYZE");
  const config = configMod.parseConfig("gateway", configMod.gatewayEnv, {
    DATABASE_URL: database.url,
    CHAIN_RPC_URL: chain.rpcUrl,
  });
  const silent = { warn() {}, info() {}, error() {}, debug() {}, child: () => silent } as never;
  const spendable = 10n ** 30n;
  if (arm === "after") {
    const b = new billingMod.Billing({
      config,
      db,
      chain: () => Promise.reject(new Error("unused")),
      log: silent,
    });
    return {
      db,
      billing: b as AnyBilling,
      admit: () => b.reserveWithin({ account, maxCost: 100n }, { spendable, cleared: 0n, at: Date.now() }),
    };
  }
  const b = new billingMod.Billing(config, db, {}, silent);
  return { db, billing: b as AnyBilling, admit: () => b.reserveWithin(account, 100n, spendable, 0) };
}

const HISTORY = [0, 10_000, 100_000];
const admissions: Record<Arm, Record<number, number[]>> = { before: {}, after: {} };
for (const h of HISTORY) {
  const arms = {
    before: await billingOf("before", "0x00000000000000000000000000000000000b0001", h),
    after: await billingOf("after", "0x00000000000000000000000000000000000b0002", h),
  };
  for (let r = 0; r < ROUNDS; r++) {
    for (const arm of (r % 2 === 0 ? ["before", "after"] : ["after", "before"]) as Arm[]) {
      const { billing, admit } = arms[arm];
      for (let i = 0; i < 40; i++) {
        const t = performance.now();
        const res = await admit();
        const took = performance.now() - t;
        admissions[arm][h] = [...(admissions[arm][h] ?? []), took];
        await billing.release(res as never);
      }
    }
  }
  for (const a of Object.values(arms)) {
    a.billing.close();
    await a.db.$disconnect();
  }
  log(
    `history ${h}: before p50 ${pct(admissions.before[h]!, 50).toFixed(2)} ms, after ${pct(admissions.after[h]!, 50).toFixed(2)} ms`,
  );
}

for (const c of cleanups) await c().catch(() => {});
await chain.stop();

const result = {
  refusals: CONCURRENCY.map((c) => ({
    concurrency: c,
    before: {
      n: refusals.before[c]!.length,
      p50Ms: pct(refusals.before[c]!, 50),
      p99Ms: pct(refusals.before[c]!, 99),
    },
    after: {
      n: refusals.after[c]!.length,
      p50Ms: pct(refusals.after[c]!, 50),
      p99Ms: pct(refusals.after[c]!, 99),
    },
  })),
  admission: HISTORY.map((h) => ({
    history: h,
    beforeP50Ms: pct(admissions.before[h]!, 50),
    afterP50Ms: pct(admissions.after[h]!, 50),
    ratio: pct(admissions.after[h]!, 50) / pct(admissions.before[h]!, 50),
  })),
};
if (JSON_OUT) {
  process.stdout.write(`${JSON.stringify(result)}\n`);
} else {
  console.log("| 429 under load | before p50 / p99 ms | after p50 / p99 ms |");
  console.log("| --- | ---: | ---: |");
  for (const r of result.refusals) {
    console.log(
      `| concurrency ${r.concurrency} | ${r.before.p50Ms.toFixed(1)} / ${r.before.p99Ms.toFixed(1)} (n=${r.before.n}) | ${r.after.p50Ms.toFixed(1)} / ${r.after.p99Ms.toFixed(1)} (n=${r.after.n}) |`,
    );
  }
  console.log("\n| past inferences of the account | before admission p50 ms | after p50 ms | ratio |");
  console.log("| ---: | ---: | ---: | ---: |");
  for (const a of result.admission) {
    console.log(
      `| ${a.history} | ${a.beforeP50Ms.toFixed(2)} | ${a.afterP50Ms.toFixed(2)} | ${a.ratio.toFixed(2)} |`,
    );
  }
}
process.exit(0);
