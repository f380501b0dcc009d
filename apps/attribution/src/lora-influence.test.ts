// LoRA influence for factory-trained adapters (issue #19), against real Postgres: an adapter trained
// here on two contributors' rows, registered with its lineage (grant + job rows as the gateway and
// factory write them), its files in a content-addressed adapter store. An answer that quotes no row
// (shorter than the minimum span) is paid through gradient influence; validators rebuild the rows'
// gradients from public inputs and reproduce the recorded hash; tampering is refused.
import assert from "node:assert/strict";
import { createHash, randomUUID } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import type { AttributionConfig } from "@openledger/config";
import type { Db } from "@openledger/db";
import { seedVersionRows } from "@openledger/db/testing";
import {
  adapterContentHash,
  batchFromRows,
  ensureGeneratedModelDir,
  generateBaseModel,
  TINY_CONFIG,
  Trainer,
  type TrainerOptions,
  trainingConfigHash,
} from "@openledger/model-runtime";
import { testEnvironment } from "@openledger/service-kit/testing";
import { attributionConfig, buildAttribution } from "./app.ts";
import { AttributionContext } from "./lib/context.ts";
import { buildVersionArtifacts } from "./lib/indexing.ts";
import { LineageError, LoraArtifactMismatchError } from "./lib/lora.ts";
import { computeAttribution } from "./lib/scoring.ts";

const ALICE = "0x00000000000000000000000000000000000a11ce";
const BOB = "0x0000000000000000000000000000000000000b0b";
// Alice's rows teach "ab" → "c"; Bob's teach "xy" → "z". The answer continues Alice's pattern.
const ROWS = [
  { who: ALICE, text: "abcabcabcabcabcabcabc" },
  { who: BOB, text: "xyzxyzxyzxyzxyzxyzxyz" },
  { who: ALICE, text: "cabcabcabcabcabcabcab" },
  { who: BOB, text: "zxyzxyzxyzxyzxyzxyzxy" },
];
const PROMPT = "abcab";
const ANSWER = "cabcab"; // 6 bytes: below the 12-token minimum span, so no span can cover it

describe("LoRA influence of a factory-trained adapter", () => {
  let env: Awaited<ReturnType<typeof testEnvironment>>;
  let dir: string;
  let app: Awaited<ReturnType<typeof buildAttribution>>;
  let db: Db;
  let config: AttributionConfig;
  let adapterHash: string;
  let inferenceId: string;
  let uploadedInferenceId: string;
  const configWith = (extra: Record<string, string>) =>
    attributionConfig({
      ...env.env,
      ATTRIBUTION_BLOB_DIR: path.join(dir, "blobs"),
      ATTRIBUTION_ADAPTER_DIR: path.join(dir, "gateway"),
      ATTRIBUTION_MODEL_DIRS: path.join(dir, "base"),
      // The adapter here is of the tiny byte-level model: spans and gradients on its token ids.
      ATTRIBUTION_TOKENIZER: "byte",
      ATTRIBUTION_MIN_SPAN_TOKENS: "12",
      ATTRIBUTION_VALIDATOR_SCAN_MS: "0",
      ATTRIBUTION_EPOCH_ATTEST_INTERVAL_MS: "0",
      ...extra,
    });
  const freshContext = (blobs: string) =>
    new AttributionContext(configWith({ ATTRIBUTION_BLOB_DIR: path.join(dir, blobs) }), app.chain);

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "lora-influence-"));
    env = await testEnvironment("lora_influence");
    config = configWith({});
    app = await buildAttribution(config);
    db = app.db;
    // The base model (the platform's generated tiny model) and an adapter trained on the rows.
    const baseDir = await ensureGeneratedModelDir(path.join(dir, "base"), TINY_CONFIG, 1);
    const baseHash = createHash("sha256")
      .update(await readFile(path.join(baseDir, "model.safetensors")))
      .digest("hex");
    const options: TrainerOptions = {
      mode: "lora",
      lora: { rank: 4, alpha: 8, targetModules: ["q_proj", "k_proj", "v_proj", "o_proj"] },
      batch: 4,
      seq: 32,
      optimizer: { lr: 1e-2, schedule: "constant" },
      seed: 3,
      intraOpThreads: 1,
    };
    const trainer = await Trainer.create(generateBaseModel(TINY_CONFIG, 1), options);
    const docs = ROWS.map((r) => [256, ...new TextEncoder().encode(r.text)]);
    for (let s = 0; s < 30; s++) await trainer.trainStep(batchFromRows(docs, 4, 32));
    const peft = trainer.toPeft("tiny");
    await trainer.dispose();
    const cfgBytes = new TextEncoder().encode(JSON.stringify(peft.adapterConfig));
    adapterHash = adapterContentHash(cfgBytes, peft.safetensors);
    const adapterDir = path.join(dir, "gateway", "adapters", adapterHash);
    await mkdir(adapterDir, { recursive: true });
    await writeFile(path.join(adapterDir, "adapter_config.json"), cfgBytes);
    await writeFile(path.join(adapterDir, "adapter_model.safetensors"), peft.safetensors);

    for (const a of [ALICE, BOB]) await db.contributor.create({ data: { address: a } });
    const datanet = await db.datanet.create({
      data: { slug: "abc", name: "abc", type: "text", license: "CC0-1.0", ownerAddress: ALICE },
    });
    const version = await db.datanetVersion.create({
      data: {
        datanetId: datanet.id,
        version: 1,
        merkleRoot: `0x${"ab".repeat(32)}`,
        rowCount: ROWS.length,
        contributorCount: 2,
        status: "registered",
      },
    });
    await seedVersionRows(db, datanet.id, version.id, ROWS);
    await buildVersionArtifacts(db, app.attribution, version.id);
    const mkModel = (id: string, contentHash: string) =>
      db.model.create({
        data: {
          id,
          kind: "adapter",
          ownerAddress: BOB,
          baseModel: "tiny",
          contentHash,
          priceInPer1kWei: "1000",
          priceOutPer1kWei: "2000",
          trainingVersions: { create: [{ datanetVersionId: version.id }] },
        },
      });
    await mkModel("ft-tiny-abc", adapterHash);
    await mkModel("uploaded-abc", adapterHash);
    // The lineage as the factory and the gateway record it.
    const jobId = "ftjob-000000000000000000000001";
    const grantId = randomUUID();
    await db.fineTuningJob.create({
      data: {
        id: jobId,
        accountAddress: BOB,
        baseModel: "tiny",
        baseModelHash: baseHash,
        status: "succeeded",
        datanetVersionIds: [version.id],
        hyperparameters: {},
        trainerOptions: options as object,
        configHash: trainingConfigHash(options),
        seed: 3,
        pricePer1kTokensWei: "1",
        maxFeeWei: "1000",
        grantId,
        grantToken: "grant-token",
        fineTunedModel: "ft-tiny-abc",
      },
    });
    await db.trainingGrant.create({
      data: {
        id: grantId,
        tokenHash: "aa".repeat(32),
        accountAddress: BOB,
        jobRef: jobId,
        datanetVersionIds: [version.id],
        baseModelHash: baseHash,
        pricePer1kTokensWei: "1",
        maxTokens: 1000n,
        maxFeeWei: "1000",
        reservationId: randomUUID(),
        expiresAt: new Date(Date.now() + 3_600_000),
        usedAt: new Date(),
        modelId: "ft-tiny-abc",
        trainingConfigHash: trainingConfigHash(options),
      },
    });
    const mkInference = (modelId: string) =>
      db.inference.create({
        data: {
          modelId,
          accountAddress: BOB,
          prompt: PROMPT,
          output: ANSWER,
          inputTokens: 5,
          outputTokens: 6,
        },
      });
    inferenceId = (await mkInference("ft-tiny-abc")).id;
    uploadedInferenceId = (await mkInference("uploaded-abc")).id;
  });

  after(async () => {
    await app?.close();
    await env?.cleanup();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test("an answer with no verbatim span pays the rows whose gradients explain it (Alice's pattern)", async () => {
    const r = await computeAttribution(db, app.attribution, inferenceId);
    const res = r.result as Record<string, unknown> & {
      spans: unknown[];
      spanWeights: unknown[];
      loraInfluence: { weights: { contributorId: string; ppm: number }[]; uncoveredTokens: number } & Record<
        string,
        unknown
      >;
    };
    assert.equal(res.format, 3);
    assert.deepEqual(res.spans, []);
    assert.deepEqual(res.spanWeights, []);
    assert.equal(res.loraInfluence.uncoveredTokens, ANSWER.length);
    assert.equal(
      r.weights.reduce((s, w) => s + w.ppm, 0),
      1_000_000,
    );
    assert.deepEqual(r.weights, res.loraInfluence.weights);
    const alice = r.weights.find((w) => w.contributorId === ALICE)?.ppm ?? 0;
    const bob = r.weights.find((w) => w.contributorId === BOB)?.ppm ?? 0;
    assert.ok(alice > bob, `alice ${alice} ppm, bob ${bob} ppm`);
    const recorded = await db.adapterInfluence.findUniqueOrThrow({ where: { modelId: "ft-tiny-abc" } });
    assert.equal(recorded.adapterHash, adapterHash);
    assert.equal(recorded.rowCount, ROWS.length);
  });

  test("another validator (its own blob store) rebuilds the gradients from public inputs: same hash, same bytes", async () => {
    const first = await computeAttribution(db, app.attribution, inferenceId);
    const other = await computeAttribution(db, freshContext("blobs-other"), inferenceId);
    assert.equal(other.canonical, first.canonical);
  });

  test("attack: a recorded gradient hash that a rebuild does not reproduce is refused", async () => {
    await computeAttribution(db, app.attribution, inferenceId);
    const recorded = await db.adapterInfluence.findUniqueOrThrow({ where: { modelId: "ft-tiny-abc" } });
    await db.adapterInfluence.update({
      where: { modelId: "ft-tiny-abc" },
      data: { blobHash: "ab".repeat(32) },
    });
    try {
      await assert.rejects(
        computeAttribution(db, freshContext("blobs-forged"), inferenceId),
        LoraArtifactMismatchError,
      );
    } finally {
      await db.adapterInfluence.update({
        where: { modelId: "ft-tiny-abc" },
        data: { blobHash: recorded.blobHash },
      });
    }
  });

  test("attack: trainer options that do not hash to the registered training-config hash are refused", async () => {
    const job = await db.fineTuningJob.findUniqueOrThrow({ where: { id: "ftjob-000000000000000000000001" } });
    const forged = { ...(job.trainerOptions as object), seq: 64 };
    await db.fineTuningJob.update({ where: { id: job.id }, data: { trainerOptions: forged } });
    try {
      await assert.rejects(computeAttribution(db, freshContext("blobs-lineage"), inferenceId), LineageError);
    } finally {
      await db.fineTuningJob.update({
        where: { id: job.id },
        data: { trainerOptions: job.trainerOptions as object },
      });
    }
  });

  test("a validator that cannot load the lineage's base model signs the span path alone, saying why", async () => {
    const blind = new AttributionContext(
      configWith({
        ATTRIBUTION_BLOB_DIR: path.join(dir, "blobs-blind"),
        ATTRIBUTION_MODEL_DIRS: path.join(dir, "none"),
      }),
      app.chain,
    );
    const r = await computeAttribution(db, blind, inferenceId);
    const lora = (r.result as { loraInfluence: { unattributed: string } }).loraInfluence;
    assert.equal(lora.unattributed, "base-model-or-adapter-unavailable");
    assert.deepEqual(r.weights, []);
  });

  test("an adapter without lineage (uploaded) is attributed by spans only", async () => {
    const r = await computeAttribution(db, app.attribution, uploadedInferenceId);
    assert.equal((r.result as { loraInfluence: unknown }).loraInfluence, null);
    assert.deepEqual(r.weights, []);
  });
});
