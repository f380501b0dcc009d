/**
 * A trained influence model of one labelled datanet version, ready to attribute predictions:
 * feature settings, the logistic model, its Hessian's Cholesky factor, the training rows
 * (sparse features, labels, residuals) and their row -> contribution -> contributor identity.
 * Stored in the flat-binary container (magic "OLINFLUX") so a validator loads it with one
 * read instead of retraining.
 */
import { readFileSync } from "node:fs";
import { type FeatureOptions, hashFeatures, toCsr } from "./features.ts";
import {
  asFloat64,
  asInt32,
  asJson,
  bytesOf,
  type DecodeOptions,
  decodeFlat,
  encodeFlat,
  FlatFormatError,
  jsonBytes,
  SectionKind,
} from "./flat-binary.ts";
import {
  type AttributeInfluenceOptions,
  attributeInfluence,
  type InfluenceAttribution,
  type TrainingRowRef,
} from "./influence-attribution.ts";
import {
  type InfluenceModel,
  looCorrection,
  paramCount,
  prepareInfluence,
  type TrainOptions,
  trainLogistic,
} from "./logistic.ts";
import { writeChunks } from "./span-index.ts";

export const INFLUENCE_FORMAT_VERSION = 1;
const MAGIC = "OLINFLUX";

export interface TrainedInfluenceModel {
  features: FeatureOptions;
  influence: InfluenceModel;
  labels: Int32Array;
  rows: TrainingRowRef[];
  /** Training summary and caller metadata (datanet id, version...). */
  meta: Record<string, unknown>;
}

export interface LabelledRow extends TrainingRowRef {
  text: string;
  /** Class index in [0, classes). */
  label: number;
}

/**
 * Hash features, train (Newton, deterministic) and factor the Hessian. Feed rows in a
 * canonical order (e.g. by row id): the same rows give a bit-identical model.
 */
export function trainInfluenceModel(
  rows: readonly LabelledRow[],
  features: FeatureOptions,
  options: TrainOptions & { meta?: Record<string, unknown> },
): TrainedInfluenceModel {
  const x = toCsr(
    rows.map((r) => hashFeatures(r.text, features)),
    features.dim,
  );
  const labels = Int32Array.from(rows, (r) => r.label);
  const trained = trainLogistic(x, labels, options);
  return {
    features,
    influence: prepareInfluence(trained.model, x, labels),
    labels,
    rows: rows.map(({ rowId, contributionId, contributorId }) => ({ rowId, contributionId, contributorId })),
    meta: {
      ...options.meta,
      iterations: trained.iterations,
      gradMax: trained.gradMax,
      objective: trained.objective,
    },
  };
}

/** Attribute the prediction for `text` (hashes it with the model's feature settings). */
export function attributeText(
  m: TrainedInfluenceModel,
  text: string,
  options?: AttributeInfluenceOptions,
): InfluenceAttribution {
  return attributeInfluence(m.influence, m.rows, hashFeatures(text, m.features), options);
}

const S = {
  Weights: 1,
  Cholesky: 2,
  RowPtr: 3,
  Indices: 4,
  Values: 5,
  Residuals: 6,
  Labels: 7,
  Meta: 8,
} as const;

export function encodeInfluenceModel(m: TrainedInfluenceModel): Uint8Array[] {
  const { model, x, cholesky, residuals } = m.influence;
  return encodeFlat(
    MAGIC,
    INFLUENCE_FORMAT_VERSION,
    [model.dim, model.classes, x.rows],
    [
      { id: S.Weights, kind: SectionKind.Float64, bytes: bytesOf(model.weights) },
      { id: S.Cholesky, kind: SectionKind.Float64, bytes: bytesOf(cholesky) },
      { id: S.RowPtr, kind: SectionKind.Int32, bytes: bytesOf(x.rowPtr) },
      { id: S.Indices, kind: SectionKind.Int32, bytes: bytesOf(x.indices) },
      { id: S.Values, kind: SectionKind.Float64, bytes: bytesOf(x.values) },
      { id: S.Residuals, kind: SectionKind.Float64, bytes: bytesOf(residuals) },
      { id: S.Labels, kind: SectionKind.Int32, bytes: bytesOf(m.labels) },
      {
        id: S.Meta,
        kind: SectionKind.Json,
        bytes: jsonBytes({ lambda: model.lambda, features: m.features, rows: m.rows, meta: m.meta }),
      },
    ],
  );
}

export function decodeInfluenceModel(data: Uint8Array, options?: DecodeOptions): TrainedInfluenceModel {
  const f = decodeFlat(data, MAGIC, [INFLUENCE_FORMAT_VERSION], options);
  const [dim, classes, rows] = f.words as [number, number, number];
  const meta = asJson<{
    lambda: number;
    features: FeatureOptions;
    rows: TrainingRowRef[];
    meta: Record<string, unknown>;
  }>(f.need(S.Meta));
  const P = paramCount(dim, classes);
  const weights = asFloat64(f.need(S.Weights));
  const cholesky = asFloat64(f.need(S.Cholesky));
  const rowPtr = asInt32(f.need(S.RowPtr));
  const indices = asInt32(f.need(S.Indices));
  const values = asFloat64(f.need(S.Values));
  const residuals = asFloat64(f.need(S.Residuals));
  const labels = asInt32(f.need(S.Labels));
  if (
    weights.length !== P ||
    cholesky.length !== P * P ||
    rowPtr.length !== rows + 1 ||
    indices.length !== values.length ||
    rowPtr[rows] !== indices.length ||
    residuals.length !== rows * (classes - 1) ||
    labels.length !== rows ||
    meta.rows.length !== rows
  ) {
    throw new FlatFormatError("inconsistent section sizes");
  }
  const model = { dim, classes, lambda: meta.lambda, weights };
  const x = { rows, dim, rowPtr, indices, values };
  return {
    features: meta.features,
    // The leave-one-out correction is recomputed, not stored: the file (and so its hash, which
    // is the model's identity on chain and in Postgres) stays what format v1 has always been.
    influence: { model, x, cholesky, residuals, ...looCorrection(model, x, cholesky, residuals) },
    labels,
    rows: meta.rows,
    meta: meta.meta,
  };
}

export function writeInfluenceModelFile(path: string, m: TrainedInfluenceModel): void {
  writeChunks(path, encodeInfluenceModel(m));
}

export function readInfluenceModelFile(path: string, options?: DecodeOptions): TrainedInfluenceModel {
  return decodeInfluenceModel(readFileSync(path), options);
}
