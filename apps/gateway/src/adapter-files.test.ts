// Validators fetch an adapter's files from the gateway (issues #14, #19), against real Postgres, a local
// Hardhat chain (its deployment's active validators) and the gateway and attribution services: a validator
// that does not share the gateway's disk fetches a factory-trained adapter by content hash over HTTP and
// attributes an answer by LoRA influence exactly as a validator reading the gateway's disk does; a file
// altered on the gateway's disk is refused and nothing is kept; signatures by a non-validator, stale ones,
// forged ones and ones made for another gateway are refused.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { attributionConfig, buildAttribution } from "@openledger/attribution";
import {
  AdapterFetchError,
  AttributionContext,
  computeAttribution,
  GatewayAdapterSource,
  LORA_FIXTURE,
  seedTrainedAdapter,
  type TrainedAdapterFixture,
} from "@openledger/attribution/testing";
import { ADAPTER_FETCH_TTL_SECONDS, adapterFetchHeaders, rewardDistributorAbi } from "@openledger/chain";
import { type LocalChain, startLocalChain } from "@openledger/chain/testing";
import { adapterContentHash } from "@openledger/model-runtime";
import type { App } from "@openledger/service-kit";
import { testEnvironment } from "@openledger/service-kit/testing";
import type { Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { startTestGateway } from "./testing.ts";

/** Short, so the test of the validator set's TTL waits little. */
const VALIDATOR_SET_CACHE_MS = 2000;

describe("adapter files for validators (GET /v1/adapter-files)", () => {
  let env: Awaited<ReturnType<typeof testEnvironment>>;
  let chain: LocalChain;
  let dir: string;
  let gateway: App;
  let gatewayUrl: string;
  let validator: Awaited<ReturnType<typeof buildAttribution>>;
  let fixture: TrainedAdapterFixture;
  let weightsPath: string;
  const attributionEnv = (extra: Record<string, string>) =>
    attributionConfig({
      ...env.env,
      CHAIN_RPC_URL: chain.rpcUrl,
      CHAIN_ADDRESSES_FILE: join(dir, "addresses.json"),
      ATTRIBUTION_MODEL_DIRS: join(dir, "base"),
      // The fixture's adapter is of the tiny byte-level model: spans and gradients on its token ids.
      ATTRIBUTION_TOKENIZER: "byte",
      ATTRIBUTION_MIN_SPAN_TOKENS: "12",
      ATTRIBUTION_VALIDATOR_SCAN_MS: "0",
      ATTRIBUTION_EPOCH_ATTEST_INTERVAL_MS: "0",
      RUN_WORKERS: "false",
      ...extra,
    });
  /** A validator (the validator process's key) fetching over HTTP into its own, fresh cache. */
  const httpContext = (blobs: string) =>
    new AttributionContext(
      attributionEnv({ ATTRIBUTION_BLOB_DIR: join(dir, blobs), ATTRIBUTION_ADAPTER_SOURCE: gatewayUrl }),
      validator.chain,
    );
  const fileUrl = (hash: string, file = "adapter_model.safetensors") =>
    `${gatewayUrl}/v1/adapter-files/${hash}/${file}`;
  const validatorAccount = () => privateKeyToAccount(chain.accounts.validators[1]!.privateKey as Hex);
  const cached = async (blobs: string) => readdir(join(dir, blobs, "adapters")).catch(() => [] as string[]);
  /** A registered adapter stored on the gateway: the fixture's config with `k` trailing newlines (other hash). */
  const variantAdapter = async (k: number) => {
    const cfg = Buffer.concat([Buffer.from(fixture.configBytes), Buffer.from("\n".repeat(k))]);
    const hash = await gateway.catalog.store.put(cfg, fixture.weights);
    const model = {
      kind: "adapter" as const,
      ownerAddress: LORA_FIXTURE.BOB,
      baseModel: "tiny",
      contentHash: hash,
      priceInPer1kWei: "1000",
      priceOutPer1kWei: "2000",
    };
    await validator.db.model.upsert({
      where: { id: `variant-${k}` },
      create: { id: `variant-${k}`, ...model },
      update: {},
    });
    return hash;
  };
  const variantBytes = (k: number) => fixture.configBytes.byteLength + fixture.weights.byteLength + k;

  before(async () => {
    env = await testEnvironment("adapter_files");
    dir = await mkdtemp(join(tmpdir(), "adapter-files-"));
    chain = await startLocalChain({ writeAddresses: join(dir, "addresses.json") });
    ({ app: gateway, url: gatewayUrl } = await startTestGateway({
      env: env.env,
      dataDir: join(dir, "gateway"),
      chain: { rpcUrl: chain.rpcUrl, addressesFile: join(dir, "addresses.json") },
      settings: {
        GATEWAY_SLOTS: "2",
        GATEWAY_OUTBOX_SWEEP_MS: "600000",
        GATEWAY_VALIDATOR_SET_CACHE_MS: String(VALIDATOR_SET_CACHE_MS),
      },
    }));
    // Validator #2 of the local deployment, its own process, fetching from the gateway (no shared disk).
    validator = await buildAttribution(
      attributionEnv({
        ATTRIBUTION_BLOB_DIR: join(dir, "blobs-v2"),
        ATTRIBUTION_ADAPTER_SOURCE: gatewayUrl,
        ATTRIBUTION_ADAPTER_DIR: join(dir, "no-such-dir"),
        VALIDATOR_PRIVATE_KEYS: chain.accounts.validators[1]!.privateKey,
      }),
    );
    // A factory-trained adapter, registered (models row, lineage) with its files in the gateway's store.
    fixture = await seedTrainedAdapter(validator.db, validator.attribution, join(dir, "base"));
    await gateway.catalog.store.put(fixture.configBytes, fixture.weights);
    weightsPath = join(gateway.catalog.store.dirOf(fixture.adapterHash), "adapter_model.safetensors");
  });

  after(async () => {
    await validator?.close();
    await gateway?.close();
    await chain?.stop();
    await env?.cleanup();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test("a validator without the gateway's disk fetches the adapter and attributes the answer by influence", async () => {
    // The reference: a validator reading the gateway's own store (one machine).
    const onDisk = new AttributionContext(
      attributionEnv({
        ATTRIBUTION_BLOB_DIR: join(dir, "blobs-v1"),
        ATTRIBUTION_ADAPTER_DIR: join(dir, "gateway"),
      }),
      validator.chain,
    );
    const reference = await computeAttribution(validator.db, onDisk, fixture.inferenceId);
    const fetched = await computeAttribution(validator.db, validator.attribution, fixture.inferenceId);
    assert.equal(
      fetched.canonical,
      reference.canonical,
      "byte for byte the result of a validator on the gateway's disk",
    );
    const alice = fetched.weights.find((w) => w.contributorId === LORA_FIXTURE.ALICE)?.ppm ?? 0;
    const bob = fetched.weights.find((w) => w.contributorId === LORA_FIXTURE.BOB)?.ppm ?? 0;
    assert.ok(alice > bob && alice + bob === 1_000_000, `paid by influence: alice ${alice}, bob ${bob} ppm`);
    assert.ok((fetched.result as { loraInfluence: { weights: unknown[] } }).loraInfluence.weights.length > 0);
    // Kept in the validator's own cache under the content hash, the same bytes as the gateway's.
    assert.deepEqual(await cached("blobs-v2"), [fixture.adapterHash]);
    const copy = await readFile(
      join(dir, "blobs-v2", "adapters", fixture.adapterHash, "adapter_model.safetensors"),
    );
    assert.ok(copy.equals(Buffer.from(fixture.weights)));
    const metrics = await validator.inject({ method: "GET", url: "/metrics" });
    assert.match(metrics.body, /attribution_adapter_fetches_total\{[^}]*outcome="fetched"[^}]*\} 1\b/);
  });

  test("the file is streamed with its length, SHA-256 and ETag; a matching If-None-Match is 304", async () => {
    const headers = await adapterFetchHeaders(validatorAccount(), fixture.adapterHash, gatewayUrl);
    const res = await fetch(fileUrl(fixture.adapterHash), { headers });
    assert.equal(res.status, 200);
    const body = Buffer.from(await res.arrayBuffer());
    const sha = createHash("sha256").update(body).digest("hex");
    assert.ok(body.equals(Buffer.from(fixture.weights)));
    assert.equal(res.headers.get("content-length"), String(fixture.weights.byteLength));
    assert.equal(res.headers.get("x-content-sha256"), sha);
    assert.equal(res.headers.get("etag"), `"${sha}"`);
    const again = await fetch(fileUrl(fixture.adapterHash), {
      headers: { ...headers, "if-none-match": `"${sha}"` },
    });
    assert.equal(again.status, 304);
    const cfg = await fetch(fileUrl(fixture.adapterHash, "adapter_config.json"), { headers });
    assert.equal(cfg.status, 200);
    assert.deepEqual(Buffer.from(await cfg.arrayBuffer()), Buffer.from(fixture.configBytes));
  });

  test("concurrent lookups of one adapter share one fetch", async () => {
    let fetches = 0;
    const source = new GatewayAdapterSource({
      gatewayUrls: [gatewayUrl],
      cacheRoot: join(dir, "blobs-coalesced"),
      maxBytes: 64 * 1024 * 1024,
      cacheBytes: 1 << 30,
      signer: async () => validatorAccount(),
      onOutcome: (outcome) => {
        if (outcome === "fetched") fetches++;
      },
    });
    const dirs = await Promise.all([1, 2, 3, 4].map(() => source.dirOf(fixture.adapterHash)));
    assert.equal(new Set(dirs).size, 1);
    assert.equal(fetches, 1);
  });

  test("attack: a file altered on the gateway's disk is refused, and nothing is kept", async () => {
    const original = await readFile(weightsPath);
    const tampered = Buffer.from(original);
    const last = tampered.length - 1;
    tampered.writeUInt8(tampered.readUInt8(last) ^ 0xff, last); // one weight's last byte: still a valid safetensors file
    await writeFile(weightsPath, tampered);
    try {
      const ctx = httpContext("blobs-tampered");
      await assert.rejects(
        computeAttribution(validator.db, ctx, fixture.inferenceId),
        (err: unknown) => err instanceof AdapterFetchError && err.code === "ADAPTER_HASH_MISMATCH",
      );
      assert.deepEqual(await cached("blobs-tampered"), [], "no adapter directory and no temporary file left");
    } finally {
      await writeFile(weightsPath, original);
    }
  });

  test("attack: a copy altered in the validator's cache is refused, dropped and fetched again", async () => {
    const ctx = httpContext("blobs-cache");
    const first = await computeAttribution(validator.db, ctx, fixture.inferenceId);
    const cachedWeights = join(
      dir,
      "blobs-cache",
      "adapters",
      fixture.adapterHash,
      "adapter_model.safetensors",
    );
    const bytes = await readFile(cachedWeights);
    bytes.writeUInt8(bytes.readUInt8(bytes.length - 1) ^ 0xff, bytes.length - 1);
    await writeFile(cachedWeights, bytes);
    const later = httpContext("blobs-cache"); // a restarted process: nothing parsed in memory
    await assert.rejects(
      computeAttribution(validator.db, later, fixture.inferenceId),
      /do not hash to its registered content hash/,
    );
    assert.deepEqual(await cached("blobs-cache"), [], "the altered copy is dropped");
    const again = await computeAttribution(validator.db, later, fixture.inferenceId);
    assert.equal(again.canonical, first.canonical);
  });

  test("attack: a signature by an account that is not an active validator is refused (403), nothing kept", async () => {
    const outsider = privateKeyToAccount(chain.accounts.users[0]!.privateKey as Hex);
    const res = await fetch(fileUrl(fixture.adapterHash), {
      headers: await adapterFetchHeaders(outsider, fixture.adapterHash, gatewayUrl),
    });
    assert.equal(res.status, 403);
    assert.equal(((await res.json()) as { error: { code: string } }).error.code, "NOT_A_VALIDATOR");
    const source = new GatewayAdapterSource({
      gatewayUrls: [gatewayUrl],
      cacheRoot: join(dir, "blobs-outsider"),
      maxBytes: 64 * 1024 * 1024,
      cacheBytes: 1 << 30,
      signer: async () => outsider,
    });
    await assert.rejects(
      source.dirOf(fixture.adapterHash),
      (err: unknown) => err instanceof AdapterFetchError && err.code === "NOT_A_VALIDATOR",
    );
    assert.deepEqual(await cached("blobs-outsider"), []);
  });

  test("attack: an expired signature is refused (401 SIGNATURE_EXPIRED)", async () => {
    const stale = Date.now() - (ADAPTER_FETCH_TTL_SECONDS + 30) * 1000;
    const res = await fetch(fileUrl(fixture.adapterHash), {
      headers: await adapterFetchHeaders(validatorAccount(), fixture.adapterHash, gatewayUrl, stale),
    });
    assert.equal(res.status, 401);
    assert.equal(((await res.json()) as { error: { code: string } }).error.code, "SIGNATURE_EXPIRED");
  });

  test("unsigned, forged, replayed for another adapter or gateway: 401 with a code", async () => {
    const code = async (res: Response) => [
      res.status,
      ((await res.json()) as { error: { code: string } }).error.code,
    ];
    assert.deepEqual(await code(await fetch(fileUrl(fixture.adapterHash))), [401, "SIGNATURE_REQUIRED"]);
    const mine = await adapterFetchHeaders(validatorAccount(), fixture.adapterHash, gatewayUrl);
    // Another active validator named, this one's signature.
    const claimed = {
      ...mine,
      "x-openledger-validator": chain.accounts.validators[0]!.address.toLowerCase(),
    };
    assert.deepEqual(await code(await fetch(fileUrl(fixture.adapterHash), { headers: claimed })), [
      401,
      "INVALID_SIGNATURE",
    ]);
    // Signed for another adapter.
    const other = await adapterFetchHeaders(validatorAccount(), "ab".repeat(32), gatewayUrl);
    assert.deepEqual(await code(await fetch(fileUrl(fixture.adapterHash), { headers: other })), [
      401,
      "INVALID_SIGNATURE",
    ]);
    // Signed for another gateway.
    const elsewhere = await adapterFetchHeaders(
      validatorAccount(),
      fixture.adapterHash,
      "https://gateway.example.org",
    );
    assert.deepEqual(await code(await fetch(fileUrl(fixture.adapterHash), { headers: elsewhere })), [
      401,
      "WRONG_GATEWAY",
    ]);
  });

  test("an unknown content hash is 404 NOT_FOUND (to a validator); a malformed one 400", async () => {
    const unknown = "cd".repeat(32);
    const res = await fetch(fileUrl(unknown), {
      headers: await adapterFetchHeaders(validatorAccount(), unknown, gatewayUrl),
    });
    assert.equal(res.status, 404);
    const body = (await res.json()) as { error: { code: string; message: string } };
    assert.equal(body.error.code, "NOT_FOUND");
    assert.match(body.error.message, new RegExp(unknown));
    const bad = await fetch(`${gatewayUrl}/v1/adapter-files/XYZ/adapter_model.safetensors`);
    assert.equal(bad.status, 400);
    // The HTTP source treats the gateway's 404 as an adapter it does not have (spans only), like a missing directory.
    const source = new GatewayAdapterSource({
      gatewayUrls: [gatewayUrl],
      cacheRoot: join(dir, "blobs-unknown"),
      maxBytes: 64 * 1024 * 1024,
      cacheBytes: 1 << 30,
      signer: async () => validatorAccount(),
    });
    assert.equal(await source.dirOf(unknown), null);
  });

  test("an adapter larger than the validator's bound is refused, nothing kept", async () => {
    const source = new GatewayAdapterSource({
      gatewayUrls: [gatewayUrl],
      cacheRoot: join(dir, "blobs-small"),
      maxBytes: 1024,
      cacheBytes: 1 << 30,
      signer: async () => validatorAccount(),
    });
    await assert.rejects(
      source.dirOf(fixture.adapterHash),
      (err: unknown) => err instanceof AdapterFetchError && err.code === "ADAPTER_TOO_LARGE",
    );
    assert.deepEqual(await cached("blobs-small"), []);
  });

  test("the validator set is read once per GATEWAY_VALIDATOR_SET_CACHE_MS, not per request: served while the chain is frozen; a removed validator loses access within it", async () => {
    const get = async () =>
      fetch(fileUrl(fixture.adapterHash, "adapter_config.json"), {
        headers: await adapterFetchHeaders(validatorAccount(), fixture.adapterHash, gatewayUrl),
      });
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
    // Whatever earlier tests read has lapsed: this request reads the set from the chain.
    await sleep(VALIDATOR_SET_CACHE_MS);
    assert.equal((await get()).status, 200);
    // The node stops answering: the next request within the TTL needs no chain read (before: five
    // reads per request, and 503 CHAIN_UNAVAILABLE here).
    process.kill(chain.pid!, "SIGSTOP");
    try {
      const res = await get();
      assert.equal(res.status, 200, await res.text());
    } finally {
      process.kill(chain.pid!, "SIGCONT");
    }
    // Governance removes the validator: once the TTL has passed since, it is refused.
    const distributor = { address: chain.addresses!.contracts.RewardDistributor, abi: rewardDistributorAbi };
    const removed = validatorAccount().address;
    await chain.asAdmin([{ ...distributor, functionName: "removeValidator", args: [removed] }]);
    await sleep(VALIDATOR_SET_CACHE_MS);
    const refused = await get();
    assert.equal(refused.status, 403);
    assert.equal(((await refused.json()) as { error: { code: string } }).error.code, "NOT_A_VALIDATOR");
    // Admitted again: served again once the TTL has passed.
    await chain.asAdmin([{ ...distributor, functionName: "addValidator", args: [removed] }]);
    await sleep(VALIDATOR_SET_CACHE_MS);
    assert.equal((await get()).status, 200);
  });

  test("the adapter cache stays within its byte cap: least recently used evicted, fetched and checked again when needed; a killed fetch's temporary directory is removed at start", async () => {
    const [a, b, c] = (await Promise.all([1, 2, 3].map(variantAdapter))) as [string, string, string];
    const size = variantBytes(3);
    // What killed fetches left: a pid that no longer runs, and this pid from an earlier life.
    const adapters = join(dir, "blobs-cap", "adapters");
    for (const pid of [99_999_999, process.pid]) {
      await mkdir(join(adapters, `${a}.tmp-${pid}-0a1b2c`), { recursive: true });
      await writeFile(join(adapters, `${a}.tmp-${pid}-0a1b2c`, "adapter_model.safetensors"), "partial");
    }
    const fetched: string[] = [];
    const source = (cacheBytes: number) =>
      new GatewayAdapterSource({
        gatewayUrls: [gatewayUrl],
        cacheRoot: join(dir, "blobs-cap"),
        maxBytes: 64 * 1024 * 1024,
        cacheBytes,
        signer: async () => validatorAccount(),
        onOutcome: (outcome, hash) => {
          if (outcome === "fetched") fetched.push(hash);
        },
      });
    const tick = () => new Promise((r) => setTimeout(r, 20)); // distinct use times on disk
    const two = source(2 * size);
    await two.prepare();
    assert.deepEqual(await cached("blobs-cap"), [], "the stale temporary directories are gone");
    for (const h of [a, b, a, c]) {
      await two.dirOf(h);
      await tick();
    }
    assert.deepEqual((await cached("blobs-cap")).sort(), [a, c].sort(), "b, least recently used, evicted");
    assert.ok(two.cachedBytes() <= 2 * size);
    // b is needed again: fetched, checked against its hash, and a (now least recently used) goes.
    const again = (await two.dirOf(b))!;
    const files = await Promise.all(
      ["adapter_config.json", "adapter_model.safetensors"].map((f) => readFile(join(again, f))),
    );
    assert.equal(adapterContentHash(files[0]!, files[1]!), b);
    assert.deepEqual(fetched, [a, b, c, b]);
    assert.deepEqual((await cached("blobs-cap")).sort(), [b, c].sort());
    // A restart with a smaller cap keeps the most recently used one (the order survives on disk).
    await source(size).prepare();
    assert.deepEqual(await cached("blobs-cap"), [b]);
  });

  test("an adapter being read is not evicted: over the cap, it waits for its reader", async () => {
    const [a, b] = (await Promise.all([4, 5].map(variantAdapter))) as [string, string];
    const source = new GatewayAdapterSource({
      gatewayUrls: [gatewayUrl],
      cacheRoot: join(dir, "blobs-pinned"),
      maxBytes: 64 * 1024 * 1024,
      cacheBytes: variantBytes(5), // one adapter
      signer: async () => validatorAccount(),
    });
    await source.use(a, async (dirA) => {
      // Another job needs b meanwhile: a is the least recently used, but it is being read.
      await source.dirOf(b);
      const files = await Promise.all(
        ["adapter_config.json", "adapter_model.safetensors"].map((f) => readFile(join(dirA!, f))),
      );
      assert.equal(adapterContentHash(files[0]!, files[1]!), a);
    });
    assert.deepEqual(await cached("blobs-pinned"), [b], "the cap applies once the reader is done");
  });

  test("several gateway replicas: the validator tries each listed one before it concludes an adapter is absent", async () => {
    // A second replica over the same database and chain; the adapter was stored on the first one only.
    const other = await startTestGateway({
      env: env.env,
      dataDir: join(dir, "gateway-2"),
      chain: { rpcUrl: chain.rpcUrl, addressesFile: join(dir, "addresses.json") },
      settings: { GATEWAY_SLOTS: "2", GATEWAY_OUTBOX_SWEEP_MS: "600000" },
    });
    try {
      const res = await fetch(`${other.url}/v1/adapter-files/${fixture.adapterHash}/adapter_config.json`, {
        headers: await adapterFetchHeaders(validatorAccount(), fixture.adapterHash, other.url),
      });
      assert.equal(res.status, 404, "not on this replica");
      // Listed first, it says 404; the next replica has the files: the answer is attributed by influence,
      // byte for byte as from the replica that holds them (before: spans only).
      const replicas = new AttributionContext(
        attributionEnv({
          ATTRIBUTION_BLOB_DIR: join(dir, "blobs-replicas"),
          ATTRIBUTION_ADAPTER_SOURCE: `${other.url}, ${gatewayUrl}/`,
        }),
        validator.chain,
      );
      const viaReplicas = await computeAttribution(validator.db, replicas, fixture.inferenceId);
      const direct = await computeAttribution(validator.db, httpContext("blobs-direct"), fixture.inferenceId);
      assert.equal(viaReplicas.canonical, direct.canonical);
      assert.ok(
        (viaReplicas.result as { loraInfluence?: { weights: unknown[] } }).loraInfluence?.weights.length,
      );
      assert.deepEqual(await cached("blobs-replicas"), [fixture.adapterHash]);
      // Only the replica without it: absent (spans only), as with one URL.
      const alone = new GatewayAdapterSource({
        gatewayUrls: [other.url],
        cacheRoot: join(dir, "blobs-alone"),
        maxBytes: 64 * 1024 * 1024,
        cacheBytes: 1 << 30,
        signer: async () => validatorAccount(),
      });
      assert.equal(await alone.dirOf(fixture.adapterHash), null);
    } finally {
      await other.app.close();
    }
  });

  test("the route is in the gateway's OpenAPI document", async () => {
    const doc = (await gateway.inject({ method: "GET", url: "/docs/json" })).json() as {
      paths: Record<string, { get?: { parameters?: { name: string; in: string }[] } }>;
    };
    const route = doc.paths["/v1/adapter-files/{contentHash}/{file}"]?.get;
    assert.ok(route, "documented");
    const names = (route.parameters ?? []).map((p) => `${p.in}:${p.name}`);
    for (const n of ["path:contentHash", "path:file", "header:x-openledger-signature"])
      assert.ok(names.includes(n), n);
  });
});
