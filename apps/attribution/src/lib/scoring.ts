import {
  attributeLoraInfluence,
  attributeSpans,
  attributeText,
  combineAttributions,
  LORA_DAMPING_RATIO,
  type SpanIndex,
  uncoveredTokenMask,
} from "@openledger/attribution-core";
import type { AttributionMethod, Db } from "@openledger/db";
import { canonicalJson } from "./canonical.ts";
import type { AttributionContext } from "./context.ts";
import { ensureLocalArtifact } from "./indexing.ts";
import { answerGradient, ensureLoraGradients, loadLora, loraLineage } from "./lora.ts";

/**
 * Version of the canonical result layout; bump when its fields change.
 * 2: influence results carry `estimator` ("newton-loo": leave-one-out influence by one Newton step).
 * 3: span results carry `spanWeights` and `loraInfluence` (null, or the gradient path of a factory-trained
 *    adapter's answer); `weights` is then the two paths combined by answer token (combine.ts).
 */
export const RESULT_FORMAT_VERSION = 3;

export class ScoringError extends Error {
  constructor(
    readonly code:
      | "INFERENCE_NOT_FOUND"
      | "INFERENCE_FAILED"
      | "NO_TRAINING_VERSIONS"
      | "INDEX_NOT_READY"
      | "UNSUPPORTED",
    message: string,
    /** Whether waiting can fix it (an index still being built). */
    readonly retryable = false,
  ) {
    super(message);
    this.name = "ScoringError";
  }
}

export interface SpanParams {
  minLen: number;
  maxCount: number;
  maxRowsPerSpan: number;
  maxCreditedOccurrences: number;
  weighting: "length" | "rarity";
}

export function spanParams(ctx: AttributionContext, overrides: Partial<SpanParams> = {}): SpanParams {
  return {
    minLen: overrides.minLen ?? ctx.config.ATTRIBUTION_MIN_SPAN_TOKENS,
    maxCount: overrides.maxCount ?? ctx.config.ATTRIBUTION_MAX_SPAN_COUNT,
    maxRowsPerSpan: overrides.maxRowsPerSpan ?? 16,
    maxCreditedOccurrences: overrides.maxCreditedOccurrences ?? 16,
    weighting: overrides.weighting ?? "length",
  };
}

export interface ComputedAttribution {
  method: AttributionMethod;
  /** The canonical result object (integers and strings only). */
  result: Record<string, unknown>;
  canonical: string;
  weights: Array<{ contributorId: string; ppm: number }>;
}

/** Loads the ready span indexes of `versionIds` (shards, in the given order). */
export async function loadSpanShards(
  db: Db,
  ctx: AttributionContext,
  versionIds: readonly string[],
): Promise<{ shards: SpanIndex[]; sources: Array<{ datanetVersionId: string; blobHash: string }> }> {
  const tokenizer = await ctx.tokenizer();
  const shards: SpanIndex[] = [];
  const sources: Array<{ datanetVersionId: string; blobHash: string }> = [];
  for (const id of versionIds) {
    const row = await db.attributionIndex.findUnique({
      where: { datanetVersionId_kind: { datanetVersionId: id, kind: "span" } },
    });
    if (row?.status !== "ready" || !row.blobHash) {
      throw new ScoringError("INDEX_NOT_READY", `the span index of datanet version ${id} is not ready`, true);
    }
    if (row.tokenizer !== tokenizer.id) {
      throw new ScoringError(
        "UNSUPPORTED",
        `the index of datanet version ${id} was built with tokenizer ${row.tokenizer}, this service uses ${tokenizer.id}`,
      );
    }
    await ensureLocalArtifact(db, ctx, id, "span", row.blobHash);
    shards.push(await ctx.spanIndex(row.blobHash));
    sources.push({ datanetVersionId: id, blobHash: row.blobHash });
  }
  return { shards, sources };
}

const toPpm = (p: number) => Math.round(p * 1_000_000);

/**
 * The attribution of one inference, computed only from Postgres rows and content-addressed
 * artifacts, so every validator computes the same canonical bytes: adapters and base models
 * get span attribution over the span indexes of their training versions (one shard per version,
 * ordered by version id); small models get influence attribution from the influence model of
 * their (single) labelled training version. The validator's identity is not part of the result.
 */
export async function computeAttribution(
  db: Db,
  ctx: AttributionContext,
  inferenceId: string,
): Promise<ComputedAttribution> {
  const inference = await db.inference.findUnique({
    where: { id: inferenceId },
    include: { model: { include: { trainingVersions: { select: { datanetVersionId: true } } } } },
  });
  if (!inference) throw new ScoringError("INFERENCE_NOT_FOUND", `inference ${inferenceId} does not exist`);
  if (inference.status !== "completed") {
    throw new ScoringError(
      "INFERENCE_FAILED",
      `inference ${inferenceId} did not complete: nothing to attribute`,
    );
  }
  const versionIds = inference.model.trainingVersions
    .map((v) => v.datanetVersionId)
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  if (versionIds.length === 0) {
    throw new ScoringError(
      "NO_TRAINING_VERSIONS",
      `model ${inference.modelId} names no training datanet versions: nothing to attribute to`,
    );
  }
  const base = { format: RESULT_FORMAT_VERSION, inferenceId, modelId: inference.modelId };

  if (inference.model.kind === "small_model") {
    if (versionIds.length !== 1) {
      throw new ScoringError(
        "UNSUPPORTED",
        `small model ${inference.modelId} names ${versionIds.length} training versions; influence needs exactly one`,
      );
    }
    const versionId = versionIds[0]!;
    const row = await db.attributionIndex.findUnique({
      where: { datanetVersionId_kind: { datanetVersionId: versionId, kind: "influence" } },
    });
    if (row?.status !== "ready" || !row.blobHash) {
      throw new ScoringError(
        "INDEX_NOT_READY",
        `the influence model of datanet version ${versionId} is not ready`,
        true,
      );
    }
    await ensureLocalArtifact(db, ctx, versionId, "influence", row.blobHash);
    const model = await ctx.influenceModel(row.blobHash);
    const classNames = (model.meta.classNames as string[] | undefined) ?? [];
    // A small model classifies its input: the prompt is what the prediction is about. Its output
    // is the class name it answered (the gateway serves the ONNX export in float32): explain that
    // class, so a near-tie ranked differently in float64 here cannot attribute another answer.
    const served = classNames.indexOf(inference.output);
    const att = attributeText(model, inference.prompt, {
      topK: 10,
      ...(served >= 0 ? { label: served } : {}),
    });
    const result = {
      ...base,
      method: "influence",
      estimator: att.estimator,
      source: { datanetVersionId: versionId, blobHash: row.blobHash, features: row.tokenizer },
      label: att.label,
      labelName: classNames[att.label] ?? String(att.label),
      probabilitiesPpm: att.probabilities.map(toPpm),
      topHelpful: att.topHelpful,
      topHarmful: att.topHarmful,
      totalPositive: att.totalPositive,
      unattributed: att.unattributed ?? null,
      weights: att.weights,
    };
    return { method: "influence", result, canonical: canonicalJson(result), weights: att.weights };
  }

  const { shards, sources } = await loadSpanShards(db, ctx, versionIds);
  const tokenizer = await ctx.tokenizer();
  const tokens = tokenizer.encode(inference.output);
  const params = spanParams(ctx);
  const att = attributeSpans(shards, tokens, params);
  const lora = await loraInfluenceOf(db, ctx, inference, versionIds, Array.from(tokens), att.spans);
  const combined = lora?.weights
    ? combineAttributions({
        coveredTokens: lora.coveredTokens,
        totalTokens: tokens.length,
        span: att.weights,
        influence: lora.weights,
      }).weights
    : att.weights;
  const result = {
    ...base,
    method: "span",
    params: { ...params, tokenizer: tokenizer.id },
    sources,
    outputTokens: tokens.length,
    spans: att.spans,
    rows: att.rows,
    totalScore: att.totalScore,
    unattributed: combined.length === 0 ? "no-matching-span" : null,
    spanWeights: att.weights,
    loraInfluence: lora?.evidence ?? null,
    weights: combined,
  };
  return { method: "span", result, canonical: canonicalJson(result), weights: combined };
}

/**
 * The gradient path of an adapter answer (ARCHITECTURE.md, LoRA influence): for an adapter the factory
 * trained (lineage recorded), the influence of each training row on the loss of the answer tokens no
 * kept span covers. null when the adapter has no lineage; an object without `weights` (and with the
 * reason) when the path cannot or did not attribute — validators then sign the span path alone.
 */
async function loraInfluenceOf(
  db: Db,
  ctx: AttributionContext,
  inference: { prompt: string; output: string; model: { id: string; kind: string; contentHash: string } },
  versionIds: readonly string[],
  tokens: number[],
  spans: readonly { start: number; end: number }[],
): Promise<{
  evidence: Record<string, unknown>;
  weights?: Array<{ contributorId: string; ppm: number }>;
  coveredTokens: number;
} | null> {
  const lineage = await loraLineage(db, inference.model, versionIds);
  if (!lineage) return null;
  const { mask, covered } = uncoveredTokenMask(tokens.length, spans);
  const source = {
    adapterHash: lineage.adapterHash,
    baseModelHash: lineage.baseModelHash,
    trainingConfigHash: lineage.trainingConfigHash,
  };
  const skip = (reason: string) => ({
    evidence: {
      source,
      coveredTokens: covered,
      uncoveredTokens: tokens.length - covered,
      unattributed: reason,
    },
    coveredTokens: covered,
  });
  if (covered === tokens.length) return skip("all-tokens-covered");
  const loaded = await loadLora(ctx, lineage);
  if (!loaded) return skip("base-model-or-adapter-unavailable");
  // The span path's token ids must be the model's (same tokenizer), or the mask would not line up.
  const own = loaded.tokenizer.encode(inference.output, { addSpecialTokens: false });
  if (own.length !== tokens.length || own.some((t, i) => t !== tokens[i])) return skip("tokenizer-mismatch");
  const { blobHash, model, artifact } = await ensureLoraGradients(db, ctx, lineage, loaded);
  const grad = await answerGradient(ctx, loaded, inference.prompt, tokens, mask);
  const att = attributeLoraInfluence(model, artifact.rows, grad, {
    topK: 10,
    dampingRatio: LORA_DAMPING_RATIO,
  });
  return {
    evidence: {
      source: { ...source, gradientsBlobHash: blobHash, rows: artifact.grads.rows },
      estimator: att.estimator,
      dampingRatioPpm: Math.round(att.dampingRatio * 1_000_000),
      coveredTokens: covered,
      uncoveredTokens: tokens.length - covered,
      topHelpful: att.topHelpful,
      topHarmful: att.topHarmful,
      totalPositive: att.totalPositive,
      unattributed: att.unattributed ?? null,
      weights: att.weights,
    },
    ...(att.weights.length > 0 ? { weights: att.weights } : {}),
    coveredTokens: covered,
  };
}
