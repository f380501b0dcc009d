import { createHash, randomUUID } from "node:crypto";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { ChainConnector } from "@openledger/chain";
import { localAccounts } from "@openledger/chain/testing";
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
import { privateKeyToAccount } from "viem/accounts";
import type { AttributionContext } from "./lib/context.ts";
import { attestClosedEpochs } from "./lib/epoch-attestor.ts";
import { buildVersionArtifacts } from "./lib/indexing.ts";

// What other apps' tests drive directly (the gateway's test of validators fetching adapter files).
export { AdapterFetchError, GatewayAdapterSource } from "./lib/adapter-source.ts";
export { AttributionContext } from "./lib/context.ts";
export { computeAttribution } from "./lib/scoring.ts";

/**
 * The local validators' epoch attestors, for tests of settlement that post roots without running the
 * attribution service: each of the local deployment's validators (Hardhat #5-7, or `keys`) runs the
 * validator's own attestor (`attestClosedEpochs`: recount, then sign) every `intervalMs`, as a validator
 * process does. Settlement holds no validator key, so without these no root is ever posted.
 */
export function startTestAttestors(options: {
  db: Db;
  rpcUrl: string;
  addressesFile: string;
  keys?: readonly `0x${string}`[];
  intervalMs?: number;
}): { stop(): Promise<void> } {
  const keys = options.keys ?? localAccounts().validators.map((v) => v.privateKey);
  const connector = new ChainConnector({
    rpcUrl: options.rpcUrl,
    addressesFile: options.addressesFile,
    profile: "dev",
  });
  const identities = keys.map((k) => {
    const account = privateKeyToAccount(k);
    return { address: account.address.toLowerCase(), account };
  });
  const quiet = { info() {}, warn() {} };
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      try {
        const chain = await connector.get();
        for (const identity of identities) await attestClosedEpochs(options.db, chain, identity, quiet);
      } catch {
        // the chain or database went away (a test of outages): try again next round
      }
      await new Promise((r) => setTimeout(r, options.intervalMs ?? 100));
    }
  })();
  return {
    async stop() {
      stopped = true;
      await loop;
    },
  };
}

/** The LoRA-influence fixture's contributors and text (see `seedTrainedAdapter`). */
export const LORA_FIXTURE = {
  ALICE: "0x00000000000000000000000000000000000a11ce",
  BOB: "0x0000000000000000000000000000000000000b0b",
  // Alice's rows teach "ab" → "c"; Bob's teach "xy" → "z". The answer continues Alice's pattern.
  ROWS: [
    { who: "0x00000000000000000000000000000000000a11ce", text: "abcabcabcabcabcabcabc" },
    { who: "0x0000000000000000000000000000000000000b0b", text: "xyzxyzxyzxyzxyzxyzxyz" },
    { who: "0x00000000000000000000000000000000000a11ce", text: "cabcabcabcabcabcabcab" },
    { who: "0x0000000000000000000000000000000000000b0b", text: "zxyzxyzxyzxyzxyzxyzxy" },
  ],
  PROMPT: "abcab",
  /** 6 bytes: below a 12-token minimum span, so no span can cover it. */
  ANSWER: "cabcab",
  /** The factory job's id in the recorded lineage. */
  JOB_ID: "ftjob-000000000000000000000001",
} as const;

export interface TrainedAdapterFixture {
  /** The base model's directory (the generated tiny model) and the SHA-256 of its weights. */
  baseDir: string;
  baseHash: string;
  /** The adapter's PEFT files and content hash. */
  configBytes: Uint8Array;
  weights: Uint8Array;
  adapterHash: string;
  versionId: string;
  /** An answer of the factory-trained adapter `ft-tiny-abc` (lineage recorded) quoting no row. */
  inferenceId: string;
  /** The same answer of `uploaded-abc`: the same files, no lineage. */
  uploadedInferenceId: string;
}

/**
 * A factory-trained adapter as the platform records it, for tests of LoRA influence (issue #19): the tiny
 * base model generated into `baseDir`, an adapter trained on two contributors' rows (LORA_FIXTURE), the
 * datanet version with its artifacts built by `ctx`, the model rows with their lineage (grant + job, as
 * the gateway and the factory write them) and one answer of each model. The adapter's files are the
 * caller's to store (the gateway's store, or a directory).
 */
export async function seedTrainedAdapter(
  db: Db,
  ctx: AttributionContext,
  baseDir: string,
): Promise<TrainedAdapterFixture> {
  const { ALICE, BOB, ROWS, PROMPT, ANSWER, JOB_ID } = LORA_FIXTURE;
  const dir = await ensureGeneratedModelDir(baseDir, TINY_CONFIG, 1);
  const baseHash = createHash("sha256")
    .update(await readFile(path.join(dir, "model.safetensors")))
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
  const configBytes = new TextEncoder().encode(JSON.stringify(peft.adapterConfig));
  const adapterHash = adapterContentHash(configBytes, peft.safetensors);

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
  await buildVersionArtifacts(db, ctx, version.id);
  const mkModel = (id: string) =>
    db.model.create({
      data: {
        id,
        kind: "adapter",
        ownerAddress: BOB,
        baseModel: "tiny",
        contentHash: adapterHash,
        priceInPer1kWei: "1000",
        priceOutPer1kWei: "2000",
        trainingVersions: { create: [{ datanetVersionId: version.id }] },
      },
    });
  await mkModel("ft-tiny-abc");
  await mkModel("uploaded-abc");
  // The lineage as the factory and the gateway record it.
  const grantId = randomUUID();
  await db.fineTuningJob.create({
    data: {
      id: JOB_ID,
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
      jobRef: JOB_ID,
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
  return {
    baseDir: dir,
    baseHash,
    configBytes,
    weights: peft.safetensors,
    adapterHash,
    versionId: version.id,
    inferenceId: (await mkInference("ft-tiny-abc")).id,
    uploadedInferenceId: (await mkInference("uploaded-abc")).id,
  };
}
