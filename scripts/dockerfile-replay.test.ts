// No Docker engine runs on these machines, so the image and the compose file are tested the way they
// can be: the Dockerfile's COPY steps are replayed into a fresh directory (a clean checkout's files,
// minus .dockerignore), its RUN steps run there with exactly its ENV (NODE_ENV=production included:
// the tools the commands need must still be installed), and then every compose service's command runs
// from that directory — the dev chain node, the deploy and migrate jobs, each service — with the
// compose environment (.env.example + the service's `environment`), against this machine's Postgres
// and Redis; each service must pass its compose health check (GET /readyz).
//
// What is translated, and only this: the /data volumes -> directories of the replay; compose host names
// (postgres, redis, chain, datanets, …) -> 127.0.0.1 and free ports; the database -> a schema of its
// own, Redis -> a prefix of its own; the chain node listens on 127.0.0.1 (its keys are public). The
// stages are replayed in one directory: `COPY --from=<stage> /app /app` copies the build stage's tree
// onto itself (nothing to do), and the build stage's `apt-get install` of build tools is not run
// (it would change this machine): the replay checks that each package it names is installed here.
// `npm ci` reuses this machine's npm cache (npm_config_prefer_offline): the replay measures the
// install, not the network (~1 min here; the whole test ~3-5 min on 2 cores).
import assert from "node:assert/strict";
import { type ChildProcess, execFileSync, spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { createTestDatabase, type TestDatabase } from "@openledger/db/testing";
import { deletePrefix, uniquePrefix } from "@openledger/queue/testing";
import { freePort } from "@openledger/service-kit/testing";
import { parse } from "yaml";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const APPS = ["datanets", "attribution", "gateway", "settlement", "explorer", "factory"] as const;

interface Dockerfile {
  workdir: string;
  env: Record<string, string>;
  steps: (
    | { kind: "COPY"; sources: string[]; dest: string }
    | { kind: "RUN"; command: string }
    | { kind: "APT"; packages: string[] }
  )[];
}

/** Instructions of the Dockerfile (line continuations joined, comments dropped). */
export function parseDockerfile(text: string): Dockerfile {
  const lines = text
    .replace(/\\\n/g, " ")
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("#"));
  const out: Dockerfile = { workdir: "/", env: {}, steps: [] };
  for (const line of lines) {
    const [op, ...rest] = line.split(/\s+/);
    const args = line.slice(op!.length).trim();
    switch (op!.toUpperCase()) {
      case "WORKDIR":
        out.workdir = args;
        break;
      case "ENV":
        for (const m of args.matchAll(/([A-Za-z_][A-Za-z0-9_]*)=("[^"]*"|\S+)/g))
          out.env[m[1]!] = m[2]!.replace(/^"|"$/g, "");
        break;
      case "COPY": {
        const from = rest[0]?.match(/^--from=\S+$/);
        if (from) {
          // A later stage taking the earlier stage's whole tree: the replay builds it in place.
          assert.deepEqual(
            rest.slice(1),
            [out.workdir, out.workdir],
            `only the whole WORKDIR is copied across stages: ${line}`,
          );
          break;
        }
        assert.ok(!rest.some((r) => r.startsWith("--")), `COPY flags are not replayed: ${line}`);
        out.steps.push({ kind: "COPY", sources: rest.slice(0, -1), dest: rest.at(-1)! });
        break;
      }
      case "RUN": {
        const apt = args.match(
          /^apt-get update && apt-get install ((?:-\S+\s+)*)([\w.+\- ]+?) && rm -rf \/var\/lib\/apt\/lists\/\*$/,
        );
        if (apt) out.steps.push({ kind: "APT", packages: apt[2]!.trim().split(/\s+/) });
        else {
          assert.ok(!/apt-get/.test(args), `an apt-get step the replay does not know: ${line}`);
          out.steps.push({ kind: "RUN", command: args });
        }
        break;
      }
      case "FROM":
      case "EXPOSE":
      case "CMD":
        break;
      default:
        assert.fail(`the replay does not know ${op}: ${line}`);
    }
  }
  return out;
}

/** The build context: a clean checkout's files (tracked, or new and not git-ignored), minus .dockerignore. */
function contextFiles(): string[] {
  const ignore = readFileSync(path.join(ROOT, ".dockerignore"), "utf8")
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("#"))
    .map((p) => p.replace(/^\*\*\//, "").replace(/\/$/, ""));
  const files = execFileSync("git", ["ls-files", "-co", "--exclude-standard", "-z"], { cwd: ROOT })
    .toString()
    .split("\0")
    .filter(Boolean);
  return files.filter(
    (f) =>
      existsSync(path.join(ROOT, f)) &&
      !ignore.some((p) => f === p || f.startsWith(`${p}/`) || f.split("/").includes(p)),
  );
}

const dir = mkdtempSync(path.join(tmpdir(), "openledger-dockerfile-"));
const app = path.join(dir, "app");
const data = path.join(dir, "data");
const children: ChildProcess[] = [];
const logs = new Map<string, string>();
let database: TestDatabase;
let prefix: string;
let docker: Dockerfile;
let compose: {
  services: Record<
    string,
    {
      command: string[];
      working_dir?: string;
      environment?: Record<string, string>;
      healthcheck?: { test: string[] };
    }
  >;
};
const ports = new Map<string, number>();
let serviceEnv: (name: string) => Record<string, string>;

function start(name: string, command: string[], cwd: string, env: Record<string, string>): ChildProcess {
  const child = spawn(command[0]!, command.slice(1), { cwd, env, detached: true, stdio: "pipe" });
  let out = "";
  const keep = (d: Buffer) => {
    out = (out + d.toString()).slice(-8000);
    logs.set(name, out);
  };
  child.stdout!.on("data", keep);
  child.stderr!.on("data", keep);
  children.push(child);
  return child;
}

function exited(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => {
    if (child.exitCode !== null) resolve(child.exitCode);
    else child.on("exit", (code) => resolve(code));
  });
}

/** A one-off compose job: runs to completion, must exit 0. */
async function job(name: string): Promise<void> {
  const svc = compose.services[name]!;
  const code = await exited(start(name, svc.command, path.join(app, rel(svc.working_dir)), serviceEnv(name)));
  assert.equal(code, 0, `${name} (${svc.command.join(" ")}) exited ${code}:\n${logs.get(name) ?? ""}`);
}

/** A container path under WORKDIR, relative to the replay's app directory. */
function rel(p: string | undefined): string {
  if (!p) return ".";
  return path.relative(docker.workdir, p);
}

async function until(
  what: string,
  ms: number,
  ok: () => Promise<boolean>,
  child?: ChildProcess,
  name?: string,
) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (child && child.exitCode !== null)
      assert.fail(`${name} exited ${child.exitCode} before ${what}:\n${logs.get(name!) ?? ""}`);
    if (await ok().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 1000));
  }
  assert.fail(`${what}: not within ${ms / 1000} s\n${name ? (logs.get(name) ?? "") : ""}`);
}

before(async () => {
  docker = parseDockerfile(readFileSync(path.join(ROOT, "Dockerfile"), "utf8"));
  compose = parse(readFileSync(path.join(ROOT, "docker-compose.yml"), "utf8"), { merge: true });
  database = await createTestDatabase("dockerfile", { migrate: false });
  prefix = uniquePrefix("dockerfile");
  for (const name of ["chain", ...APPS]) ports.set(name, await freePort());

  // The build: COPY from the context, RUN with the Dockerfile's ENV (and a PATH, HOME for npm's cache).
  mkdirSync(app, { recursive: true });
  const context = contextFiles();
  for (const step of docker.steps) {
    if (step.kind === "COPY") {
      for (const src of step.sources) {
        const isDir = statSync(path.join(ROOT, src)).isDirectory();
        const dest = step.dest.endsWith("/")
          ? path.join(app, rel(path.posix.join(docker.workdir, step.dest)), isDir ? "" : path.basename(src))
          : path.join(app, rel(path.posix.join(docker.workdir, step.dest)));
        const wanted = isDir ? context.filter((f) => f.startsWith(`${src}/`)) : [src];
        assert.ok(wanted.length > 0, `COPY ${src}: nothing in the build context`);
        for (const f of wanted) {
          const to = isDir ? path.join(dest, path.relative(src, f)) : dest;
          mkdirSync(path.dirname(to), { recursive: true });
          cpSync(path.join(ROOT, f), to);
        }
      }
    } else if (step.kind === "APT") {
      for (const pkg of step.packages) {
        const status = spawnSync("dpkg", ["-s", pkg], { encoding: "utf8" });
        assert.match(
          status.stdout ?? "",
          /^Status: install ok installed$/m,
          `the image installs ${pkg}: install it here too`,
        );
      }
    } else {
      execFileSync("sh", ["-c", step.command], {
        cwd: app,
        stdio: ["ignore", "inherit", "inherit"],
        env: {
          PATH: process.env.PATH!,
          HOME: process.env.HOME!,
          npm_config_prefer_offline: "true",
          ...docker.env,
        },
      });
    }
  }

  // The compose environment of a service, translated to this machine (see the top).
  const envFile = Object.fromEntries(
    readFileSync(path.join(ROOT, ".env.example"), "utf8")
      .split("\n")
      .filter((l) => /^[A-Z_]+=/.test(l))
      .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
  );
  // The values compose requires in .env (`${VAR:?}`): what an operator sets.
  const token = randomBytes(32).toString("hex");
  const dotEnv: Record<string, string> = {
    ...envFile,
    SETTLEMENT_ADMIN_TOKEN: randomBytes(32).toString("hex"),
    ATTRIBUTION_SERVICE_TOKEN: token,
    GATEWAY_ATTRIBUTION_TOKEN: token,
  };
  const interpolate = (v: string) =>
    v.replace(/\$\{([A-Z_]+)(?::([-?])([^}]*))?\}/g, (_m, name: string, op?: string, arg?: string) => {
      const value = dotEnv[name];
      if (value) return value;
      assert.notEqual(op, "?", `compose requires ${name}`);
      return op === "-" ? (arg ?? "") : "";
    });
  const translate = (key: string, v: string): string => {
    if (key === "DATABASE_URL") return database.url;
    if (key === "REDIS_URL") return "redis://127.0.0.1:6379";
    if (key === "QUEUE_PREFIX") return prefix;
    const portOf = APPS.find((a) => `${a.toUpperCase()}_PORT` === key);
    if (portOf) return String(ports.get(portOf));
    return v
      .replace(/^\/data(?=\/|$)/, data)
      .replace(
        /\/\/(chain|datanets|attribution|gateway|settlement|explorer|factory):\d+/g,
        (_m, host: string) => `//127.0.0.1:${ports.get(host)}`,
      );
  };
  serviceEnv = (name) => {
    const merged: Record<string, string> = {
      PATH: process.env.PATH!,
      HOME: process.env.HOME!,
      ...docker.env,
      ...(name === "chain" ? {} : dotEnv),
    };
    for (const [k, v] of Object.entries(compose.services[name]!.environment ?? {}))
      merged[k] = interpolate(String(v));
    return Object.fromEntries(Object.entries(merged).map(([k, v]) => [k, translate(k, v)]));
  };
});

after(async () => {
  for (const c of children)
    if (c.exitCode === null && c.pid) {
      try {
        process.kill(-c.pid, "SIGKILL");
      } catch {}
    }
  await Promise.all(children.map((c) => (c.exitCode === null ? exited(c) : null)));
  await database?.drop().catch(() => {});
  if (prefix) await deletePrefix(prefix).catch(() => {});
  rmSync(dir, { recursive: true, force: true });
});

test("the Dockerfile parses into steps the replay knows, and installs the devDependencies its commands need", () => {
  assert.equal(docker.env.NODE_ENV, "production");
  assert.ok(docker.steps.some((s) => s.kind === "RUN" && /npm ci/.test(s.command)));
  for (const bin of ["tsx", "hardhat"])
    assert.ok(
      existsSync(path.join(app, "node_modules", ".bin", bin)),
      `${bin} installed under NODE_ENV=production`,
    );
  assert.ok(existsSync(path.join(app, "packages", "db", "src", "generated", "prisma")), "the Prisma client");
  assert.ok(existsSync(path.join(app, "contracts", "artifacts")), "the compiled contracts");
  assert.ok(existsSync(path.join(app, "apps", "explorer", "dist", "index.html")), "the explorer's web app");
  assert.ok(
    existsSync(path.join(app, "packages", "suffix-native", "build", "Release", "suffix_native.node")),
    "the native SA-IS addon (built by npm ci with the build stage's tools)",
  );
  assert.ok(
    existsSync(path.join(app, "packages", "decode-native", "build", "Release", "decode_native.node")),
    "the native decode-step addon (built by npm ci with the build stage's tools)",
  );
});

test("every compose service's command starts from the replayed image and passes its health check", async () => {
  // The dev chain node (on loopback here), then the one-off jobs in compose's order.
  const chainSvc = compose.services.chain!;
  const chainCmd = chainSvc.command.map((a, i, all) =>
    all[i - 1] === "--port" ? String(ports.get("chain")) : all[i - 1] === "--hostname" ? "127.0.0.1" : a,
  );
  const chain = start("chain", chainCmd, path.join(app, rel(chainSvc.working_dir)), serviceEnv("chain"));
  await until(
    "the chain answers eth_chainId",
    120_000,
    async () =>
      (
        await fetch(`http://127.0.0.1:${ports.get("chain")}`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "eth_chainId", params: [] }),
        })
      ).ok,
    chain,
    "chain",
  );
  await job("deploy");
  assert.ok(
    existsSync(path.join(data, "chain", "addresses.json")),
    "deploy wrote the addresses on the volume",
  );
  await job("migrate");

  // Every service, as compose runs it; its health check must pass.
  const running = APPS.map((name) => {
    const svc = compose.services[name]!;
    return { name, child: start(name, svc.command, path.join(app, rel(svc.working_dir)), serviceEnv(name)) };
  });
  await Promise.all(
    running.map(({ name, child }) =>
      until(
        `${name} is ready`,
        300_000,
        async () => {
          // The compose health check itself, pointed at the service's port here.
          const check = compose.services[name]!.healthcheck!.test.slice(1).map((a) =>
            a.replace(/127\.0\.0\.1:\d+/, `127.0.0.1:${ports.get(name)}`),
          );
          return (await exited(spawn(check[0]!, check.slice(1), { cwd: app, stdio: "ignore" }))) === 0;
        },
        child,
        name,
      ),
    ),
  );
  for (const { name, child } of running) assert.equal(child.exitCode, null, `${name} still runs`);
});
