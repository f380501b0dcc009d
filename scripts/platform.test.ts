// Smoke test of `npm start`'s supervisor: it migrates, starts a local chain and the four
// services on free ports, every /readyz answers 200, and Ctrl-C stops everything.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import path from "node:path";
import { after, test } from "node:test";
import { fileURLToPath } from "node:url";
import { createTestDatabase } from "@openledger/db/testing";
import { deletePrefix, uniquePrefix } from "@openledger/queue/testing";
import { freePort } from "@openledger/service-kit/testing";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

test("the platform supervisor brings up the chain and all four services, then stops them", async () => {
  const database = await createTestDatabase("platform", { migrate: false });
  const prefix = uniquePrefix("platform");
  after(async () => {
    await database.drop();
    await deletePrefix(prefix);
  });
  const ports = {
    DATANETS_PORT: await freePort(),
    ATTRIBUTION_PORT: await freePort(),
    GATEWAY_PORT: await freePort(),
    SETTLEMENT_PORT: await freePort(),
  };
  const chainPort = await freePort();
  const child = spawn(process.execPath, ["--import", "tsx", path.join(ROOT, "scripts", "platform.ts")], {
    cwd: ROOT,
    env: {
      ...process.env,
      ...Object.fromEntries(Object.entries(ports).map(([k, v]) => [k, String(v)])),
      DATABASE_URL: database.url,
      QUEUE_PREFIX: prefix,
      CHAIN_RPC_URL: `http://127.0.0.1:${chainPort}`,
      CHAIN_ADDRESSES_FILE: path.join(ROOT, ".data", "test", `addresses.${chainPort}.json`),
      LOG_LEVEL: "warn",
    },
    stdio: ["pipe", "pipe", "pipe"],
  });
  let output = "";
  child.stdout.on("data", (d: Buffer) => {
    output += d.toString();
  });
  child.stderr.on("data", (d: Buffer) => {
    output += d.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  try {
    // Up to 6 minutes: the supervisor's own readiness deadline (5 min) fails first, with its reason.
    for (let i = 0; i < 3600 && !output.includes("OpenLedger is up"); i++) {
      if (child.exitCode !== null) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.match(output, /OpenLedger is up/, output.slice(-3000));
    for (const [name, port] of Object.entries(ports)) {
      const res = await fetch(`http://127.0.0.1:${port}/readyz`);
      assert.equal(res.status, 200, `${name} is not ready`);
      assert.match(output, new RegExp(`http://127.0.0.1:${port}`), `${name}'s address is printed`);
    }
    const chainId = await fetch(`http://127.0.0.1:${chainPort}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "eth_chainId", params: [] }),
    }).then((r) => r.json() as Promise<{ result: string }>);
    assert.equal(Number(chainId.result), 31337);
  } finally {
    child.kill("SIGINT");
  }
  assert.equal(await exited, 0);
  for (const port of [...Object.values(ports), chainPort]) {
    await assert.rejects(fetch(`http://127.0.0.1:${port}/healthz`), "nothing listens after the stop");
  }
});
