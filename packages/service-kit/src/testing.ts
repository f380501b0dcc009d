import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { after, before, test } from "node:test";
import type { BaseConfig } from "@openledger/config";
import { createTestDatabase } from "@openledger/db/testing";
import { deletePrefix, freePort, TEST_REDIS_URL, uniquePrefix } from "@openledger/queue/testing";

export { freePort };

import type { App } from "./service.ts";

/** An environment for one test file: its own Postgres schema and Redis key prefix. */
export async function testEnvironment(label: string) {
  const database = await createTestDatabase(label);
  const prefix = uniquePrefix(label);
  return {
    env: {
      DATABASE_URL: database.url,
      REDIS_URL: TEST_REDIS_URL,
      QUEUE_PREFIX: prefix,
      LOG_LEVEL: "silent",
      // Tests run against local chains with the well-known dev accounts.
      CHAIN_PROFILE: "dev",
      // A test that closes an epoch wants its outcome however loaded the machine is; the 202 after
      // the wait is tested with its own value (settlement's epochs-safety.test.ts).
      SETTLEMENT_EPOCH_CLOSE_WAIT_MS: "600000",
    } as Record<string, string>,
    database,
    prefix,
    async cleanup() {
      await database.drop();
      await deletePrefix(prefix);
    },
  };
}

/** A real, throw-away redis-server on its own port, to test outages without touching the shared one. */
export async function startRedis(
  port?: number,
): Promise<{ url: string; port: number; stop(): Promise<void> }> {
  const p = port ?? (await freePort());
  const child: ChildProcess = spawn(
    "redis-server",
    ["--port", String(p), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  await new Promise<void>((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      if (chunk.toString().includes("Ready to accept connections")) resolve();
    };
    child.stdout?.on("data", onData);
    child.once("error", reject);
    child.once("exit", (code) => reject(new Error(`redis-server exited early with code ${code}`)));
  });
  return {
    url: `redis://127.0.0.1:${p}`,
    port: p,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once("exit", () => resolve());
        child.kill("SIGKILL");
      }),
  };
}

/**
 * Polls `fn` every 200 ms until it returns something truthy (returned), failing with
 * "timed out waiting for <what>" after `ms`. For state a test cannot await directly (jobs, chain, other processes).
 */
export async function waitFor<T>(
  what: string,
  fn: () => Promise<T | undefined | null | false>,
  ms = 60_000,
): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Polls /readyz until it answers `status` (readiness is eventual), failing after ~10 s. */
export async function waitForReadyz(app: App, status: number, tries = 100): Promise<void> {
  let last = 0;
  for (let i = 0; i < tries; i++) {
    last = (await app.inject({ method: "GET", url: "/readyz" })).statusCode;
    if (last === status) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail(`/readyz stayed ${last}, expected ${status}`);
}

/** Polls /readyz until the check `name` reports `ok` (dependencies reconnect eventually), failing after ~10 s. */
export async function waitForCheck(app: App, name: string, ok: boolean, tries = 100): Promise<void> {
  let last: unknown;
  for (let i = 0; i < tries; i++) {
    const body = (await app.inject({ method: "GET", url: "/readyz" })).json();
    last = body.checks?.find((c: { name: string }) => c.name === name);
    if ((last as { ok?: boolean } | undefined)?.ok === ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail(`/readyz check ${name} stayed ${JSON.stringify(last)}, expected ok=${ok}`);
}

/**
 * The checks every service must pass, registered as node:test tests: liveness,
 * readiness against the real Postgres and Redis, the error shape, and OpenAPI docs.
 */
export function describeServiceBasics<C extends BaseConfig>(
  label: string,
  makeConfig: (env: Record<string, string>) => C,
  build: (config: C) => Promise<App>,
  /** The service's own metrics, beyond the kit's (each must be exported at /metrics). */
  metricNames: readonly string[] = [],
) {
  let env: Awaited<ReturnType<typeof testEnvironment>>;
  let app: App;
  // Built in `before`, so each test passes alone and by name.
  before(async () => {
    env = await testEnvironment(label);
    app = await build(makeConfig(env.env));
  });
  after(async () => {
    await app?.close();
    await env?.cleanup();
  });

  test(`${label}: /healthz and /readyz answer 200 with Postgres and Redis up`, async () => {
    const health = await app.inject({ method: "GET", url: "/healthz" });
    assert.equal(health.statusCode, 200);
    assert.deepEqual(health.json(), { status: "ok" });
    await waitForReadyz(app, 200);
    const ready = await app.inject({ method: "GET", url: "/readyz" });
    assert.equal(ready.statusCode, 200, ready.body);
    const body = ready.json();
    // The chain may or may not answer here: it is a dependency services ride out (degraded).
    assert.match(body.status, /^(ready|degraded)$/);
    assert.deepEqual(
      body.checks.map((c: { name: string; ok: boolean }) => [c.name, c.name === "chain" || c.ok]),
      [
        ["postgres", true],
        ["redis", true],
        ["chain", true],
      ],
    );
  });

  test(`${label}: unknown routes answer the one error shape`, async () => {
    const res = await app.inject({ method: "GET", url: "/no/such/route" });
    assert.equal(res.statusCode, 404);
    assert.deepEqual(res.json(), { error: { code: "NOT_FOUND", message: "no route GET /no/such/route" } });
  });

  test(`${label}: OpenAPI docs are served at /docs`, async () => {
    const spec = await app.inject({ method: "GET", url: "/docs/json" });
    assert.equal(spec.statusCode, 200);
    const doc = spec.json();
    assert.match(doc.openapi, /^3\./);
    assert.ok(doc.paths["/readyz"], "readyz is documented");
    assert.equal(doc.components.securitySchemes.bearer.scheme, "bearer", "routes can declare bearer auth");
    const ui = await app.inject({ method: "GET", url: "/docs/" });
    assert.equal(ui.statusCode, 200);
    assert.match(ui.headers["content-type"] as string, /text\/html/);
  });

  test(`${label}: /metrics exposes Prometheus metrics`, async () => {
    const res = await app.inject({ method: "GET", url: "/metrics" });
    assert.equal(res.statusCode, 200);
    assert.match(res.body, /process_cpu_seconds_total\{service="/);
    assert.match(res.body, /http_request_duration_seconds_bucket/);
    for (const name of metricNames) assert.match(res.body, new RegExp(`# TYPE ${name} `), `${name} exported`);
  });
}
