// End to end against real Postgres, Redis and a local Hardhat chain (one per file): index build
// from DB rows, human attribution, validator scoring through the queue, byte-identical results
// of independent validators with verifiable signatures, stake refusal, influence for small
// models, and clear 4xx with nothing half-written.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { hashFeatures, influenceScores, looInfluenceScores, quantize } from "@openledger/attribution-core";
import { inferenceIdToBytes32, recoverAttributionResultSigner } from "@openledger/chain";
import { type LocalChain, startLocalChain } from "@openledger/chain/testing";
import { type AttributionConfig, TINY_MODEL_ENV } from "@openledger/config";
import type { Db } from "@openledger/db";
import { seedVersionRows } from "@openledger/db/testing";
import type { JobContext } from "@openledger/queue";
import { jobId } from "@openledger/queue";
import { ApiKeys } from "@openledger/service-kit";
import { testEnvironment, waitFor } from "@openledger/service-kit/testing";
import { UnrecoverableError } from "bullmq";
import type { Hex } from "viem";
import { attributionConfig, buildAttribution } from "./app.ts";
import { FsBlobStore } from "./lib/blob-store.ts";
import { AttributionContext } from "./lib/context.ts";
import { ArtifactMismatchError, buildVersionArtifacts, ensureLocalArtifact } from "./lib/indexing.ts";
import { indexWorker } from "./workers/index-worker.ts";
import { scoreWorker } from "./workers/score-worker.ts";

type App = Awaited<ReturnType<typeof buildAttribution>>;

/** The platform's own services' token (ATTRIBUTION_SERVICE_TOKEN): the guarded routes answer it. */
const SERVICE_TOKEN = "attribution-test-service-token";
const SERVICE = { authorization: `Bearer ${SERVICE_TOKEN}` };

const ALICE = "0x00000000000000000000000000000000000a11ce";
const BOB = "0x0000000000000000000000000000000000000b0b";
const CAROL = "0x00000000000000000000000000000000000ca201";

const DOCS = [
  { who: ALICE, text: "The statute of limitations for written contracts is six years in this jurisdiction." },
  { who: BOB, text: "Consideration is the bargained-for exchange that makes a promise legally enforceable." },
  { who: ALICE, text: "An offer lapses when the offeree rejects it or makes a counter-offer instead." },
  { who: CAROL, text: "Damages for breach aim to put the injured party where performance would have." },
];
const OUTPUT =
  "In short: consideration is the bargained-for exchange that makes a promise legally enforceable, " +
  "and damages for breach aim to put the injured party where performance would have left them.";

const SPAM_WORDS = ["winner", "free", "prize", "click", "offer", "cash", "urgent", "bonus"];
const HAM_WORDS = ["meeting", "report", "lunch", "schedule", "project", "review", "notes", "team"];

function noopJob(): JobContext {
  return {
    id: "direct",
    attempt: 1,
    maxAttempts: 1,
    signal: new AbortController().signal,
    progress: async () => {},
  };
}

describe("attribution service end to end", () => {
  let chain: LocalChain;
  let env: Awaited<ReturnType<typeof testEnvironment>>;
  let blobDir: string;
  let addressesFile: string;
  let app: App;
  let config: AttributionConfig;
  let db: Db;
  const ids = {} as {
    spanVersion: string;
    emptyVersion: string;
    unindexedVersion: string;
    labelledVersion: string;
    inference: string;
    smallInference: string;
    datanet: string;
  };

  const configWith = (extra: Record<string, string>) =>
    attributionConfig({
      ...TINY_MODEL_ENV,
      ...env.env,
      CHAIN_RPC_URL: chain.rpcUrl,
      CHAIN_ADDRESSES_FILE: addressesFile,
      ATTRIBUTION_BLOB_DIR: blobDir,
      ATTRIBUTION_MIN_SPAN_TOKENS: "12",
      ATTRIBUTION_SERVICE_TOKEN: SERVICE_TOKEN,
      // These tests drive each validator's scoring themselves (queue jobs, handlers): no background scan.
      ATTRIBUTION_VALIDATOR_SCAN_MS: "0",
      ...extra,
    });

  before(async () => {
    blobDir = await mkdtemp(path.join(tmpdir(), "attr-blobs-"));
    addressesFile = path.join(blobDir, "addresses.json");
    [chain, env] = await Promise.all([
      startLocalChain({ writeAddresses: addressesFile }),
      testEnvironment("attribution_e2e"),
    ]);
    const v = chain.accounts.validators;
    config = configWith({ VALIDATOR_PRIVATE_KEYS: `${v[0]!.privateKey},${v[1]!.privateKey}` });
    app = await buildAttribution(config);
    db = app.db;
    await seed(db);
  });

  after(async () => {
    await app?.close();
    await env?.cleanup();
    await chain?.stop();
    if (blobDir) await rm(blobDir, { recursive: true, force: true });
  });

  async function seed(db: Db) {
    for (const a of [ALICE, BOB, CAROL]) await db.contributor.create({ data: { address: a } });
    const datanet = await db.datanet.create({
      data: { slug: "law", name: "Law", type: "text", license: "CC-BY-4.0", ownerAddress: ALICE },
    });
    ids.datanet = datanet.id;
    const mkVersion = async (version: number, docs: { who: string; text: string; label?: string }[]) => {
      const v = await db.datanetVersion.create({
        data: {
          datanetId: datanet.id,
          version,
          merkleRoot: `0x${"ab".repeat(32)}`,
          rowCount: docs.length,
          contributorCount: new Set(docs.map((d) => d.who)).size,
          status: "registered",
        },
      });
      await seedVersionRows(db, datanet.id, v.id, docs);
      return v.id;
    };
    ids.spanVersion = await mkVersion(1, DOCS);
    ids.emptyVersion = await mkVersion(2, []);
    ids.unindexedVersion = await mkVersion(3, DOCS.slice(0, 1));
    // 48 labelled rows of two classes (deterministic word mixes) for the influence model.
    const labelled = Array.from({ length: 48 }, (_, i) => {
      const spam = i % 2 === 0;
      const words = spam ? SPAM_WORDS : HAM_WORDS;
      const text = Array.from({ length: 6 }, (_, k) => words[(i * 3 + k * 5) % words.length]).join(" ");
      return { who: [ALICE, BOB, CAROL][i % 3]!, text: `${text} ${i}`, label: spam ? "spam" : "ham" };
    });
    ids.labelledVersion = await mkVersion(4, labelled);
    const mkModel = (id: string, kind: "adapter" | "small_model", versionId: string) =>
      db.model.create({
        data: {
          id,
          kind,
          ownerAddress: BOB,
          contentHash: "ef".repeat(32),
          priceInPer1kWei: "1000",
          priceOutPer1kWei: "2000",
          trainingVersions: { create: [{ datanetVersionId: versionId }] },
        },
      });
    await mkModel("law-lora", "adapter", ids.spanVersion);
    await mkModel("spam-filter", "small_model", ids.labelledVersion);
    const mkInference = (modelId: string, prompt: string, output: string) =>
      db.inference.create({
        data: { modelId, accountAddress: CAROL, prompt, output, inputTokens: 10, outputTokens: 40 },
      });
    ids.inference = (await mkInference("law-lora", "What makes a promise enforceable?", OUTPUT)).id;
    ids.smallInference = (await mkInference("spam-filter", "urgent cash prize click free bonus", "spam")).id;
  }

  test("the API is documented in OpenAPI with descriptions", async () => {
    const doc = (await app.inject({ method: "GET", url: "/docs/json" })).json();
    for (const [p, m] of [
      ["/v1/indexes", "post"],
      ["/v1/indexes/{versionId}", "get"],
      ["/v1/attribute", "post"],
      ["/v1/inferences/{id}/attribution", "get"],
    ] as const) {
      const op = doc.paths[p]?.[m];
      assert.ok(op, `${m.toUpperCase()} ${p} documented`);
      assert.ok(op.description.length > 40, `${p} has a description`);
    }
  });

  test("index requests: bad body 400, unknown version 404, empty version 422, nothing written", async () => {
    const bad = await app.inject({
      headers: SERVICE,
      method: "POST",
      url: "/v1/indexes",
      payload: { datanetVersionId: "nope" },
    });
    assert.equal(bad.statusCode, 400);
    assert.equal(bad.json().error.code, "VALIDATION_FAILED");
    const missing = await app.inject({
      headers: SERVICE,
      method: "POST",
      url: "/v1/indexes",
      payload: { datanetVersionId: "00000000-0000-4000-8000-000000000000" },
    });
    assert.equal(missing.statusCode, 404);
    assert.equal(missing.json().error.code, "NOT_FOUND");
    const empty = await app.inject({
      headers: SERVICE,
      method: "POST",
      url: "/v1/indexes",
      payload: { datanetVersionId: ids.emptyVersion },
    });
    assert.equal(empty.statusCode, 422);
    assert.equal(empty.json().error.code, "UNPROCESSABLE");
    assert.equal(await db.attributionIndex.count(), 0);
    // The worker refuses an empty version for good (e.g. enqueued by another service), writing nothing.
    await assert.rejects(
      indexWorker(app)({ datanetVersionId: ids.emptyVersion }, noopJob()),
      UnrecoverableError,
    );
    assert.equal(await db.attributionIndex.count(), 0);
    const get404 = await app.inject({
      method: "GET",
      url: "/v1/indexes/00000000-0000-4000-8000-000000000000",
    });
    assert.equal(get404.statusCode, 404);
  });

  test("POST /v1/indexes builds the span index from the version's rows through the queue", async () => {
    const res = await app.inject({
      headers: SERVICE,
      method: "POST",
      url: "/v1/indexes",
      payload: { datanetVersionId: ids.spanVersion },
    });
    assert.equal(res.statusCode, 202, res.body);
    assert.equal(res.json().status, "queued");
    const view = await waitFor(
      "span index ready",
      async () => {
        const r = (await app.inject({ method: "GET", url: `/v1/indexes/${ids.spanVersion}` })).json();
        return r.artifacts.find(
          (a: { kind: string; status: string }) => a.kind === "span" && a.status === "ready",
        )
          ? r
          : null;
      },
      45_000,
    );
    const span = view.artifacts.find((a: { kind: string }) => a.kind === "span");
    const expectedTokens = DOCS.reduce((s, d) => s + Buffer.byteLength(d.text), 0);
    assert.equal(span.tokenCount, String(expectedTokens));
    assert.equal(span.rowCount, DOCS.length);
    assert.equal(span.tokenizer, "byte");
    assert.equal(span.stats.contributors, 3);
    assert.match(span.blobHash, /^[0-9a-f]{64}$/);
    assert.ok(await app.attribution.store.verify(span.blobHash), "stored blob hashes to its address");
    // Unlabelled rows: no influence model.
    assert.equal(view.artifacts.length, 1);
    const version = await db.datanetVersion.findUniqueOrThrow({ where: { id: ids.spanVersion } });
    assert.equal(version.status, "indexed");
    await waitFor(
      "job completed",
      async () => {
        const r = (await app.inject({ method: "GET", url: `/v1/indexes/${ids.spanVersion}` })).json();
        return r.job?.state === "completed" && r.job.progress?.percent === 100;
      },
      45_000,
    );
  });

  test("index builds are idempotent and content addressed", async () => {
    const before = await db.attributionIndex.findUniqueOrThrow({
      where: { datanetVersionId_kind: { datanetVersionId: ids.spanVersion, kind: "span" } },
    });
    const again = await buildVersionArtifacts(db, app.attribution, ids.spanVersion);
    assert.equal(again.span, "exists");
    // A fresh build of the same rows (another validator's machine) gives the same blob.
    const other = new AttributionContext(
      configWith({ ATTRIBUTION_BLOB_DIR: path.join(blobDir, "other") }),
      app.chain,
    );
    await db.attributionIndex.update({ where: { id: before.id }, data: { status: "failed" } });
    const rebuilt = await buildVersionArtifacts(db, other, ids.spanVersion);
    assert.equal(rebuilt.span, "built");
    const after1 = await db.attributionIndex.findUniqueOrThrow({ where: { id: before.id } });
    assert.equal(after1.blobHash, before.blobHash);
    assert.equal(after1.status, "ready");
    assert.equal(await db.attributionIndex.count({ where: { datanetVersionId: ids.spanVersion } }), 1);
    const post = await app.inject({
      headers: SERVICE,
      method: "POST",
      url: "/v1/indexes",
      payload: { datanetVersionId: ids.spanVersion },
    });
    assert.equal(post.statusCode, 200);
    assert.equal(post.json().status, "ready");
  });

  test("POST /v1/attribute returns spans with their rows, contributors and ppm weights", async () => {
    const res = await app.inject({
      headers: SERVICE,
      method: "POST",
      url: "/v1/attribute",
      payload: { text: OUTPUT, datanetVersionId: ids.spanVersion },
    });
    assert.equal(res.statusCode, 200, res.body);
    const body = res.json();
    assert.equal(body.textTokens, Buffer.byteLength(OUTPUT));
    assert.ok(body.spans.length >= 2, "both borrowed sentences are found");
    const texts = body.spans.map((s: { text: string }) => s.text).join("|");
    assert.match(texts, /the bargained-for exchange that makes a promise legally enforceable/);
    assert.match(texts, /to put the injured party where performance would have/);
    for (const s of body.spans) {
      assert.equal(s.count, 1);
      assert.ok(
        DOCS.some((d) => d.text.includes(s.text)),
        `span "${s.text}" occurs in a row`,
      );
      assert.ok(s.rows[0].excerpt.includes(s.text.trim().slice(0, 20)));
    }
    const who = body.contributors.map((c: { contributorAddress: string }) => c.contributorAddress);
    assert.deepEqual(who, [BOB, CAROL].sort());
    assert.equal(
      body.contributors.reduce((s: number, c: { ppm: number }) => s + c.ppm, 0),
      1_000_000,
    );
    // A stricter minimum length leaves nothing: weights are empty, not invented.
    const none = await app.inject({
      headers: SERVICE,
      method: "POST",
      url: "/v1/attribute",
      payload: { text: OUTPUT, datanetVersionId: ids.spanVersion, options: { minSpanTokens: 4000 } },
    });
    assert.equal(none.statusCode, 200);
    assert.deepEqual(none.json().contributors, []);
  });

  test("POST /v1/attribute: 409 without an index, 404 unknown version, 400 bad options", async () => {
    const notBuilt = await app.inject({
      headers: SERVICE,
      method: "POST",
      url: "/v1/attribute",
      payload: { text: OUTPUT, datanetVersionId: ids.unindexedVersion },
    });
    assert.equal(notBuilt.statusCode, 409);
    assert.equal(notBuilt.json().error.code, "CONFLICT");
    const unknown = await app.inject({
      headers: SERVICE,
      method: "POST",
      url: "/v1/attribute",
      payload: { text: OUTPUT, datanetVersionId: "00000000-0000-4000-8000-000000000000" },
    });
    assert.equal(unknown.statusCode, 404);
    const badOpts = await app.inject({
      headers: SERVICE,
      method: "POST",
      url: "/v1/attribute",
      payload: { text: OUTPUT, datanetVersionId: ids.spanVersion, options: { minSpanTokens: 0 } },
    });
    assert.equal(badOpts.statusCode, 400);
    assert.equal(badOpts.json().error.code, "VALIDATION_FAILED");
    const emptyText = await app.inject({
      headers: SERVICE,
      method: "POST",
      url: "/v1/attribute",
      payload: { text: "", datanetVersionId: ids.spanVersion },
    });
    assert.equal(emptyText.statusCode, 400);
  });

  test("attribution.score through the queue: two validators store byte-identical, signed results", async () => {
    await app.producer.enqueue("attribution.score", { inferenceId: ids.inference });
    const results = await waitFor(
      "two results",
      async () => {
        const r = await db.attributionResult.findMany({
          where: { inferenceId: ids.inference },
          include: { weights: true },
          orderBy: { validatorAddress: "asc" },
        });
        return r.length === 2 ? r : null;
      },
      45_000,
    );
    const [a, b] = results as [(typeof results)[0], (typeof results)[0]];
    assert.notEqual(a.validatorAddress, b.validatorAddress);
    assert.equal(a.canonicalJson, b.canonicalJson, "byte-identical canonical JSON");
    assert.equal(a.resultHash, b.resultHash);
    assert.notEqual(a.signature, b.signature);
    const v = chain.accounts.validators.slice(0, 2).map((x) => x.address.toLowerCase());
    for (const r of results) {
      assert.ok(v.includes(r.validatorAddress));
      const signer = await recoverAttributionResultSigner(
        chain.chainId,
        { inferenceId: inferenceIdToBytes32(ids.inference), resultHash: r.resultHash as Hex },
        r.signature as Hex,
        chain.addresses!.contracts.RewardDistributor,
      );
      assert.equal(signer.toLowerCase(), r.validatorAddress);
      assert.equal(
        r.weights.reduce((s, w) => s + w.weightPpm, 0),
        1_000_000,
      );
    }
    const evidence = JSON.parse(a.canonicalJson);
    assert.equal(evidence.method, "span");
    assert.equal(evidence.inferenceId, ids.inference);
    assert.deepEqual(
      evidence.weights.map((w: { contributorId: string }) => w.contributorId),
      [BOB, CAROL].sort(),
    );
    assert.ok(
      !a.canonicalJson.includes(a.validatorAddress),
      "the validator is not part of the signed result",
    );
  });

  test("a third, independent validator process computes the same bytes; the API shows agreement", async () => {
    const v7 = chain.accounts.validators[2]!;
    const other = await buildAttribution(
      configWith({
        RUN_WORKERS: "false",
        VALIDATOR_PRIVATE_KEYS: v7.privateKey,
        // Its own, empty blob store (another machine): it rebuilds the index from Postgres rows
        // and must arrive at the recorded hash.
        ATTRIBUTION_BLOB_DIR: path.join(blobDir, "v7-fresh"),
      }),
    );
    try {
      await scoreWorker(other)({ inferenceId: ids.inference }, noopJob());
      // Running again is a no-op (unique inference + validator).
      await scoreWorker(other)({ inferenceId: ids.inference }, noopJob());
    } finally {
      await other.close();
    }
    const span = await db.attributionIndex.findUniqueOrThrow({
      where: { datanetVersionId_kind: { datanetVersionId: ids.spanVersion, kind: "span" } },
    });
    const fresh = new FsBlobStore(path.join(blobDir, "v7-fresh"));
    assert.ok(await fresh.verify(span.blobHash!), "the validator rebuilt the recorded index locally");
    const all = await db.attributionResult.findMany({ where: { inferenceId: ids.inference } });
    assert.equal(all.length, 3);
    assert.equal(new Set(all.map((r) => r.canonicalJson)).size, 1);
    const res = await app.inject({ method: "GET", url: `/v1/inferences/${ids.inference}/attribution` });
    assert.equal(res.statusCode, 200);
    const body = res.json();
    assert.equal(body.agree, true);
    // #7 committed after the first two had revealed (it came late): its identical bytes are shown but do
    // not count — from outside, a late commitment is indistinguishable from a copy.
    assert.equal(body.consensusCount, 2);
    const late = v7.address.toLowerCase();
    for (const r of body.results) {
      assert.equal(r.signatureValid, true);
      assert.equal(r.hashValid, true);
      assert.ok(r.evidence.spans.length >= 2);
      assert.equal(r.counted, r.validatorAddress !== late, r.validatorAddress);
    }
    assert.equal(body.commitments.length, 3);
  });

  test("a validator below the minimum stake is refused without retry, and nothing is stored", async () => {
    const outsider = chain.accounts.users[0]!; // funded but never staked as a validator
    const cfg = configWith({ RUN_WORKERS: "false", VALIDATOR_PRIVATE_KEYS: outsider.privateKey });
    const other = await buildAttribution(cfg);
    try {
      await assert.rejects(
        scoreWorker(other)({ inferenceId: ids.inference }, noopJob()),
        (err: unknown) =>
          err instanceof UnrecoverableError && /minimum validator stake/.test((err as Error).message),
      );
    } finally {
      await other.close();
    }
    const stored = await db.attributionResult.count({
      where: { inferenceId: ids.inference, validatorAddress: outsider.address.toLowerCase() },
    });
    assert.equal(stored, 0);
  });

  test("unknown inferences fail unretried; GET attribution answers 400/404 with codes", async () => {
    await assert.rejects(
      scoreWorker(app)({ inferenceId: "00000000-0000-4000-8000-000000000000" }, noopJob()),
      UnrecoverableError,
    );
    const failed = await db.inference.create({
      data: {
        modelId: "law-lora",
        accountAddress: CAROL,
        prompt: "x",
        output: OUTPUT,
        inputTokens: 1,
        outputTokens: 0,
        status: "failed",
      },
    });
    await assert.rejects(
      scoreWorker(app)({ inferenceId: failed.id }, noopJob()),
      (err: unknown) => err instanceof UnrecoverableError && /did not complete/.test((err as Error).message),
    );
    assert.equal(await db.attributionResult.count({ where: { inferenceId: failed.id } }), 0);
    const bad = await app.inject({ method: "GET", url: "/v1/inferences/not-a-uuid/attribution" });
    assert.equal(bad.statusCode, 400);
    assert.equal(bad.json().error.code, "VALIDATION_FAILED");
    const missing = await app.inject({
      method: "GET",
      url: "/v1/inferences/00000000-0000-4000-8000-000000000000/attribution",
    });
    assert.equal(missing.statusCode, 404);
    const none = await app.inject({ method: "GET", url: `/v1/inferences/${ids.smallInference}/attribution` });
    assert.equal(none.statusCode, 200);
    assert.equal(none.json().agree, false);
    assert.deepEqual(none.json().results, []);
  });

  test("small models: influence model + ONNX from labelled rows, influence attribution signed", async () => {
    const outcome = await buildVersionArtifacts(db, app.attribution, ids.labelledVersion);
    assert.equal(outcome.influence, "built");
    const inf = await db.attributionIndex.findUniqueOrThrow({
      where: { datanetVersionId_kind: { datanetVersionId: ids.labelledVersion, kind: "influence" } },
    });
    assert.equal(inf.status, "ready");
    assert.ok(inf.onnxBlobHash && (await app.attribution.store.verify(inf.onnxBlobHash)));
    assert.deepEqual((inf.stats as { classNames: string[] }).classNames, ["ham", "spam"]);
    await scoreWorker(app)({ inferenceId: ids.smallInference }, noopJob());
    const results = await db.attributionResult.findMany({
      where: { inferenceId: ids.smallInference },
      include: { weights: true },
    });
    assert.equal(results.length, 2);
    assert.equal(results[0]!.canonicalJson, results[1]!.canonicalJson);
    assert.equal(results[0]!.method, "influence");
    const evidence = JSON.parse(results[0]!.canonicalJson);
    assert.equal(evidence.labelName, "spam");
    assert.ok(evidence.topHelpful.length > 0);
    // What validators sign is the leave-one-out (one Newton step) influence, not first-order.
    assert.equal(evidence.estimator, "newton-loo");
    const model = await app.attribution.influenceModel(inf.blobHash!);
    const prompt = (await db.inference.findUniqueOrThrow({ where: { id: ids.smallInference } })).prompt;
    const signedTop = BigInt(evidence.topHelpful[0].influence);
    const best = (scores: Float64Array) => quantize(scores).reduce((m, q) => (q > m ? q : m), 0n);
    const features = hashFeatures(prompt, model.features);
    assert.equal(signedTop, best(looInfluenceScores(model.influence, features, evidence.label)));
    assert.notEqual(signedTop, best(influenceScores(model.influence, features, evidence.label)));
    assert.equal(
      results[0]!.weights.reduce((s, w) => s + w.weightPpm, 0),
      1_000_000,
    );
  });

  test("small models: the influence descriptor and ONNX export are served for gateways (hash-checked)", async () => {
    const inf = await db.attributionIndex.findUniqueOrThrow({
      where: { datanetVersionId_kind: { datanetVersionId: ids.labelledVersion, kind: "influence" } },
    });
    const d = await app.inject({ method: "GET", url: `/v1/indexes/${ids.labelledVersion}/influence` });
    assert.equal(d.statusCode, 200, d.body);
    const body = d.json();
    assert.equal(body.onnxBlobHash, inf.onnxBlobHash);
    assert.equal(body.blobHash, inf.blobHash);
    assert.deepEqual(body.classNames, ["ham", "spam"]);
    assert.deepEqual(body.features, { dim: 512, maxNgram: 2, maxChars: 3000 });
    assert.deepEqual(body.onnx, { input: "features", output: "probabilities" });
    const onnx = await app.inject({
      headers: SERVICE,
      method: "GET",
      url: `/v1/indexes/${ids.labelledVersion}/influence/onnx`,
    });
    assert.equal(onnx.statusCode, 200);
    assert.equal(onnx.headers["content-type"], "application/octet-stream");
    assert.equal(onnx.headers["x-content-sha256"], inf.onnxBlobHash);
    assert.equal(createHash("sha256").update(onnx.rawPayload).digest("hex"), inf.onnxBlobHash);
    // A version without an influence model (unlabelled rows): 409; an unknown version: 404.
    for (const suffix of ["influence", "influence/onnx"]) {
      const none = await app.inject({
        headers: SERVICE,
        method: "GET",
        url: `/v1/indexes/${ids.spanVersion}/${suffix}`,
      });
      assert.equal(none.statusCode, 409, none.body);
      assert.equal(none.json().error.code, "CONFLICT");
      const unknown = await app.inject({
        headers: SERVICE,
        method: "GET",
        url: `/v1/indexes/00000000-0000-4000-8000-000000000000/${suffix}`,
      });
      assert.equal(unknown.statusCode, 404);
      const bad = await app.inject({ headers: SERVICE, method: "GET", url: `/v1/indexes/nope/${suffix}` });
      assert.equal(bad.statusCode, 400);
    }
  });

  test("attack: the routes that cost CPU or give a paid model away answer 401 without a key; the explorer's reads stay public", async () => {
    // Before: POST /v1/attribute and POST /v1/indexes ran for anyone (CPU in the validators' process),
    // and GET …/influence/onnx handed anyone the graph of a paid small model.
    const attribute = { text: "hello there", datanetVersionId: ids.spanVersion };
    const onnxUrl = `/v1/indexes/${ids.labelledVersion}/influence/onnx`;
    const calls = [
      { method: "POST" as const, url: "/v1/attribute", payload: attribute },
      { method: "POST" as const, url: "/v1/indexes", payload: { datanetVersionId: ids.spanVersion } },
      { method: "GET" as const, url: onnxUrl },
    ];
    for (const call of calls) {
      const none = await app.inject(call);
      assert.equal(none.statusCode, 401, `${call.url}: ${none.body}`);
      assert.match(none.json().error.code, /^(MISSING_API_KEY|UNAUTHORIZED)$/);
      const wrong = await app.inject({ ...call, headers: { authorization: "Bearer sk-not-a-key" } });
      assert.equal(wrong.statusCode, 401, call.url);
    }
    // An account's own API key (the gateway's, same table) opens the CPU routes...
    const { key } = await new ApiKeys(db).create(chain.accounts.users[0]!.address, "attribution test");
    const asAccount = { authorization: `Bearer ${key}` };
    assert.equal((await app.inject({ ...calls[0]!, headers: asAccount })).statusCode, 200);
    assert.ok([200, 202].includes((await app.inject({ ...calls[1]!, headers: asAccount })).statusCode));
    // ... but not the paid graph: a key costs nothing to create. Only the platform's services get it.
    assert.equal((await app.inject({ ...calls[2]!, headers: asAccount })).statusCode, 401);
    assert.equal((await app.inject({ ...calls[2]!, headers: SERVICE })).statusCode, 200);
    // Public reads (what the explorer shows) need no key.
    for (const url of [
      `/v1/indexes/${ids.spanVersion}`,
      `/v1/indexes/${ids.labelledVersion}/influence`,
      `/v1/inferences/${ids.inference}/trace`,
    ]) {
      assert.equal((await app.inject({ method: "GET", url })).statusCode, 200, url);
    }
  });

  test("small models: the class the model answered is the one explained", async () => {
    // The same spammy prompt, answered "ham" (a served near-tie would do this): the result
    // explains "ham", not the float64 argmax "spam".
    const answered = await db.inference.create({
      data: {
        modelId: "spam-filter",
        accountAddress: CAROL,
        prompt: "urgent cash prize click free bonus",
        output: "ham",
        inputTokens: 6,
        outputTokens: 1,
      },
    });
    await scoreWorker(app)({ inferenceId: answered.id }, noopJob());
    const [r] = await db.attributionResult.findMany({ where: { inferenceId: answered.id } });
    const evidence = JSON.parse(r!.canonicalJson);
    assert.equal(evidence.label, 0);
    assert.equal(evidence.labelName, "ham");
  });

  test("settlement is triggered once a quorum of validators agree, not before; a model without training data at once", async () => {
    const settlementJob = (id: string) =>
      app.producer.queue("settlement").getJob(jobId("inference.completed", { inferenceId: id }));
    const fresh = await db.inference.create({
      data: {
        modelId: "law-lora",
        accountAddress: CAROL,
        prompt: "q",
        output: OUTPUT,
        inputTokens: 3,
        outputTokens: 9,
      },
    });
    const v = chain.accounts.validators;
    type Out = { settlement: string; unrevealed: string[]; results: unknown[] };
    const processOf = (i: number) =>
      buildAttribution(
        configWith({
          RUN_WORKERS: "false",
          VALIDATOR_PRIVATE_KEYS: v[i]!.privateKey,
          ATTRIBUTION_REVEAL_WAIT_MS: "0",
        }),
      );
    // One validator alone (quorum 2): it commits, and reveals nothing while it is the only one that
    // committed — its result is readable nowhere (no row, nothing in the API), so nobody can copy it.
    const first = await processOf(0);
    try {
      const out = (await scoreWorker(first)({ inferenceId: fresh.id }, noopJob())) as Out;
      assert.equal(out.settlement, "waiting for quorum");
      assert.deepEqual(out.unrevealed, [v[0]!.address.toLowerCase()]);
    } finally {
      await first.close();
    }
    assert.equal(await db.attributionResult.count({ where: { inferenceId: fresh.id } }), 0);
    assert.equal(await db.attributionCommitment.count({ where: { inferenceId: fresh.id } }), 1);
    const hidden = (
      await app.inject({ method: "GET", url: `/v1/inferences/${fresh.id}/attribution` })
    ).json();
    assert.deepEqual(hidden.results, [], "no result is readable before its reveal");
    assert.equal(hidden.commitments.length, 1);
    assert.equal(hidden.commitments[0].revealed, false);
    assert.equal(await settlementJob(fresh.id), undefined, "no hand-off before a quorum");
    // A second validator (another process) commits: a quorum of commitments exists (the wait is 0 here),
    // so it reveals; one reveal is no quorum yet.
    const second = await processOf(1);
    try {
      const out = (await scoreWorker(second)({ inferenceId: fresh.id }, noopJob())) as Out;
      assert.equal(out.results.length, 1);
      assert.equal(out.settlement, "waiting for quorum");
    } finally {
      await second.close();
    }
    // The first validator (restarted: a new process) re-derives its salt from its key, opens the commitment
    // it recorded before the reveal, and the quorum exists: settlement is triggered.
    const restarted = await processOf(0);
    try {
      const out = (await scoreWorker(restarted)({ inferenceId: fresh.id }, noopJob())) as Out;
      assert.equal(out.settlement, "triggered");
    } finally {
      await restarted.close();
    }
    const shown = (await app.inject({ method: "GET", url: `/v1/inferences/${fresh.id}/attribution` })).json();
    assert.deepEqual(
      shown.results.map((r: { counted: boolean }) => r.counted),
      [true, true],
    );
    assert.ok(await settlementJob(fresh.id), "inference.completed enqueued by attribution");

    // A model that names no training data: nothing to attribute, ever; settlement need not wait.
    await db.model.create({
      data: {
        id: "plain-base",
        kind: "adapter",
        ownerAddress: BOB,
        contentHash: "cd".repeat(32),
        priceInPer1kWei: "1000",
        priceOutPer1kWei: "2000",
      },
    });
    const plain = await db.inference.create({
      data: {
        modelId: "plain-base",
        accountAddress: CAROL,
        prompt: "q",
        output: "a",
        inputTokens: 1,
        outputTokens: 1,
      },
    });
    const out = (await scoreWorker(app)({ inferenceId: plain.id }, noopJob())) as { settlement: string };
    assert.equal(out.settlement, "triggered");
    assert.equal(await db.attributionResult.count({ where: { inferenceId: plain.id } }), 0);
    assert.ok(await settlementJob(plain.id));
  });

  test("POST /v1/indexes re-drives a failed build and replaces a completed one whose index is gone", async () => {
    // A version published empty: the job fails for good; rows arrive later (a repaired version).
    const v = await db.datanetVersion.create({
      data: {
        datanetId: ids.datanet,
        version: 9,
        merkleRoot: `0x${"ab".repeat(32)}`,
        rowCount: 0,
        contributorCount: 0,
      },
    });
    const queued = await app.producer.enqueue("attribution.index", { datanetVersionId: v.id });
    await waitFor(
      "job failed",
      async () => (await app.producer.queue("attribution").getJob(queued.id))?.isFailed(),
      45_000,
    );
    const c = await db.contribution.create({
      data: { datanetId: ids.datanet, contributorAddress: BOB, source: "rows" },
    });
    const row = await db.datanetRow.create({
      data: {
        datanetId: ids.datanet,
        contributionId: c.id,
        contributorAddress: BOB,
        ordinal: 0,
        text: DOCS[1]!.text,
        normalizedHash: "cd".repeat(32),
        status: "accepted",
      },
    });
    await db.datanetVersionRow.create({ data: { versionId: v.id, position: 0, rowId: row.id } });
    const res = await app.inject({
      headers: SERVICE,
      method: "POST",
      url: "/v1/indexes",
      payload: { datanetVersionId: v.id },
    });
    assert.equal(res.statusCode, 202);
    const ready = async () =>
      (
        await db.attributionIndex.findUnique({
          where: { datanetVersionId_kind: { datanetVersionId: v.id, kind: "span" } },
        })
      )?.status === "ready";
    await waitFor("index built after the retry", ready, 45_000);
    // The index disappears (store wiped, row marked failed): a new POST rebuilds it.
    await waitFor(
      "job completed",
      async () => (await app.producer.queue("attribution").getJob(queued.id))?.isCompleted(),
      45_000,
    );
    await db.attributionIndex.updateMany({ where: { datanetVersionId: v.id }, data: { status: "failed" } });
    const again = await app.inject({
      headers: SERVICE,
      method: "POST",
      url: "/v1/indexes",
      payload: { datanetVersionId: v.id },
    });
    assert.equal(again.statusCode, 202);
    await waitFor("index rebuilt", ready, 45_000);
  });

  test("a recorded index hash that a local rebuild does not reproduce is refused", async () => {
    await buildVersionArtifacts(db, app.attribution, ids.unindexedVersion);
    const forged = "ab".repeat(32);
    await db.attributionIndex.updateMany({
      where: { datanetVersionId: ids.unindexedVersion, kind: "span" },
      data: { blobHash: forged },
    });
    const fresh = new AttributionContext(
      configWith({ ATTRIBUTION_BLOB_DIR: path.join(blobDir, "forged-check") }),
      app.chain,
    );
    await assert.rejects(
      ensureLocalArtifact(db, fresh, ids.unindexedVersion, "span", forged),
      ArtifactMismatchError,
    );
  });
  test("GET /v1/inferences/:id/trace: the signed spans as characters of the answer, with their rows' text", async () => {
    const signed = JSON.parse(
      (await db.attributionResult.findFirstOrThrow({ where: { inferenceId: ids.inference } })).canonicalJson,
    ) as { spans: { start: number; end: number; count: number; rowIds: string[] }[]; weights: unknown[] };
    const res = await app.inject({ method: "GET", url: `/v1/inferences/${ids.inference}/trace` });
    assert.equal(res.statusCode, 200, res.body);
    const t = res.json();
    assert.equal(t.method, "span");
    assert.equal(t.output, OUTPUT);
    assert.equal(t.prompt, "What makes a promise enforceable?");
    assert.equal(t.consensusCount, 2, "the two validators that committed in time signed the same bytes");
    assert.equal(t.validators.length, 2);
    assert.equal(
      t.weights.reduce((s: number, w: { ppm: number }) => s + w.ppm, 0),
      1_000_000,
    );
    assert.equal(t.spans.length, signed.spans.length);
    assert.ok(t.spans.length >= 2);
    const bytes = Buffer.from(OUTPUT, "utf8");
    for (const [i, s] of (
      t.spans as {
        start: number;
        end: number;
        tokenStart: number;
        tokenEnd: number;
        text: string;
        count: number;
        rows: { rowId: string; contributorAddress: string; text: string }[];
        contributors: string[];
      }[]
    ).entries()) {
      const e = signed.spans[i]!;
      assert.deepEqual([s.tokenStart, s.tokenEnd, s.count], [e.start, e.end, e.count]);
      // Byte tokenizer: the signed token range is a byte range of the answer; the characters are the same text.
      assert.equal(bytes.subarray(e.start, e.end).toString("utf8"), s.text);
      assert.equal(OUTPUT.slice(s.start, s.end), s.text);
      assert.deepEqual(
        s.rows.map((r) => r.rowId),
        e.rowIds,
      );
      for (const r of s.rows) {
        const row = await db.datanetRow.findUniqueOrThrow({ where: { id: BigInt(r.rowId) } });
        assert.equal(r.contributorAddress, row.contributorAddress);
        assert.ok(row.text.includes(s.text), "the span occurs verbatim in each row listed");
      }
      assert.deepEqual(s.contributors, [...new Set(s.rows.map((r) => r.contributorAddress))]);
    }

    const small = (
      await app.inject({ method: "GET", url: `/v1/inferences/${ids.smallInference}/trace` })
    ).json();
    const signedSmall = JSON.parse(
      (await db.attributionResult.findFirstOrThrow({ where: { inferenceId: ids.smallInference } }))
        .canonicalJson,
    ) as { topHelpful: { rowId: string; influence: string }[] };
    assert.equal(small.method, "influence");
    assert.deepEqual(small.spans, []);
    assert.deepEqual(small.influence.classNames, ["ham", "spam"]);
    assert.equal(small.influence.labelName, "spam");
    assert.deepEqual(
      small.influence.topHelpful.map((r: { rowId: string; influence: string }) => [r.rowId, r.influence]),
      signedSmall.topHelpful.map((r) => [r.rowId, r.influence]),
    );
    for (const r of small.influence.topHelpful as { rowId: string; text: string; label: string }[]) {
      const row = await db.datanetRow.findUniqueOrThrow({ where: { id: BigInt(r.rowId) } });
      assert.equal(r.text, row.text);
      assert.equal(r.label, row.label);
    }

    const unscored = await db.inference.create({
      data: {
        modelId: "law-lora",
        accountAddress: CAROL,
        prompt: "p",
        output: "o",
        inputTokens: 1,
        outputTokens: 1,
      },
    });
    const none = (await app.inject({ method: "GET", url: `/v1/inferences/${unscored.id}/trace` })).json();
    assert.deepEqual([none.method, none.consensusCount, none.spans, none.weights], [null, 0, [], []]);
    const missing = await app.inject({
      method: "GET",
      url: "/v1/inferences/00000000-0000-4000-8000-000000000000/trace",
    });
    assert.equal(missing.statusCode, 404);
    assert.equal((await app.inject({ method: "GET", url: "/v1/inferences/nope/trace" })).statusCode, 400);
  });
});
