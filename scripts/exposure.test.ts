// The "exposed admin route" attack of issue #13, against the real server processes: a service started
// on a HOST that is not loopback without the tokens packages/config's EXPOSED_REQUIRES names for it
// refuses to start (exit 78, EX_CONFIG) with a message naming each missing variable, and never listens.
// Before: `.env.example` had HOST=0.0.0.0 with empty tokens, and each service started and listened.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { connect } from "node:net";
import path from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { EXPOSED_REQUIRES, SERVICE_ENVS, type ServiceName } from "@openledger/config";
import { freePort } from "@openledger/service-kit/testing";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

function run(service: ServiceName, env: Record<string, string>) {
  return new Promise<{ code: number | null; stderr: string }>((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ["--import", "tsx", path.join(ROOT, "apps", service, "src", "server.ts")],
      {
        cwd: ROOT,
        env,
        stdio: ["ignore", "ignore", "pipe"],
      },
    );
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    child.once("error", reject);
    child.once("exit", (code) => resolve({ code, stderr }));
  });
}

const listening = (port: number) =>
  new Promise<boolean>((resolve) => {
    const s = connect(port, "127.0.0.1");
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });

for (const service of Object.keys(SERVICE_ENVS) as ServiceName[]) {
  const required = EXPOSED_REQUIRES[service];
  if (required.length === 0) continue;
  test(`${service} on HOST=0.0.0.0 without ${required.map((r) => r.variable).join(", ")} refuses to start`, async () => {
    const port = await freePort();
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(process.env)) if (v !== undefined) env[k] = v;
    for (const r of required) delete env[r.variable];
    Object.assign(env, {
      HOST: "0.0.0.0",
      [`${service.toUpperCase()}_PORT`]: String(port),
      LOG_LEVEL: "silent",
      // Nothing here exists: the refusal comes before any connection.
      DATABASE_URL: "postgresql://nobody@127.0.0.1:1/none",
      REDIS_URL: "redis://127.0.0.1:1",
      CHAIN_RPC_URL: "http://127.0.0.1:1",
    });
    const { code, stderr } = await run(service, env);
    assert.equal(code, 78, stderr);
    for (const r of required)
      assert.match(stderr, new RegExp(`${r.variable}: required when HOST=0\\.0\\.0\\.0`));
    assert.match(stderr, /HOST=127\.0\.0\.1/, "says how to run it locally instead");
    assert.doesNotMatch(stderr, /\n\s+at /, "a message, not a stack trace");
    assert.equal(await listening(port), false);
  });
}
