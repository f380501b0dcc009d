// The explorer's server against a real datanets service (its own Postgres schema, Redis prefix and a
// local chain): reads are forwarded, writes and the caller's credentials are not, a service that does
// not answer is a 502, pages answer the built index.html and unknown paths a JSON 404.
import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { request as httpRequest } from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { attributionConfig, buildAttribution } from "@openledger/attribution";
import { localAccounts } from "@openledger/chain/dev";
import { type LocalChain, startLocalChain } from "@openledger/chain/testing";
import { TINY_MODEL_ENV } from "@openledger/config";
import { buildDatanets, datanetsConfig } from "@openledger/datanets";
import { ApiKeys, type App } from "@openledger/service-kit";
import { freePort, testEnvironment } from "@openledger/service-kit/testing";
import { privateKeyToAccount } from "viem/accounts";
import { createSiweMessage } from "viem/siwe";
import { buildExplorer, explorerConfig } from "./app.ts";

let dir: string;
let chain: LocalChain;
let env: Awaited<ReturnType<typeof testEnvironment>>;
let datanets: App;
let datanetsUrl: string;
let explorer: App;
let staticDir: string;
let deadPort: number;

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "explorer-app-"));
  const addressesFile = path.join(dir, "addresses.json");
  [env, chain] = await Promise.all([
    testEnvironment("explorer"),
    startLocalChain({ writeAddresses: addressesFile }),
  ]);
  datanets = await buildDatanets(
    datanetsConfig({
      ...env.env,
      CHAIN_RPC_URL: chain.rpcUrl,
      CHAIN_ADDRESSES_FILE: addressesFile,
      DATANETS_SIWE_DOMAIN: "localhost:4001",
      DATANETS_SWEEP_INTERVAL_MS: "0",
      RUN_WORKERS: "false",
    }),
  );
  datanetsUrl = await datanets.listen({ port: 0, host: "127.0.0.1" });
  deadPort = await freePort();
  staticDir = path.join(dir, "dist");
  await mkdir(path.join(staticDir, "assets"), { recursive: true });
  await writeFile(path.join(staticDir, "index.html"), '<!doctype html><div id="root"></div>');
  await writeFile(path.join(staticDir, "assets", "app-abc123.js"), "console.log('explorer')");
  explorer = await buildExplorer(
    explorerConfig({
      LOG_LEVEL: "silent",
      CHAIN_PROFILE: "dev",
      CHAIN_RPC_URL: chain.rpcUrl,
      CHAIN_ADDRESSES_FILE: addressesFile,
      EXPLORER_DATANETS_URL: datanetsUrl,
      EXPLORER_ATTRIBUTION_URL: `http://127.0.0.1:${deadPort}`,
      EXPLORER_STATIC_DIR: staticDir,
    }),
  );
});

after(async () => {
  await explorer?.close();
  await datanets?.close();
  await chain?.stop();
  await env?.cleanup();
  await rm(dir, { recursive: true, force: true });
});

async function signIn(): Promise<string> {
  const account = privateKeyToAccount(localAccounts().users[0]!.privateKey);
  const n = (await datanets.inject({ method: "POST", url: "/v1/auth/nonce" })).json<{
    nonce: string;
    domain: string;
    chainId: number;
  }>();
  const message = createSiweMessage({
    address: account.address,
    chainId: n.chainId,
    domain: n.domain,
    nonce: n.nonce,
    uri: `http://${n.domain}`,
    version: "1",
    issuedAt: new Date(),
  });
  const res = await datanets.inject({
    method: "POST",
    url: "/v1/auth/verify",
    payload: { message, signature: await account.signMessage({ message }) },
  });
  assert.equal(res.statusCode, 200, res.body);
  return `Bearer ${res.json<{ token: string }>().token}`;
}

test("GET /api/<service>/v1/... answers what the service answers", async () => {
  const direct = await fetch(`${datanetsUrl}/v1/datanets?limit=5`);
  const via = await explorer.inject({ method: "GET", url: "/api/datanets/v1/datanets?limit=5" });
  assert.equal(via.statusCode, 200);
  assert.deepEqual(via.json(), await direct.json());
  const missing = await explorer.inject({
    method: "GET",
    url: "/api/datanets/v1/datanets/00000000-0000-4000-8000-000000000000",
  });
  assert.equal(missing.statusCode, 404, "the service's own status comes back");
  assert.equal(missing.json<{ error: { code: string } }>().error.code, "NOT_FOUND");
});

test("the caller's credentials are not forwarded (the explorer only reads public APIs)", async () => {
  const authorization = await signIn();
  const direct = await fetch(`${datanetsUrl}/v1/me`, { headers: { authorization } });
  assert.equal(direct.status, 200, "the token is valid");
  const via = await explorer.inject({
    method: "GET",
    url: "/api/datanets/v1/me",
    headers: { authorization },
  });
  assert.equal(via.statusCode, 401, "…but the explorer does not pass it on");
});

test("writes are not forwarded: POST to the datanets API is a 404 and creates nothing", async () => {
  const authorization = await signIn();
  const before = (await (await fetch(`${datanetsUrl}/v1/datanets`)).json()) as { items: unknown[] };
  const res = await explorer.inject({
    method: "POST",
    url: "/api/datanets/v1/datanets",
    headers: { authorization },
    payload: { slug: "through-the-explorer", name: "x", type: "text", license: "MIT" },
  });
  assert.equal(res.statusCode, 404);
  assert.equal(res.json<{ error: { code: string } }>().error.code, "NOT_FOUND");
  const afterList = (await (await fetch(`${datanetsUrl}/v1/datanets`)).json()) as { items: unknown[] };
  assert.equal(afterList.items.length, before.items.length);
  for (const method of ["PUT", "PATCH", "DELETE"] as const) {
    const r = await explorer.inject({ method, url: "/api/datanets/v1/datanets" });
    assert.equal(r.statusCode, 404, method);
  }
});

/** The error shape every service answers: `{ error: { code, message } }`. */
function assertError(res: { statusCode: number; body: string }, status: number, what: string) {
  assert.equal(res.statusCode, status, `${what}: ${res.body}`);
  const body = JSON.parse(res.body) as { error?: { code?: unknown; message?: unknown } };
  assert.equal(typeof body.error?.code, "string", what);
  assert.equal(typeof body.error?.message, "string", what);
}

/** A raw request: the path goes out exactly as written (fetch and inject would normalize "..", "%2e"). */
function raw(base: string, method: string, rawPath: string) {
  const url = new URL(base);
  return new Promise<{ statusCode: number; body: string }>((resolve, reject) => {
    const req = httpRequest({ host: url.hostname, port: url.port, method, path: rawPath }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => {
        body += d;
      });
      res.on("end", () => resolve({ statusCode: res.statusCode ?? 0, body }));
    });
    req.on("error", reject);
    req.end();
  });
}

test("the forwarding is read-only: no other method, service or path reaches a service (no open relay)", async () => {
  const authorization = await signIn();
  // Every method but GET (and HEAD, a GET without its body) is refused, with the error shape.
  for (const method of ["POST", "PUT", "PATCH", "DELETE", "OPTIONS"] as const) {
    for (const url of [
      "/api/datanets/v1/datanets",
      "/api/settlement/v1/epochs/close",
      "/api/gateway/v1/chat/completions",
    ]) {
      const res = await explorer.inject({
        method,
        url,
        headers: { authorization },
        payload: method === "OPTIONS" ? undefined : {},
      });
      assertError(res, 404, `${method} ${url}`);
    }
  }
  // The one POST read is attribution's /v1/attribute: the same path on another service is refused.
  assertError(
    await explorer.inject({ method: "POST", url: "/api/datanets/v1/attribute", payload: {} }),
    404,
    "POST /v1/attribute to datanets",
  );
  // Unknown services and paths outside the services' /v1 APIs.
  assertError(
    await explorer.inject({ method: "GET", url: "/api/ledger/v1/anything" }),
    400,
    "unknown service",
  );
  for (const url of [
    "/api/datanets/metrics",
    "/api/datanets/docs/json",
    "/api/datanets/readyz",
    "/api/datanets",
  ])
    assertError(await explorer.inject({ method: "GET", url }), 404, url);
  // Dot segments, as sent on the wire (plain or percent-encoded), never climb out of /v1.
  const base = await explorer.listen({ port: 0, host: "127.0.0.1" });
  for (const rawPath of [
    "/api/datanets/v1/../metrics",
    "/api/datanets/v1/%2e%2e/metrics",
    "/api/datanets/v1/x/%2E%2E/%2e%2e/docs/json",
    "/api/datanets/v1/..%2fmetrics",
  ]) {
    const res = await raw(base, "GET", rawPath);
    assert.ok(res.statusCode === 400 || res.statusCode === 404, `${rawPath}: ${res.statusCode} ${res.body}`);
    assertError(res, res.statusCode, rawPath);
    assert.doesNotMatch(res.body, /process_cpu|openapi/, `${rawPath} reached the service`);
  }
  // An encoded "?" stays in the path: it does not turn into the service's query.
  const direct = await fetch(`${datanetsUrl}/v1/datanets?limit=1`);
  assert.equal(direct.status, 200);
  assertError(
    await explorer.inject({ method: "GET", url: "/api/datanets/v1/datanets%3Flimit=1" }),
    404,
    "an encoded ? in the path",
  );
});

test("a service that does not answer is a 502 UPSTREAM_UNAVAILABLE; an unknown service a 400", async () => {
  const res = await explorer.inject({
    method: "POST",
    url: "/api/attribution/v1/attribute",
    payload: { text: "hello", datanetVersionId: "00000000-0000-4000-8000-000000000000" },
  });
  assert.equal(res.statusCode, 502);
  assert.deepEqual(res.json(), {
    error: { code: "UPSTREAM_UNAVAILABLE", message: "the attribution service did not answer" },
  });
  const unknown = await explorer.inject({ method: "GET", url: "/api/ledger/v1/anything" });
  assert.equal(unknown.statusCode, 400);
  assert.equal(unknown.json<{ error: { code: string } }>().error.code, "VALIDATION_FAILED");
  const notV1 = await explorer.inject({ method: "GET", url: "/api/datanets/metrics" });
  assert.equal(notV1.statusCode, 404, "only the /v1 APIs are reachable");
});

test("pages answer the web app, assets are cached, anything else is a JSON 404", async () => {
  for (const url of ["/", "/datanets/x", "/inferences/y", "/models/z", "/epochs/3", "/accounts/me"]) {
    const res = await explorer.inject({ method: "GET", url });
    assert.equal(res.statusCode, 200, url);
    assert.match(res.body, /<div id="root">/, url);
    assert.equal(res.headers["cache-control"], "no-cache", url);
  }
  const asset = await explorer.inject({ method: "GET", url: "/assets/app-abc123.js" });
  assert.equal(asset.statusCode, 200);
  assert.match(String(asset.headers["cache-control"]), /immutable/);
  const nope = await explorer.inject({ method: "GET", url: "/nope" });
  assert.equal(nope.statusCode, 404);
  assert.equal(nope.json<{ error: { code: string } }>().error.code, "NOT_FOUND");
  const escaped = await explorer.inject({ method: "GET", url: "/assets/..%2f..%2findex.html" });
  assert.notEqual(escaped.statusCode, 200, "no path escapes the assets folder");
});

test("/api/config names the chain and its contracts; /readyz says whether the app is built", async () => {
  const cfg = (await explorer.inject({ method: "GET", url: "/api/config" })).json<{
    chain: { chainId: number; contracts: Record<string, string> } | null;
  }>();
  assert.equal(cfg.chain?.chainId, chain.chainId);
  assert.equal(cfg.chain?.contracts.RewardDistributor, chain.addresses!.contracts.RewardDistributor);
  assert.equal((await explorer.inject({ method: "GET", url: "/readyz" })).statusCode, 200);
  await rm(path.join(staticDir, "index.html"));
  const notBuilt = await explorer.inject({ method: "GET", url: "/readyz" });
  assert.equal(notBuilt.statusCode, 503);
  assert.equal((await explorer.inject({ method: "GET", url: "/" })).statusCode, 503);
});

test("the trace form's POST reaches the attribution service with the user's own API key only: 401 without one", async () => {
  // Before: the explorer forwarded POST /v1/attribute for anyone to an attribution service that wanted
  // no key. Now the service wants one and the explorer, holding none itself, passes on only the caller's.
  const attribution = await buildAttribution(
    attributionConfig({
      ...TINY_MODEL_ENV,
      ...env.env,
      CHAIN_RPC_URL: chain.rpcUrl,
      ATTRIBUTION_BLOB_DIR: path.join(dir, "blobs"),
      RUN_WORKERS: "false",
    }),
  );
  const viaExplorer = await buildExplorer(
    explorerConfig({
      LOG_LEVEL: "silent",
      EXPLORER_ATTRIBUTION_URL: await attribution.listen({ port: 0, host: "127.0.0.1" }),
      EXPLORER_STATIC_DIR: staticDir,
    }),
  );
  try {
    const trace = (headers: Record<string, string>) =>
      viaExplorer.inject({
        method: "POST",
        url: "/api/attribution/v1/attribute",
        headers,
        payload: { text: "hello", datanetVersionId: "00000000-0000-4000-8000-000000000000" },
      });
    const anonymous = await trace({});
    assert.equal(anonymous.statusCode, 401, anonymous.body);
    assert.equal(anonymous.json<{ error: { code: string } }>().error.code, "MISSING_API_KEY");
    const { key } = await new ApiKeys(attribution.db).create(localAccounts().users[1]!.address, "explorer");
    const keyed = await trace({ authorization: `Bearer ${key}` });
    assert.equal(keyed.statusCode, 404, keyed.body); // past the key check: the version does not exist
  } finally {
    await viaExplorer.close();
    await attribution.close();
  }
});
