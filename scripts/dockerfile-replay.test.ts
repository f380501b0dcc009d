// No Docker engine runs here, so the image is checked by replaying it: the Dockerfile's COPY steps
// (honouring .dockerignore) into a fresh directory, its RUN steps there with its ENV, then every
// docker-compose service's command (the chain, the deploy and migrate jobs, each app) from that copy
// against the local Postgres and Redis, each app until its /readyz answers 200. Then the jobs run a
// second time, as at a second `docker compose up`: the live deployment is kept and the database too.
// Slow by nature (npm ci + contract compile in the copy): one test file, run in the full suite.
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { cp, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { createTestDatabase, type TestDatabase } from "@openledger/db/testing";
import { deletePrefix, uniquePrefix } from "@openledger/queue/testing";
import { freePort } from "@openledger/service-kit/testing";
import { parse } from "yaml";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

interface Step {
  op: string;
  args: string;
}

/** Dockerfile instructions, continuation lines joined, comments dropped. */
function parseDockerfile(text: string): Step[] {
  const joined = text.replace(/\\\r?\n/g, " ");
  return joined
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("#"))
    .map((l) => {
      const i = l.indexOf(" ");
      return { op: l.slice(0, i).toUpperCase(), args: l.slice(i + 1).trim() };
    });
}

/** ENV a=b c="d e" (the key=value form). */
function parseEnv(args: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of args.matchAll(/([A-Za-z_][A-Za-z0-9_]*)=("(?:[^"\\]|\\.)*"|\S+)/g))
    out[m[1]!] = m[2]!.startsWith('"') ? (JSON.parse(m[2]!) as string) : m[2]!;
  return out;
}

function run(
  cmd: string[],
  opts: { cwd: string; env: NodeJS.ProcessEnv },
): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd[0]!, cmd.slice(1), {
      cwd: opts.cwd,
      env: opts.env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    const keep = (d: Buffer) => {
      output = (output + d.toString()).slice(-20_000);
    };
    child.stdout.on("data", keep);
    child.stderr.on("data", keep);
    child.on("exit", (code) => resolve({ code, output }));
  });
}

let work: string;
let app: string;
let imageEnv: Record<string, string> = {};
let cmdDefault: string[] = [];
let database: TestDatabase;
let prefix: string;
const children: ChildProcess[] = [];
const buildLog: string[] = [];

before(async () => {
  work = await mkdtemp(path.join(tmpdir(), "openledger-image-"));
  const steps = parseDockerfile(await readFile(path.join(ROOT, "Dockerfile"), "utf8"));
  const ignore = (await readFile(path.join(ROOT, ".dockerignore"), "utf8"))
    .split("\n")
    .map((l) => l.trim().replace(/^\*\*\//, ""))
    .filter(Boolean);
  const ignored = (rel: string) =>
    ignore.some((pat) => rel === pat || rel.startsWith(`${pat}/`) || rel.split("/").includes(pat));
  app = work;
  for (const s of steps) {
    if (s.op === "FROM") continue;
    if (s.op === "WORKDIR") app = path.join(work, s.args);
    else if (s.op === "ENV") imageEnv = { ...imageEnv, ...parseEnv(s.args) };
    else if (s.op === "COPY") {
      const parts = s.args.split(/\s+/);
      const dest = parts.pop()!;
      for (const src of parts) {
        const to =
          dest.endsWith("/") || parts.length > 1
            ? path.join(app, dest, path.basename(src))
            : path.join(app, dest);
        await cp(path.join(ROOT, src), to, {
          recursive: true,
          filter: (from) => !ignored(path.relative(ROOT, from)),
        });
      }
    } else if (s.op === "RUN") {
      const r = await run(["sh", "-c", s.args], {
        cwd: app,
        env: { PATH: process.env.PATH, HOME: process.env.HOME, ...imageEnv },
      });
      buildLog.push(`RUN ${s.args} -> ${r.code}\n${r.output.slice(-3000)}`);
      assert.equal(r.code, 0, `RUN ${s.args} failed:\n${r.output.slice(-5000)}`);
    } else if (s.op === "CMD") cmdDefault = JSON.parse(s.args) as string[];
  }
  database = await createTestDatabase("replay", { migrate: false });
  prefix = uniquePrefix("replay");
});

after(async () => {
  for (const c of children) if (c.exitCode === null) c.kill("SIGTERM");
  await Promise.all(
    children.map((c) => (c.exitCode === null ? new Promise((r) => c.once("exit", r)) : undefined)),
  );
  await database?.drop();
  if (prefix) await deletePrefix(prefix);
  if (work) await rm(work, { recursive: true, force: true });
});

test("the image installs what its commands need: tsx, hardhat, generated Prisma client, compiled contracts", async () => {
  assert.equal(imageEnv.NODE_ENV, "production", "the image runs with NODE_ENV=production");
  for (const bin of ["tsx", "hardhat", "openledger"])
    assert.ok(
      await readFile(path.join(app, "node_modules", ".bin", bin)).then(
        () => true,
        () => false,
      ),
      `${bin} installed`,
    );
  assert.deepEqual(cmdDefault.slice(0, 3), ["node", "--import", "tsx"]);
});

test("every compose service's command starts from the image against local Postgres and Redis", async () => {
  const compose = parse(await readFile(path.join(ROOT, "docker-compose.yml"), "utf8"), { merge: true });
  const envExample = Object.fromEntries(
    (await readFile(path.join(ROOT, ".env.example"), "utf8"))
      .split("\n")
      .filter((l) => /^[A-Z_]+=/.test(l))
      .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
  );
  const chainPort = await freePort();
  const dataDir = path.join(work, "data");
  const apps = Object.entries(compose.services as Record<string, { command: string[] }>)
    .filter(([, s]) => s.command?.some((c) => /^apps\/[a-z-]+\/src\/server\.ts$/.test(c)))
    .map(([name]) => name);
  const ports: Record<string, number> = {};
  for (const a of apps) ports[a] = await freePort();
  // .env.example with the container names and paths mapped onto this machine.
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    ...imageEnv,
    ...envExample,
    HOST: "127.0.0.1",
    LOG_LEVEL: "warn",
    DATABASE_URL: database.url,
    REDIS_URL: "redis://127.0.0.1:6379",
    QUEUE_PREFIX: prefix,
    CHAIN_RPC_URL: `http://127.0.0.1:${chainPort}`,
    CHAIN_ADDRESSES_FILE: path.join(dataDir, "chain", "addresses.json"),
    ATTRIBUTION_BLOB_DIR: path.join(dataDir, "blobs"),
    GATEWAY_DATA_DIR: path.join(dataDir, "gateway"),
    GATEWAY_ATTRIBUTION_URL: `http://127.0.0.1:${ports.attribution ?? 0}`,
    OPENLEDGER_HOME: path.join(dataDir, "cli"),
  };
  for (const a of apps) env[`${a.toUpperCase()}_PORT`] = String(ports[a]);
  const resolve = (v: string) =>
    v.replace(/\$\{([A-Z_]+)(?::-([^}]*))?\}/g, (_m, k: string, d?: string) => String(env[k] ?? d ?? ""));

  // The chain node, as compose runs it (its port and host mapped).
  const chainSvc = compose.services.chain;
  const chainCmd = (chainSvc.command as string[]).map((c: string) =>
    c === "8545" ? String(chainPort) : c === "0.0.0.0" ? "127.0.0.1" : c,
  );
  const chain = spawn(chainCmd[0]!, chainCmd.slice(1), {
    cwd: path.join(app, path.relative("/app", chainSvc.working_dir)),
    env,
    stdio: "ignore",
  });
  children.push(chain);
  const deadline = Date.now() + 180_000;
  for (;;) {
    const ok = await fetch(env.CHAIN_RPC_URL!, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: '{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}',
    }).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) break;
    assert.ok(Date.now() < deadline, "the chain node did not answer");
    await new Promise((r) => setTimeout(r, 500));
  }

  const job = async (name: string) => {
    const svc = compose.services[name];
    const jobEnv = { ...env };
    for (const [k, v] of Object.entries((svc.environment ?? {}) as Record<string, string>))
      jobEnv[k] = resolve(v);
    if (name === "deploy") jobEnv.ADDRESSES_FILE = env.CHAIN_ADDRESSES_FILE;
    const r = await run(svc.command as string[], { cwd: app, env: jobEnv });
    assert.equal(r.code, 0, `${name} job failed:\n${r.output.slice(-5000)}`);
    return r.output;
  };
  await job("deploy");
  const first = await job("migrate");
  assert.match(first, /database bound to the chain deployment/);

  // Each app's server from the image, until /readyz says 200.
  for (const a of apps) {
    const cmd = compose.services[a].command as string[];
    const child = spawn(cmd[0]!, cmd.slice(1), { cwd: app, env, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    const keep = (d: Buffer) => {
      out = (out + d.toString()).slice(-5000);
    };
    child.stdout!.on("data", keep);
    child.stderr!.on("data", keep);
    children.push(child);
    const until = Date.now() + 300_000;
    for (;;) {
      assert.equal(child.exitCode, null, `${a} exited:\n${out}`);
      const status = await fetch(`http://127.0.0.1:${ports[a]}/readyz`, {
        signal: AbortSignal.timeout(2000),
      }).then(
        (r) => r.status,
        () => 0,
      );
      if (status === 200) break;
      assert.ok(Date.now() < until, `${a} not ready:\n${out}`);
      await new Promise((r) => setTimeout(r, 500));
    }
  }

  // A second `docker compose up` on the same, live chain: the deployment and the database are kept.
  assert.match(await job("deploy"), /kept/);
  const second = await job("migrate");
  assert.doesNotMatch(second, /moved aside/);
});
