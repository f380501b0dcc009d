// LoRA influence for factory-trained adapters (issue #19), against real Postgres: an adapter trained
// here on two contributors' rows, registered with its lineage (grant + job rows as the gateway and
// factory write them), its files in a content-addressed adapter store. An answer that quotes no row
// (shorter than the minimum span) is paid through gradient influence; validators rebuild the rows'
// gradients from public inputs and reproduce the recorded hash; tampering is refused.
import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import type { AttributionConfig } from "@openledger/config";
import type { Db } from "@openledger/db";
import { testEnvironment } from "@openledger/service-kit/testing";
import { attributionConfig, buildAttribution } from "./app.ts";
import { AttributionContext } from "./lib/context.ts";
import { LineageError, LoraArtifactMismatchError } from "./lib/lora.ts";
import { computeAttribution } from "./lib/scoring.ts";
import { LORA_FIXTURE, seedTrainedAdapter } from "./testing.ts";

const { ALICE, BOB, ROWS, ANSWER, JOB_ID } = LORA_FIXTURE;

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
    // The base model (the platform's generated tiny model), an adapter trained on the rows, its lineage.
    const seeded = await seedTrainedAdapter(db, app.attribution, path.join(dir, "base"));
    ({ adapterHash, inferenceId, uploadedInferenceId } = seeded);
    // Its files in a content-addressed adapter store (the gateway's layout).
    const adapterDir = path.join(dir, "gateway", "adapters", adapterHash);
    await mkdir(adapterDir, { recursive: true });
    await writeFile(path.join(adapterDir, "adapter_config.json"), seeded.configBytes);
    await writeFile(path.join(adapterDir, "adapter_model.safetensors"), seeded.weights);
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
    const job = await db.fineTuningJob.findUniqueOrThrow({ where: { id: JOB_ID } });
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
