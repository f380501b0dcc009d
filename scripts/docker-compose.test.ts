// No Docker engine runs on the development machines, so docker-compose.yml is checked
// by reading it: every service, file, port, script and variable it names must exist in
// the code, and every variable the code reads must be in .env.example.
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { EXPOSED_REQUIRES, platformEnv, SERVICE_ENVS } from "@openledger/config";
import { parse } from "yaml";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const compose = parse(readFileSync(path.join(ROOT, "docker-compose.yml"), "utf8"), { merge: true });
const envExample = Object.fromEntries(
  readFileSync(path.join(ROOT, ".env.example"), "utf8")
    .split("\n")
    .filter((l) => /^[A-Z_]+=/.test(l))
    .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
);
/** Variables only the containers use (the Postgres image). */
const INFRA_VARS = new Set(["POSTGRES_PASSWORD"]);
const APPS = Object.keys(SERVICE_ENVS) as (keyof typeof SERVICE_ENVS)[];
const PORT_VAR = {
  datanets: "DATANETS_PORT",
  attribution: "ATTRIBUTION_PORT",
  gateway: "GATEWAY_PORT",
  settlement: "SETTLEMENT_PORT",
  explorer: "EXPLORER_PORT",
  factory: "FACTORY_PORT",
} as const;

function schemaVars(): Set<string> {
  const vars = new Set<string>(Object.keys(platformEnv.shape));
  for (const schema of Object.values(SERVICE_ENVS))
    for (const key of Object.keys(schema.shape)) vars.add(key);
  return vars;
}

test("compose runs Postgres, Redis, a chain node, the five services and the explorer, each with a health check", () => {
  const services = Object.keys(compose.services).sort();
  for (const name of ["postgres", "redis", "chain", ...APPS]) {
    assert.ok(services.includes(name), `service ${name} missing`);
    assert.ok(compose.services[name].healthcheck?.test, `service ${name} has no health check`);
  }
});

test("each app service runs its own server entry on its configured port and checks /readyz", () => {
  for (const app of APPS) {
    const svc = compose.services[app];
    const entry = svc.command.find((part: string) => part.endsWith(".ts"));
    assert.equal(entry, `apps/${app}/src/server.ts`);
    assert.ok(existsSync(path.join(ROOT, entry)), `${entry} does not exist`);
    const defaultPort = SERVICE_ENVS[app].parse({})[PORT_VAR[app] as never] as number;
    assert.equal(Number(envExample[PORT_VAR[app]]), defaultPort, `${PORT_VAR[app]} in .env.example`);
    assert.deepEqual(svc.ports, [`127.0.0.1:${defaultPort}:${defaultPort}`], "published on loopback only");
    assert.match(svc.healthcheck.test.join(" "), new RegExp(`127\\.0\\.0\\.1:${defaultPort}/readyz`));
    assert.equal(svc.env_file, ".env");
    assert.equal(svc.image, compose.services.chain.image, "one image for every process");
    for (const dep of ["postgres", "redis", "migrate", "deploy"])
      assert.ok(svc.depends_on[dep], `${app} waits for ${dep}`);
  }
  assert.equal(compose.services.chain.build, ".");
  assert.ok(existsSync(path.join(ROOT, "Dockerfile")));
});

test("crashed services, Postgres and Redis are restarted; the in-memory dev chain is not", () => {
  for (const name of [...APPS, "postgres", "redis"]) {
    assert.equal(compose.services[name].restart, "unless-stopped", `${name} restart policy`);
  }
  assert.equal(compose.services.chain.restart, "no", "a restarted Hardhat node would be a new, empty chain");
  for (const job of ["migrate", "deploy"]) assert.equal(compose.services[job].restart, "no");
});

test("one-off jobs call scripts that exist", () => {
  const contracts = JSON.parse(readFileSync(path.join(ROOT, "contracts", "package.json"), "utf8"));
  assert.deepEqual(compose.services.migrate.command, ["node", "--import", "tsx", "scripts/compose-setup.ts"]);
  assert.ok(existsSync(path.join(ROOT, "scripts", "compose-setup.ts")));
  assert.ok(
    compose.services.migrate.depends_on.deploy,
    "the database is bound to the deployment the deploy job made",
  );
  assert.deepEqual(compose.services.deploy.command, ["npm", "run", "deploy", "-w", "@openledger/contracts"]);
  assert.ok(contracts.scripts.deploy);
  const deployScript = readFileSync(path.join(ROOT, "contracts", "scripts", "deploy.ts"), "utf8");
  for (const v of Object.keys(compose.services.deploy.environment)) {
    assert.match(deployScript, new RegExp(`env\\.${v}\\b`), `deploy script reads ${v}`);
  }
});

test(".env.example names exactly the variables the code reads, with values the schemas accept", () => {
  const known = schemaVars();
  for (const name of Object.keys(envExample)) {
    assert.ok(known.has(name) || INFRA_VARS.has(name), `.env.example sets ${name}, which no schema reads`);
  }
  for (const name of known)
    assert.ok(name in envExample, `${name} is read by a service but missing from .env.example`);
  for (const [app, schema] of Object.entries(SERVICE_ENVS)) {
    const parsed = schema.safeParse(envExample);
    assert.ok(parsed.success, `${app} rejects .env.example: ${parsed.success ? "" : parsed.error.message}`);
  }
  // Variables interpolated in the compose file exist too.
  const text = readFileSync(path.join(ROOT, "docker-compose.yml"), "utf8");
  for (const match of text.matchAll(/\$\{([A-Z_]+)(:[-?][^}]*)?\}/g)) {
    const name = match[1]!;
    assert.ok(name in envExample, `docker-compose.yml uses \${${name}} but .env.example does not set it`);
  }
});

test("what must survive a restart is on named volumes", () => {
  const mounts = (svc: { volumes?: string[] }) =>
    (svc.volumes ?? []).map((v) => ({ volume: v.split(":")[0]!, path: v.split(":")[1]! }));
  const onVolume = (svc: { volumes?: string[] }, p: string) =>
    mounts(svc).some(
      (m) => m.volume in (compose.volumes ?? {}) && (p === m.path || p.startsWith(`${m.path}/`)),
    );
  assert.ok(onVolume(compose.services.postgres, "/var/lib/postgresql/data"), "Postgres data");
  assert.ok(onVolume(compose.services.redis, "/data"), "Redis append-only file (queued jobs)");
  for (const app of APPS) {
    const svc = compose.services[app];
    for (const v of ["CHAIN_ADDRESSES_FILE", "ATTRIBUTION_BLOB_DIR", "GATEWAY_DATA_DIR", "FACTORY_DATA_DIR"])
      assert.ok(onVolume(svc, envExample[v]!), `${app}: ${v}=${envExample[v]} is on a volume`);
  }
  assert.ok(onVolume(compose.services.deploy, compose.services.deploy.environment.ADDRESSES_FILE));
  assert.ok(onVolume(compose.services.migrate, envExample.CHAIN_ADDRESSES_FILE!));
  assert.equal(
    compose.services.deploy.environment.SKIP_IF_DEPLOYED,
    "true",
    "a running chain keeps its deployment",
  );
});

test("safe when exposed: containers bind 0.0.0.0, so compose requires every token the services require off loopback; every port (the Hardhat node's too) is published on 127.0.0.1 only", () => {
  // Before: HOST=0.0.0.0, an empty admin token, and every port (8545 with Hardhat's public keys
  // included) published on all interfaces.
  assert.equal(envExample.HOST, "0.0.0.0", "inside the containers");
  for (const app of APPS) {
    const environment = compose.services[app].environment ?? {};
    for (const { variable } of EXPOSED_REQUIRES[app]) {
      assert.match(
        String(environment[variable]),
        new RegExp(`^\\$\\{${variable}:\\?`),
        `${app}: compose refuses to start without ${variable}`,
      );
      assert.equal(envExample[variable], "", `.env.example ships no value for ${variable} (a known secret)`);
    }
  }
  for (const [name, svc] of Object.entries(compose.services) as [string, { ports?: string[] }][])
    for (const p of svc.ports ?? []) assert.match(p, /^127\.0\.0\.1:/, `${name} publishes ${p}`);
});
