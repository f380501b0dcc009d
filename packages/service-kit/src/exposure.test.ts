import assert from "node:assert/strict";
import { test } from "node:test";
import {
  ConfigError,
  EXPOSED_REQUIRES,
  parseConfig,
  SERVICE_ENVS,
  type ServiceName,
  settlementEnv,
} from "@openledger/config";
import { assertSafeExposure, isLoopbackHost } from "./exposure.ts";
import { buildService } from "./service.ts";

test("loopback hosts stay on the machine; everything else is exposed", () => {
  for (const h of ["127.0.0.1", "127.1.2.3", "localhost", "LOCALHOST", "::1", "[::1]", "::ffff:127.0.0.1"])
    assert.equal(isLoopbackHost(h), true, h);
  for (const h of ["0.0.0.0", "::", "10.0.0.5", "192.168.1.2", "example.com", "::ffff:10.0.0.1", "128.0.0.1"])
    assert.equal(isLoopbackHost(h), false, h);
});

const SERVICES = Object.keys(SERVICE_ENVS) as ServiceName[];

test("every service, exposed without a variable EXPOSED_REQUIRES names, refuses with a message naming it", () => {
  for (const service of SERVICES) {
    const required = EXPOSED_REQUIRES[service];
    const config = parseConfig(service, SERVICE_ENVS[service], { HOST: "0.0.0.0" });
    if (required.length === 0) {
      assert.doesNotThrow(() => assertSafeExposure(service, config), service);
      continue;
    }
    assert.throws(
      () => assertSafeExposure(service, config),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError, service);
        for (const r of required) {
          assert.match(err.message, new RegExp(`${r.variable}: required when HOST=0\\.0\\.0\\.0`), service);
        }
        return true;
      },
    );
    // Each variable alone is a refusal (the rest set).
    const all = Object.fromEntries(required.map((r) => [r.variable, "t".repeat(32)]));
    for (const r of required) {
      const partial = parseConfig(service, SERVICE_ENVS[service], { ...all, HOST: "::", [r.variable]: "" });
      assert.throws(
        () => assertSafeExposure(service, partial),
        new RegExp(r.variable),
        `${service} ${r.variable}`,
      );
    }
    const ok = parseConfig(service, SERVICE_ENVS[service], { ...all, HOST: "0.0.0.0" });
    assert.doesNotThrow(() => assertSafeExposure(service, ok), service);
    // On loopback nothing is required (npm start, tests).
    const local = parseConfig(service, SERVICE_ENVS[service], {});
    assert.doesNotThrow(() => assertSafeExposure(service, local), service);
  }
});

test("an exposed dev profile starts but is warned about", () => {
  const cfg = parseConfig("settlement", settlementEnv, {
    HOST: "0.0.0.0",
    CHAIN_PROFILE: "dev",
    SETTLEMENT_ADMIN_TOKEN: "t".repeat(32),
  });
  assert.match(assertSafeExposure("settlement", cfg).join("\n"), /CHAIN_PROFILE=dev/);
  assert.deepEqual(assertSafeExposure("settlement", { ...cfg, CHAIN_PROFILE: "production" }), []);
});

test("buildService refuses before it connects to anything: the exposed settlement without its admin token", async () => {
  // Before this check it started and listened on 0.0.0.0 without it. The database and Redis named here
  // do not exist: a refusal that came after connecting would fail differently.
  const config = parseConfig("settlement", settlementEnv, {
    HOST: "0.0.0.0",
    DATABASE_URL: "postgresql://nobody@127.0.0.1:1/none",
    REDIS_URL: "redis://127.0.0.1:1",
    LOG_LEVEL: "silent",
  });
  await assert.rejects(
    buildService({ name: "settlement", title: "t", description: "t", routes: async () => {} }, config),
    (err: unknown) => err instanceof ConfigError && /SETTLEMENT_ADMIN_TOKEN: required/.test(err.message),
  );
});
