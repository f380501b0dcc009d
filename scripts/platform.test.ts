// Tests of `npm start`'s supervisor with real processes: it migrates, starts a local chain, the
// services and the explorer on free ports, every /readyz answers 200, the explorer reads the services
// on their ports; a SIGKILLed service is restarted while the
// others keep running; Ctrl-C stops everything; losing the chain node stops everything, loudly.
import assert from "node:assert/strict";
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import path from "node:path";
import { after, test } from "node:test";
import { fileURLToPath } from "node:url";
import { rpcChainId } from "@openledger/chain";
import { createTestDatabase } from "@openledger/db/testing";
import { deletePrefix, uniquePrefix } from "@openledger/queue/testing";
import { freePort } from "@openledger/service-kit/testing";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

interface Supervisor {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
  ports: Record<string, number>;
  validatorPorts: number[];
  chainPort: number;
}

async function startSupervisor(label: string, services: string[]): Promise<Supervisor> {
  const database = await createTestDatabase(label, { migrate: false });
  const prefix = uniquePrefix(label);
  after(async () => {
    await database.drop();
    await deletePrefix(prefix);
  });
  const portVars: Record<string, string> = {
    datanets: "DATANETS_PORT",
    attribution: "ATTRIBUTION_PORT",
    gateway: "GATEWAY_PORT",
    settlement: "SETTLEMENT_PORT",
    explorer: "EXPLORER_PORT",
    factory: "FACTORY_PORT",
  };
  const ports: Record<string, number> = {};
  for (const s of services) ports[s] = await freePort();
  // The further local validators (#2, #3) get free ports too: ATTRIBUTION_PORT + 10 / + 20 (the
  // default) may be another test's free port.
  const validatorPorts = services.includes("attribution") ? [await freePort(), await freePort()] : [];
  const chainPort = await freePort();
  const child = spawn(process.execPath, ["--import", "tsx", path.join(ROOT, "scripts", "platform.ts")], {
    cwd: ROOT,
    env: {
      ...process.env,
      ...Object.fromEntries(services.map((s) => [portVars[s], String(ports[s])])),
      PLATFORM_SERVICES: services.join(","),
      PLATFORM_VALIDATOR_PORTS: validatorPorts.join(","),
      PLATFORM_RESTART_MS: "200",
      DATABASE_URL: database.url,
      QUEUE_PREFIX: prefix,
      CHAIN_RPC_URL: `http://127.0.0.1:${chainPort}`,
      CHAIN_ADDRESSES_FILE: path.join(ROOT, ".data", "test", `addresses.${chainPort}.json`),
      LOG_LEVEL: "warn",
    },
    stdio: ["pipe", "pipe", "pipe"],
  });
  let output = "";
  const append = (d: Buffer) => {
    output += d.toString();
  };
  child.stdout!.on("data", append);
  child.stderr!.on("data", append);
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  });
  // Up to 6 minutes: the supervisor's own readiness deadline (5 min) fails first, with its reason.
  for (let i = 0; i < 3600 && !output.includes("OpenLedger is up"); i++) {
    if (child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.match(output, /OpenLedger is up/, output.slice(-3000));
  return { child, output: () => output, exited, ports, validatorPorts, chainPort };
}

/** The supervisor's child processes: pid by what they run (a service's name, or "chain"). */
function childrenOf(pid: number): Map<string, number> {
  const found = new Map<string, number>();
  let listing = "";
  try {
    listing = execFileSync("ps", ["-o", "pid=,args=", "--ppid", String(pid)], { encoding: "utf8" });
  } catch {
    return found; // ps exits 1 when there is none
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

async function status(url: string): Promise<number | string> {
  try {
    return (await fetch(url, { signal: AbortSignal.timeout(10_000) })).status;
  } catch (err) {
    return (err as Error).message;
  }
}

async function until<T>(
  what: string,
  fn: () => Promise<T | undefined> | T | undefined,
  ms = 240_000,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

test("the supervisor brings up the chain, the five services and the explorer, restarts a killed one while the others keep serving, and stops them on Ctrl-C", async () => {
  const p = await startSupervisor("platform", [
    "datanets",
    "attribution",
    "gateway",
    "settlement",
    "explorer",
    "factory",
  ]);
  try {
    for (const [name, port] of Object.entries(p.ports)) {
      // Readiness is live (a chain read over READY_TIMEOUT_MS reads as a dependency down): on a loaded
      // machine a service the supervisor saw ready can answer 503 for a moment, so poll for it.
      let last: number | string = "";
      await until(
        `${name} to be ready`,
        async () => {
          last = await status(`http://127.0.0.1:${port}/readyz`);
          return last === 200 ? true : undefined;
        },
        60_000,
      ).catch(() => assert.fail(`${name} is not ready (${last})`));
      assert.match(p.output(), new RegExp(`http://127.0.0.1:${port}`), `${name}'s address is printed`);
    }
    // The further validators listen on the ports they were given, and say which key they sign with. They get
    // adapters' files from the gateway over HTTP, as validators on other machines do; #1 reads the gateway's
    // store on this machine.
    assert.equal(p.validatorPorts.length, 2);
    const gatewayUrl = `http://127.0.0.1:${p.ports.gateway}`;
    for (const [i, port] of p.validatorPorts.entries()) {
      assert.match(p.output(), new RegExp(`validator-${i + 2}\\s+http://127.0.0.1:${port}`));
      const res = await fetch(`http://127.0.0.1:${port}/v1/validator`);
      assert.equal(res.status, 200, `validator-${i + 2}: ${await res.clone().text()}`);
      assert.equal(((await res.json()) as { adapterSource: string }).adapterSource, gatewayUrl);
    }
    const first = await fetch(`http://127.0.0.1:${p.ports.attribution}/v1/validator`);
    assert.equal(((await first.json()) as { adapterSource: string }).adapterSource, "dir");
    assert.equal(await rpcChainId(`http://127.0.0.1:${p.chainPort}`), 31337);
    // The explorer reaches each service on the port it was given (not the defaults).
    for (const [service, url] of [
      ["datanets", "datanets"],
      ["settlement", "epochs"],
      ["gateway", "catalog"],
    ]) {
      const res = await fetch(`http://127.0.0.1:${p.ports.explorer}/api/${service}/v1/${url}`);
      assert.equal(res.status, 200, `explorer → ${service}: ${await res.text()}`);
    }
    const page = await fetch(`http://127.0.0.1:${p.ports.explorer}/`);
    assert.match(await page.text(), /<div id="root">/, "the explorer serves its web app");

    const before = childrenOf(p.child.pid!);
    assert.deepEqual([...before.keys()].sort(), [
      "attribution",
      "chain",
      "datanets",
      "explorer",
      "factory",
      "gateway",
      "settlement",
    ]);
    process.kill(before.get("settlement")!, "SIGKILL");
    // While settlement is down and coming back, the others answer every poll.
    const others = ["datanets", "attribution", "gateway", "explorer"];
    let polls = 0;
    const restarted = await until("settlement to be restarted and ready", async () => {
      for (const name of others) {
        assert.equal(
          await status(`http://127.0.0.1:${p.ports[name]}/healthz`),
          200,
          `${name} stopped answering`,
        );
      }
      polls++;
      const now = childrenOf(p.child.pid!).get("settlement");
      if (now === undefined || now === before.get("settlement")) return undefined;
      return (await status(`http://127.0.0.1:${p.ports.settlement}/readyz`)) === 200 ? now : undefined;
    });
    assert.ok(polls > 1, "the others were polled while settlement was away");
    assert.notEqual(restarted, before.get("settlement"));
    assert.match(p.output(), /a service exited; restarting it/);
    assert.equal(p.child.exitCode, null, "the supervisor kept running");
    const after = childrenOf(p.child.pid!);
    for (const name of [...others, "chain"]) {
      assert.equal(after.get(name), before.get(name), `${name} was not restarted`);
    }
  } finally {
    p.child.kill("SIGINT");
  }
  assert.equal(await p.exited, 0);
  for (const port of [...Object.values(p.ports), p.chainPort]) {
    await assert.rejects(fetch(`http://127.0.0.1:${port}/healthz`), "nothing listens after the stop");
  }
});

test("losing the in-memory chain node stops the platform, loudly", async () => {
  const p = await startSupervisor("platform_chainloss", ["datanets"]);
  const chainPid = childrenOf(p.child.pid!).get("chain");
  assert.ok(chainPid, "the supervisor runs the chain node");
  process.kill(chainPid, "SIGKILL");
  assert.equal(await p.exited, 1);
  assert.match(p.output(), /THE LOCAL CHAIN NODE EXITED/);
  await assert.rejects(fetch(`http://127.0.0.1:${p.ports.datanets}/healthz`), "datanets was stopped");
});
