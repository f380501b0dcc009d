import assert from "node:assert/strict";
import { test } from "node:test";
import { attributionEnv, ConfigError, datanetsEnv, gatewayEnv, parseConfig, platformEnv } from "./index.ts";

test("defaults work on a developer machine", () => {
  const cfg = parseConfig("datanets", datanetsEnv, {});
  assert.equal(cfg.DATANETS_PORT, 4001);
  assert.equal(cfg.DATABASE_URL, "postgresql://postgres@127.0.0.1:5432/openledger");
  assert.equal(cfg.REDIS_URL, "redis://127.0.0.1:6379");
  assert.equal(cfg.RUN_WORKERS, true);
});

test("values are coerced and empty strings fall back to defaults", () => {
  const cfg = parseConfig("gateway", gatewayEnv, { GATEWAY_PORT: "5003", LOG_LEVEL: "", RUN_WORKERS: "0" });
  assert.equal(cfg.GATEWAY_PORT, 5003);
  assert.equal(cfg.LOG_LEVEL, "info");
  assert.equal(cfg.RUN_WORKERS, false);
});

test("a bad value names the variable and why", () => {
  assert.throws(
    () =>
      parseConfig("gateway", gatewayEnv, {
        GATEWAY_PORT: "70000",
        DATABASE_URL: "mysql://x@y/z",
        LOG_LEVEL: "loud",
      }),
    (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      const vars = err.problems.map((p) => p.variable).sort();
      assert.deepEqual(vars, ["DATABASE_URL", "GATEWAY_PORT", "LOG_LEVEL"]);
      assert.match(err.message, /Invalid configuration for gateway/);
      assert.match(err.message, /DATABASE_URL: must be a postgres/);
      return true;
    },
  );
});

test("PLATFORM_VALIDATOR_PORTS lists the further validators' ports; empty leaves them to the default", () => {
  assert.deepEqual(parseConfig("platform", platformEnv, {}).PLATFORM_VALIDATOR_PORTS, []);
  assert.deepEqual(
    parseConfig("platform", platformEnv, { PLATFORM_VALIDATOR_PORTS: "5412, 5422" }).PLATFORM_VALIDATOR_PORTS,
    [5412, 5422],
  );
  assert.throws(
    () => parseConfig("platform", platformEnv, { PLATFORM_VALIDATOR_PORTS: "5412,x" }),
    (err: unknown) =>
      err instanceof ConfigError && /^PLATFORM_VALIDATOR_PORTS/.test(err.problems[0]?.variable ?? ""),
  );
});

test("ATTRIBUTION_ADAPTER_SOURCE: dir (default) or a gateway's http(s) URL, or several replicas' URLs", () => {
  assert.equal(parseConfig("attribution", attributionEnv, {}).ATTRIBUTION_ADAPTER_SOURCE, "dir");
  const url = parseConfig("attribution", attributionEnv, {
    ATTRIBUTION_ADAPTER_SOURCE: "https://gw.example.org/",
  });
  assert.equal(url.ATTRIBUTION_ADAPTER_SOURCE, "https://gw.example.org");
  const replicas = parseConfig("attribution", attributionEnv, {
    ATTRIBUTION_ADAPTER_SOURCE: "https://gw-1.example.org/, http://gw-2.example.org:4003",
  });
  assert.equal(replicas.ATTRIBUTION_ADAPTER_SOURCE, "https://gw-1.example.org,http://gw-2.example.org:4003");
  for (const bad of [
    "gateway",
    "ftp://gw.example.org",
    "/data/gateway",
    "https://gw.example.org,dir",
    "https://a,",
  ]) {
    assert.throws(
      () => parseConfig("attribution", attributionEnv, { ATTRIBUTION_ADAPTER_SOURCE: bad }),
      (err: unknown) =>
        err instanceof ConfigError && err.problems.some((p) => p.variable === "ATTRIBUTION_ADAPTER_SOURCE"),
      bad,
    );
  }
});
