import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { after, test } from "node:test";
import { baseEnv, parseConfig } from "@openledger/config";
import { AppError } from "@openledger/errors";
import { createLogger } from "@openledger/logger";
import Fastify from "fastify";
import { serializerCompiler, validatorCompiler } from "fastify-type-provider-zod";
import { z } from "zod";
import { registerHealthRoutes } from "./health.ts";
import { buildService, type ServiceDefinition } from "./service.ts";
import { startRedis, testEnvironment, waitForCheck } from "./testing.ts";

type Cfg = z.output<typeof baseEnv>;

const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c();
});

// A service definition with a few routes that exercise the shared error handling.
const probeService: ServiceDefinition<Cfg> = {
  name: "gateway",
  title: "probe",
  description: "service-kit test",
  routes: async (app) => {
    app.post(
      "/echo",
      { schema: { body: z.object({ amount: z.coerce.bigint().positive(), name: z.string().min(1) }) } },
      async (request) => ({ ok: true, amount: String((request.body as { amount: bigint }).amount) }),
    );
    app.get("/conflict", async () => {
      throw new AppError("CONFLICT", "datanet slug already taken");
    });
    app.get("/boom", async () => {
      throw new Error("secret internal detail");
    });
    app.get("/stake", async () => {
      throw new AppError("INSUFFICIENT_STAKE", "stake 100 OPEN first", {
        status: 403,
        details: { requiredWei: "100" },
      });
    });
    app.get("/later", async () => {
      throw new AppError("INDEX_NOT_READY", "building", { status: 409, headers: { "retry-after": "5" } });
    });
    app.get("/chain-down", async () => {
      throw new AppError("CHAIN_UNAVAILABLE", "rpc http://key@host refused", { status: 503 });
    });
  },
};

async function build(env: Record<string, string>) {
  const app = await buildService(probeService, parseConfig("probe", baseEnv, env));
  cleanups.push(() => app.close());
  return app;
}

test("client errors get a code and a message; 5xx hide internals", async () => {
  const env = await testEnvironment("kit_errors");
  cleanups.push(() => env.cleanup());
  const app = await build(env.env);

  const bad = await app.inject({ method: "POST", url: "/echo", payload: { amount: "-5", name: "" } });
  assert.equal(bad.statusCode, 400);
  const badBody = bad.json();
  assert.equal(badBody.error.code, "VALIDATION_FAILED");
  assert.match(badBody.error.message, /body\.amount/);
  assert.match(badBody.error.message, /body\.name/);

  const malformed = await app.inject({
    method: "POST",
    url: "/echo",
    headers: { "content-type": "application/json" },
    payload: "{not json",
  });
  assert.equal(malformed.statusCode, 400);
  assert.equal(malformed.json().error.code, "BAD_REQUEST");

  const wrongType = await app.inject({
    method: "POST",
    url: "/echo",
    headers: { "content-type": "application/x-thing" },
    payload: "x",
  });
  assert.equal(wrongType.statusCode, 415);
  assert.equal(wrongType.json().error.code, "UNSUPPORTED_MEDIA_TYPE");

  const tooBig = await app.inject({
    method: "POST",
    url: "/echo",
    payload: { amount: "1", name: "x".repeat(2 * 1024 * 1024) },
  });
  assert.equal(tooBig.statusCode, 413);
  assert.equal(tooBig.json().error.code, "PAYLOAD_TOO_LARGE");

  const conflict = await app.inject({ method: "GET", url: "/conflict" });
  assert.equal(conflict.statusCode, 409);
  assert.deepEqual(conflict.json(), { error: { code: "CONFLICT", message: "datanet slug already taken" } });

  // An open code carries its own status, headers and details; a 5xx keeps its code, never its message.
  const stake = await app.inject({ method: "GET", url: "/stake" });
  assert.equal(stake.statusCode, 403);
  assert.deepEqual(stake.json(), {
    error: { code: "INSUFFICIENT_STAKE", message: "stake 100 OPEN first", details: { requiredWei: "100" } },
  });
  const later = await app.inject({ method: "GET", url: "/later" });
  assert.equal(later.statusCode, 409);
  assert.equal(later.headers["retry-after"], "5");
  assert.equal(later.json().error.code, "INDEX_NOT_READY");
  const down = await app.inject({ method: "GET", url: "/chain-down" });
  assert.equal(down.statusCode, 503);
  assert.deepEqual(down.json(), {
    error: { code: "CHAIN_UNAVAILABLE", message: "a dependency is unavailable; retry shortly" },
  });
  assert.throws(() => new AppError("ODD", "x", { status: 200 }), RangeError, "only error statuses");

  const boom = await app.inject({ method: "GET", url: "/boom" });
  assert.equal(boom.statusCode, 500);
  assert.deepEqual(boom.json(), { error: { code: "INTERNAL", message: "internal error" } });
  assert.doesNotMatch(boom.body, /secret/);

  const ok = await app.inject({
    method: "POST",
    url: "/echo",
    payload: { amount: "12345678901234567890123", name: "a" },
  });
  assert.equal(ok.statusCode, 200);
  assert.deepEqual(ok.json(), { ok: true, amount: "12345678901234567890123" });
});

test("Redis going down leaves /readyz 200 'degraded' at once (the service rides it out), 'ready' when it returns", async () => {
  const env = await testEnvironment("kit_redis");
  cleanups.push(() => env.cleanup());
  const redis = await startRedis();
  cleanups.push(() => redis.stop());
  const app = await build({ ...env.env, REDIS_URL: redis.url, READY_TIMEOUT_MS: "500" });
  await waitForCheck(app, "redis", true);

  await redis.stop();
  await waitForCheck(app, "redis", false);
  const down = await app.inject({ method: "GET", url: "/readyz" });
  assert.equal(down.statusCode, 200, down.body);
  const body = down.json();
  assert.equal(body.status, "degraded");
  const check = (name: string) => body.checks.find((c: { name: string }) => c.name === name);
  assert.deepEqual([check("postgres").ok, check("postgres").impact], [true, "none"]);
  assert.deepEqual([check("redis").ok, check("redis").impact], [false, "degraded"]);
  // Known down from the client's state, not found out by waiting for a timeout.
  assert.match(check("redis").error, /not connected/);
  // /healthz is about the process, not its dependencies.
  assert.equal((await app.inject({ method: "GET", url: "/healthz" })).statusCode, 200);

  const again = await startRedis(redis.port);
  cleanups.push(() => again.stop());
  await waitForCheck(app, "redis", true);
});

test("a service that cannot do without Redis says unready; a dependency it rides out only so long turns unready after it", async () => {
  const env = await testEnvironment("kit_redis_required");
  cleanups.push(() => env.cleanup());
  const required = await buildService(
    { ...probeService, readiness: () => ({ redis: "unready" }) },
    parseConfig("probe", baseEnv, { ...env.env, REDIS_URL: "redis://127.0.0.1:1" }),
  );
  cleanups.push(() => required.close());
  const res = await required.inject({ method: "GET", url: "/readyz" });
  assert.equal(res.statusCode, 503);
  assert.match(res.json().error.message, /redis/);

  const riding = await buildService(
    { ...probeService, readiness: () => ({ redis: { degradedForMs: 300 } }) },
    parseConfig("probe", baseEnv, { ...env.env, REDIS_URL: "redis://127.0.0.1:1" }),
  );
  cleanups.push(() => riding.close());
  const first = await riding.inject({ method: "GET", url: "/readyz" });
  assert.equal(first.statusCode, 200, first.body);
  assert.equal(first.json().status, "degraded");
  await new Promise((r) => setTimeout(r, 350));
  const later = await riding.inject({ method: "GET", url: "/readyz" });
  assert.equal(later.statusCode, 503, later.body);
  assert.ok(later.json().checks.find((c: { name: string }) => c.name === "redis").downForMs >= 300);
});

test("an unreachable Postgres answers 503 fast instead of hanging", async () => {
  const env = await testEnvironment("kit_pg");
  cleanups.push(() => env.cleanup());
  const app = await build({
    ...env.env,
    DATABASE_URL: "postgresql://postgres@127.0.0.1:1/openledger",
    READY_TIMEOUT_MS: "500",
  });
  const res = await app.inject({ method: "GET", url: "/readyz" });
  assert.equal(res.statusCode, 503);
  assert.match(res.json().error.message, /postgres/);
});

test("a probe that hangs is reported at once by the next polls instead of being waited on again", async () => {
  const env = await testEnvironment("kit_hang");
  cleanups.push(() => env.cleanup());
  let release: () => void = () => {};
  const hanging = new Promise<void>((r) => {
    release = r;
  });
  const app = Fastify();
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  registerHealthRoutes(app, [{ name: "frozen", whenDown: "unready", check: () => hanging }], 100);
  cleanups.push(async () => {
    release();
    await app.close();
  });
  const first = await app.inject({ method: "GET", url: "/readyz" });
  assert.equal(first.statusCode, 503);
  assert.match(first.json().checks[0].error, /no answer within 100 ms/);
  const second = await app.inject({ method: "GET", url: "/readyz" });
  assert.equal(second.statusCode, 503);
  assert.match(second.json().checks[0].error, /probe still waiting/);
  release();
  await hanging;
  await new Promise((r) => setImmediate(r));
  const third = await app.inject({ method: "GET", url: "/readyz" });
  assert.equal(third.statusCode, 200, third.body);
});

test("health and readiness polls and metric scrapes log at debug; other requests at info", async () => {
  const env = await testEnvironment("kit_logs");
  cleanups.push(() => env.cleanup());
  const lines: { msg?: string; req?: { url?: string }; level: number }[] = [];
  const destination = new Writable({
    write(chunk, _enc, done) {
      for (const l of String(chunk).split("\n").filter(Boolean)) lines.push(JSON.parse(l));
      done();
    },
  });
  const logger = createLogger({ name: "probe", level: "info", destination });
  const app = await buildService(probeService, parseConfig("probe", baseEnv, env.env), { logger });
  cleanups.push(() => app.close());
  for (const url of ["/healthz", "/readyz", "/metrics"]) await app.inject({ method: "GET", url });
  await app.inject({ method: "GET", url: "/conflict" });
  await new Promise((r) => setImmediate(r));
  const urls = lines.filter((l) => l.msg === "incoming request").map((l) => l.req?.url);
  assert.deepEqual(urls, ["/conflict"]);
  assert.equal(lines.filter((l) => l.msg === "poll").length, 0, "polls are debug lines");
  // At debug they are there, one line each.
  const debugLines: { msg?: string; url?: string; level: number }[] = [];
  const debugApp = await buildService(probeService, parseConfig("probe", baseEnv, env.env), {
    logger: createLogger({
      name: "probe",
      level: "debug",
      destination: new Writable({
        write(chunk, _enc, done) {
          for (const l of String(chunk).split("\n").filter(Boolean)) debugLines.push(JSON.parse(l));
          done();
        },
      }),
    }),
  });
  cleanups.push(() => debugApp.close());
  await debugApp.inject({ method: "GET", url: "/readyz?verbose=1" });
  await new Promise((r) => setImmediate(r));
  const polls = debugLines.filter((l) => l.msg === "poll");
  assert.deepEqual(
    polls.map((l) => [l.url, l.level]),
    [["/readyz?verbose=1", 20]],
  );
});
