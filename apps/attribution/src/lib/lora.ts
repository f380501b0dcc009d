/**
 * LoRA influence for adapters trained by the factory (issue #19): the lineage that makes an
 * adapter's training recomputable, the per-example gradients of its training rows at the trained
 * adapter (a content-addressed artifact every validator rebuilds from public inputs and checks
 * against the recorded hash), and one answer's gradient over the tokens no kept span covers.
 */
import { readFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import {
  decodeLoraGradients,
  LORA_DAMPING_RATIO,
  type LoraGradientArtifact,
  type LoraInfluenceModel,
  prepareLoraInfluence,
} from "@openledger/attribution-core";
import { REPO_ROOT } from "@openledger/chain";
import { TINY_MODEL_DIR } from "@openledger/config";
import type { Db } from "@openledger/db";
import {
  AnswerGradientGraph,
  adapterContentHash,
  answerGradientShape,
  answerLoraGradient,
  type BaseModel,
  baseModelHash,
  ensureTinyModelDir,
  type LoraAdapter,
  loadModel,
  parsePeftAdapter,
  type TextTokenizer,
  type TrainerOptions,
  trainingConfigHash,
} from "@openledger/model-runtime";
import { runBuildTask } from "./build-runner.ts";
import type { AttributionContext } from "./context.ts";
import { loadVersionRows, type VersionRow } from "./indexing.ts";

/** What makes an adapter's training recomputable: recorded by the factory and the gateway. */
export interface LoraLineage {
  modelId: string;
  /** models.content_hash: the adapter files' hash. */
  adapterHash: string;
  /** SHA-256 of the base model's model.safetensors the job trained on. */
  baseModelHash: string;
  trainingConfigHash: string;
  /** Tokens per training window (the trainer's seq). */
  seq: number;
  /** The datanet versions the adapter is paid for, sorted by id (the rows' order). */
  versionIds: string[];
}

export class LineageError extends Error {
  override name = "LineageError";
}

/**
 * The lineage of a factory-trained adapter, or null for an adapter without one (uploaded: span
 * attribution only). The grant the gateway used to register it names the base model and the
 * training-config hash; the factory's job holds the trainer options, which must hash to it.
 */
export async function loraLineage(
  db: Db,
  model: { id: string; kind: string; contentHash: string },
  versionIds: readonly string[],
): Promise<LoraLineage | null> {
  if (model.kind !== "adapter") return null;
  const grant = await db.trainingGrant.findUnique({ where: { modelId: model.id } });
  if (!grant?.trainingConfigHash) return null;
  const job = await db.fineTuningJob.findUnique({ where: { id: grant.jobRef } });
  if (!job?.trainerOptions) return null;
  const options = job.trainerOptions as unknown as TrainerOptions;
  if (trainingConfigHash(options) !== grant.trainingConfigHash) {
    throw new LineageError(
      `model ${model.id}: the job's trainer options do not hash to the registered training-config hash`,
    );
  }
  if (job.baseModelHash !== grant.baseModelHash) {
    throw new LineageError(`model ${model.id}: the job and its grant name different base models`);
  }
  return {
    modelId: model.id,
    adapterHash: model.contentHash,
    baseModelHash: grant.baseModelHash,
    trainingConfigHash: grant.trainingConfigHash,
    seq: options.seq,
    versionIds: [...versionIds],
  };
}

/** Base model directories by the SHA-256 of their model.safetensors (computed once per process). */
export async function baseModelDirs(dirs: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const d of dirs
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean)) {
    let dir = resolve(REPO_ROOT, d);
    if (d === TINY_MODEL_DIR) dir = await ensureTinyModelDir(dir);
    try {
      out.set(await baseModelHash(dir), dir);
    } catch {
      // not readable here: that base model's adapters get span attribution only
    }
  }
  return out;
}

export interface LoadedLora {
  model: BaseModel;
  tokenizer: TextTokenizer;
  adapter: LoraAdapter;
  modelDir: string;
  /** The adapter files' content hash (read them through `ctx.adapters.use`: a cached copy may be evicted). */
  adapterHash: string;
}

/** Loads the lineage's base model and adapter, the adapter's files checked against its content hash. */
export async function loadLora(ctx: AttributionContext, lineage: LoraLineage): Promise<LoadedLora | null> {
  const modelDir = (await ctx.baseModelDirs()).get(lineage.baseModelHash);
  if (!modelDir) return null;
  // The gateway's disk, or (independent validators) this process's copy fetched from the gateway and
  // checked there, not evicted while it is read; an adapter the source does not have is attributed by
  // spans only.
  return ctx.adapters.use(lineage.adapterHash, async (adapterDir) =>
    adapterDir ? parseLora(ctx, lineage, modelDir, adapterDir) : null,
  );
}

function parseLora(
  ctx: AttributionContext,
  lineage: LoraLineage,
  modelDir: string,
  adapterDir: string,
): Promise<LoadedLora> {
  // The files sit under their content hash, so once checked and parsed they are reused for every
  // answer of this adapter (a failed check is not cached: the next answer checks again).
  return ctx.loras.get(`${lineage.adapterHash}:${modelDir}`, async () => {
    const { model, tokenizer } = await ctx.baseModel(modelDir, () => loadModel({ dir: modelDir }));
    const cfgBytes = await readFile(join(adapterDir, "adapter_config.json"));
    const weights = await readFile(join(adapterDir, "adapter_model.safetensors"));
    if (adapterContentHash(cfgBytes, weights) !== lineage.adapterHash) {
      await ctx.adapters.evict(lineage.adapterHash); // a fetched copy altered since: fetched again next time
      throw new LineageError(
        `the stored files of ${lineage.modelId} do not hash to its registered content hash`,
      );
    }
    const adapter = parsePeftAdapter(model.config, JSON.parse(cfgBytes.toString("utf8")), weights);
    return { model, tokenizer, adapter, modelDir, adapterHash: lineage.adapterHash };
  });
}

export class LoraArtifactMismatchError extends Error {
  override name = "LoraArtifactMismatchError";
}

/**
 * The adapter's training-row gradients: the recorded artifact when this process has its blob,
 * else rebuilt here (worker thread) from the rows in Postgres, the base model and the adapter;
 * the first build records its hash, later ones must reproduce it (a mismatch is refused).
 */
export async function ensureLoraGradients(
  db: Db,
  ctx: AttributionContext,
  lineage: LoraLineage,
  lora: LoadedLora,
): Promise<{ blobHash: string; model: LoraInfluenceModel; artifact: LoraGradientArtifact }> {
  const recorded = await db.adapterInfluence.findUnique({ where: { modelId: lineage.modelId } });
  if (recorded && !(await ctx.store.has(recorded.blobHash))) {
    const built = await buildLoraGradients(db, ctx, lineage, lora);
    if (built.blobHash !== recorded.blobHash) {
      throw new LoraArtifactMismatchError(
        `the LoRA gradients of ${lineage.modelId} rebuilt here hash to ${built.blobHash}, not the recorded ${recorded.blobHash}: refusing to attribute with them`,
      );
    }
  }
  let blobHash = recorded?.blobHash;
  if (!blobHash) {
    const built = await buildLoraGradients(db, ctx, lineage, lora);
    await db.adapterInfluence.createMany({
      data: [
        {
          modelId: lineage.modelId,
          blobHash: built.blobHash,
          adapterHash: lineage.adapterHash,
          baseModelHash: lineage.baseModelHash,
          trainingConfigHash: lineage.trainingConfigHash,
          rowCount: built.rows,
          stats: built.stats,
        },
      ],
      skipDuplicates: true,
    });
    const row = await db.adapterInfluence.findUniqueOrThrow({ where: { modelId: lineage.modelId } });
    if (row.blobHash !== built.blobHash) {
      throw new LoraArtifactMismatchError(
        `the LoRA gradients of ${lineage.modelId} built here hash to ${built.blobHash}, another validator recorded ${row.blobHash}`,
      );
    }
    blobHash = row.blobHash;
  }
  const prepared = await ctx.loraInfluence(blobHash, async () => {
    const artifact = decodeLoraGradients(await ctx.store.get(blobHash));
    return { artifact, model: prepareLoraInfluence(artifact.grads, { dampingRatio: LORA_DAMPING_RATIO }) };
  });
  return { blobHash, ...prepared };
}

async function buildLoraGradients(db: Db, ctx: AttributionContext, lineage: LoraLineage, lora: LoadedLora) {
  const rows: VersionRow[] = [];
  for (const v of lineage.versionIds) rows.push(...(await loadVersionRows(db, v)));
  const started = Date.now();
  // The thread reads the adapter's files: looked up again (a cached copy may have been evicted since
  // it was parsed, then it is fetched and checked again) and kept on disk until the build is done.
  const built = await ctx.adapters.use(lineage.adapterHash, async (adapterDir) => {
    if (!adapterDir)
      throw new LineageError(`the files of adapter ${lineage.adapterHash} are no longer available`);
    return runBuildTask({
      kind: "lora-gradients",
      modelDir: lora.modelDir,
      adapterDir,
      seq: lineage.seq,
      rows: rows.map((r) => ({
        rowId: r.rowId,
        contributionId: r.contributionId,
        contributorId: r.contributorAddress,
        text: r.text,
      })),
      meta: {
        modelId: lineage.modelId,
        adapterHash: lineage.adapterHash,
        baseModelHash: lineage.baseModelHash,
        trainingConfigHash: lineage.trainingConfigHash,
        datanetVersionIds: lineage.versionIds,
        seq: lineage.seq,
      },
    });
  });
  const blobHash = await ctx.store.put(built.chunks);
  const bytes = built.chunks.reduce((s, c) => s + c.byteLength, 0);
  return {
    blobHash,
    rows: rows.length,
    stats: { ...built.stats, bytes, seconds: Math.round((Date.now() - started) / 100) / 10 },
  };
}

/**
 * The answer's loss gradient over the answer tokens `mask` keeps (1 = not covered by a kept span),
 * each weighted 1/uncovered (a mean, like the rows' mean token loss), given the stored prompt encoded
 * as the gateway's /v1/completions encodes it (with the tokenizer's special tokens).
 */
export async function answerGradient(
  ctx: AttributionContext,
  lora: LoadedLora,
  prompt: string,
  answerTokens: readonly number[],
  mask: Uint8Array,
): Promise<Float32Array> {
  const context = [...lora.tokenizer.encode(prompt, { addSpecialTokens: true }), ...answerTokens];
  const p = context.length - answerTokens.length;
  const uncovered = mask.reduce((s, m) => s + m, 0);
  const weights = new Float32Array(context.length - 1);
  for (let j = 0; j < answerTokens.length; j++) {
    if (mask[j] && p + j - 1 >= 0) weights[p + j - 1] = 1 / uncovered;
  }
  const { seq } = answerGradientShape(lora.model.config, context.length);
  const key = `${lora.adapterHash}:${lora.modelDir}:${seq}`;
  const graph = await ctx.answerGraphs.get(key, () =>
    AnswerGradientGraph.create(lora.model, lora.adapter, seq),
  );
  try {
    return await graph.gradient(context, weights);
  } catch (err) {
    // Evicted (disposed) between the lookup and the run by a burst of other adapters: one graph for this answer.
    if ((err as Error).message !== "answer gradient graph disposed") throw err;
    return answerLoraGradient(lora.model, lora.adapter, context, weights);
  }
}
