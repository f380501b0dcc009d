import { canonicalHash } from "./canonical-json.ts";
import { computeBandKeys, DatanetIndex, type IndexParams } from "./datanet-index.ts";
import { chooseBands } from "./lsh-params.ts";
import { DEFAULT_MINHASH_CONFIG, type MinHashConfig, MinHasher, type ShingleConfig } from "./minhash.ts";
import { contentHash, normalizeText } from "./normalize.ts";
import { qualityScore, qualitySignals } from "./quality.ts";

export interface SlashingPolicy {
  /** A submission whose duplicate share (exact + near, datanet + within itself) exceeds this is redundant. */
  maxDuplicateRatio: number;
  /** A submission whose low-quality share (low_quality + too_short) exceeds this is flagged as junk. */
  maxLowQualityRatio: number;
  /** Submissions with fewer rows never produce a slashing proposal (one accidental duplicate is not an attack). */
  minRows: number;
  /** Evidence lists at most this many rows (the first by row index); totals are always complete. */
  maxEvidenceRows: number;
}

export interface ValidationConfig {
  minHash: MinHashConfig;
  /** Estimated Jaccard similarity (of shingle sets) at or above which a row is a near-duplicate. */
  nearDuplicateThreshold: number;
  /** LSH banding; chosen from the threshold by `chooseBands` unless given. */
  bands: number;
  rows: number;
  /** Entries read per LSH bucket per query (bounds query time on boilerplate-heavy datanets). */
  maxPerBucket: number;
  /** Rows with fewer normalized characters or words are rejected as too_short. */
  minChars: number;
  minWords: number;
  /** Rows scoring below this (0-100) are rejected as low_quality. */
  minQuality: number;
  slashing: SlashingPolicy;
}

export interface ValidationConfigInput
  extends Partial<Omit<ValidationConfig, "minHash" | "slashing" | "bands" | "rows">> {
  minHash?: Partial<Omit<MinHashConfig, "shingle">> & { shingle?: ShingleConfig };
  bands?: number;
  rows?: number;
  slashing?: Partial<SlashingPolicy>;
}

/** Tuned on the planted benchmark set (bench/datanets.ts): see the package README. */
export const DEFAULT_NEAR_DUPLICATE_THRESHOLD = 0.5;

export function resolveValidationConfig(input: ValidationConfigInput = {}): ValidationConfig {
  const minHash: MinHashConfig = {
    ...DEFAULT_MINHASH_CONFIG,
    ...input.minHash,
    shingle: input.minHash?.shingle ?? DEFAULT_MINHASH_CONFIG.shingle,
  };
  const threshold = input.nearDuplicateThreshold ?? DEFAULT_NEAR_DUPLICATE_THRESHOLD;
  if (!(threshold > 0 && threshold <= 1)) throw new RangeError("nearDuplicateThreshold must be in (0, 1]");
  const chosen =
    input.bands !== undefined && input.rows !== undefined
      ? { bands: input.bands, rows: input.rows }
      : chooseBands(Math.min(threshold, 0.99), minHash.numPerm);
  if (chosen.bands * chosen.rows > minHash.numPerm) throw new RangeError("bands * rows must be <= numPerm");
  return {
    minHash,
    nearDuplicateThreshold: threshold,
    bands: chosen.bands,
    rows: chosen.rows,
    maxPerBucket: input.maxPerBucket ?? 256,
    minChars: input.minChars ?? 16,
    minWords: input.minWords ?? 3,
    minQuality: input.minQuality ?? 40,
    slashing: {
      maxDuplicateRatio: 0.5,
      maxLowQualityRatio: 0.5,
      minRows: 10,
      maxEvidenceRows: 10_000,
      ...input.slashing,
    },
  };
}

export function indexParamsOf(config: ValidationConfig): IndexParams {
  return { numPerm: config.minHash.numPerm, bands: config.bands, rows: config.rows };
}

export type RejectReason = "too_short" | "exact_duplicate" | "near_duplicate" | "low_quality";

/** What a rejected row duplicates: an accepted row of the datanet (its id) or an earlier row of the same submission. */
export type DuplicateRef = { scope: "datanet"; id: number } | { scope: "submission"; rowIndex: number };

export interface RowOutcome {
  /** 0-based position in the submission (continues across batches of one submission). */
  rowIndex: number;
  status: "accepted" | "rejected";
  reason?: RejectReason;
  duplicateOf?: DuplicateRef;
  /** Estimated Jaccard similarity to `duplicateOf` (1 for exact duplicates). */
  similarity?: number;
  qualityScore: number;
  /** SHA-256 (hex) of the normalized text: store it (unique per datanet among accepted rows). */
  contentHash: string;
  /** MinHash signature (dedupe on, computed rows only): store it to rebuild the index (signatureToBytes). */
  signature?: Uint32Array;
}

export interface SubmissionStats {
  rows: number;
  accepted: number;
  exactDuplicates: number;
  nearDuplicates: number;
  lowQuality: number;
  tooShort: number;
}

export interface EvidenceContext {
  datanetId?: string;
  contributor?: string;
  submissionId?: string;
  /** Rows flagged by other detectors (e.g. negative influence, label flips) as adversarial. */
  adversarialRows?: { rowIndex: number; reason: string; contentHash?: string }[];
}

export interface EvidenceRow {
  rowIndex: number;
  contentHash: string;
  reason: RejectReason | "adversarial";
  duplicateOf?: { scope: "datanet"; id: string } | { scope: "submission"; rowIndex: number };
  similarityPpm?: number;
  qualityScore?: number;
  note?: string;
}

export interface SlashingEvidence {
  schema: "openledger.datanet.slashing-evidence.v1";
  datanetId?: string;
  contributor?: string;
  submissionId?: string;
  reasons: ("redundant" | "junk" | "adversarial")[];
  config: {
    nearDuplicateThresholdPpm: number;
    numPerm: number;
    bands: number;
    rows: number;
    seed: number;
    shingle: string;
    minQuality: number;
    maxDuplicateRatioPpm: number;
    maxLowQualityRatioPpm: number;
  };
  stats: SubmissionStats & { duplicateRatioPpm: number; lowQualityRatioPpm: number; evidenceRows: number };
  rows: EvidenceRow[];
}

export interface SubmissionVerdict {
  stats: SubmissionStats;
  duplicateRatioPpm: number;
  lowQualityRatioPpm: number;
  /** True when a slashing proposal should be made; then `evidence` and `evidenceHash` are set. */
  slash: boolean;
  reasons: SlashingEvidence["reasons"];
  evidence?: SlashingEvidence;
  /** "0x" + SHA-256 of the canonical JSON of `evidence` (see canonical-json.ts). */
  evidenceHash?: `0x${string}`;
}

const ppm = (x: number): number => Math.round(x * 1_000_000);

/**
 * Holds the dedupe index of one datanet and validates submissions against it. Not thread-safe and
 * not meant to be: validations of one datanet must run one at a time (one BullMQ group/lock per
 * datanet), otherwise two submissions could each accept the same new row.
 */
export class DatanetValidator {
  readonly config: ValidationConfig;
  readonly index: DatanetIndex;
  readonly hasher: MinHasher;

  constructor(config: ValidationConfigInput = {}, index?: DatanetIndex) {
    // resolveValidationConfig is idempotent, so a resolved config may be passed back in.
    this.config = resolveValidationConfig(config);
    const params = indexParamsOf(this.config);
    if (index !== undefined) {
      const p = index.params;
      if (p.numPerm !== params.numPerm || p.bands !== params.bands || p.rows !== params.rows) {
        throw new Error(
          `index parameters ${JSON.stringify(p)} do not match the validation config ${JSON.stringify(params)}: rebuild the index from stored signatures`,
        );
      }
    }
    this.index = index ?? new DatanetIndex(params);
    this.hasher = new MinHasher(this.config.minHash);
  }

  /** Starts validating one submission; feed it batches in order, then take the verdict and commit. */
  startSubmission(options: { dedupe?: boolean } = {}): SubmissionValidation {
    return new SubmissionValidation(this, options.dedupe ?? true);
  }
}

interface PendingAccepted {
  rowIndex: number;
  sha: Buffer;
  sig: Uint32Array;
  keys: Uint32Array;
}

export class SubmissionValidation {
  private readonly scratch: DatanetIndex;
  private readonly accepted: PendingAccepted[] = [];
  private readonly rejected: RowOutcome[] = [];
  private next = 0;
  private committed = false;
  readonly stats: SubmissionStats = {
    rows: 0,
    accepted: 0,
    exactDuplicates: 0,
    nearDuplicates: 0,
    lowQuality: 0,
    tooShort: 0,
  };

  constructor(
    private readonly validator: DatanetValidator,
    readonly dedupe: boolean,
  ) {
    this.scratch = new DatanetIndex(indexParamsOf(validator.config), 256);
  }

  /**
   * Validates the next rows of the submission, against the datanet index and against the rows of
   * this submission accepted so far. Pure with respect to the datanet index: nothing is added to it
   * until `commit`. Returns one outcome per input row, in order.
   */
  validateBatch(rows: readonly { text: string }[]): RowOutcome[] {
    if (this.committed) throw new Error("submission already committed");
    const cfg = this.validator.config;
    const main = this.validator.index;
    const out: RowOutcome[] = new Array(rows.length);
    for (let i = 0; i < rows.length; i++) {
      const text = rows[i]!.text;
      const rowIndex = this.next++;
      const normalized = normalizeText(text);
      const sha = contentHash(normalized);
      const signals = qualitySignals(text, normalized);
      const score = qualityScore(signals);
      const base = { rowIndex, qualityScore: score, contentHash: sha.toString("hex") };
      let outcome: RowOutcome;
      this.stats.rows++;
      if (normalized.length < cfg.minChars || signals.words < cfg.minWords) {
        outcome = { ...base, status: "rejected", reason: "too_short" };
        this.stats.tooShort++;
      } else if (!this.dedupe) {
        outcome = this.qualityGate(base, score);
      } else {
        outcome = this.dedupeRow(base, normalized, sha, score, main);
      }
      if (outcome.status === "rejected") this.rejected.push(outcome);
      out[i] = outcome;
    }
    return out;
  }

  private qualityGate(base: Omit<RowOutcome, "status">, score: number): RowOutcome {
    if (score < this.validator.config.minQuality) {
      this.stats.lowQuality++;
      return { ...base, status: "rejected", reason: "low_quality" };
    }
    this.stats.accepted++;
    return { ...base, status: "accepted" };
  }

  private dedupeRow(
    base: Omit<RowOutcome, "status">,
    normalized: string,
    sha: Buffer,
    score: number,
    main: DatanetIndex,
  ): RowOutcome {
    const cfg = this.validator.config;
    const exactMain = main.findExact(sha);
    if (exactMain >= 0) {
      this.stats.exactDuplicates++;
      return {
        ...base,
        status: "rejected",
        reason: "exact_duplicate",
        duplicateOf: { scope: "datanet", id: main.idOf(exactMain) },
        similarity: 1,
      };
    }
    const exactSub = this.scratch.findExact(sha);
    if (exactSub >= 0) {
      this.stats.exactDuplicates++;
      return {
        ...base,
        status: "rejected",
        reason: "exact_duplicate",
        duplicateOf: { scope: "submission", rowIndex: this.scratch.idOf(exactSub) },
        similarity: 1,
      };
    }
    const sig = this.validator.hasher.signature(normalized);
    const keys = computeBandKeys(sig, main.params);
    const threshold = cfg.nearDuplicateThreshold;
    const nearMain = main.bestMatch(sig, keys, threshold, cfg.maxPerBucket);
    if (nearMain !== undefined) {
      this.stats.nearDuplicates++;
      return {
        ...base,
        status: "rejected",
        reason: "near_duplicate",
        duplicateOf: { scope: "datanet", id: nearMain.id },
        similarity: nearMain.similarity,
        signature: sig,
      };
    }
    const nearSub = this.scratch.bestMatch(sig, keys, threshold, cfg.maxPerBucket);
    if (nearSub !== undefined) {
      this.stats.nearDuplicates++;
      return {
        ...base,
        status: "rejected",
        reason: "near_duplicate",
        duplicateOf: { scope: "submission", rowIndex: nearSub.id },
        similarity: nearSub.similarity,
        signature: sig,
      };
    }
    const outcome = this.qualityGate(base, score);
    if (outcome.status === "accepted") {
      this.scratch.add(base.rowIndex, sha, sig, keys);
      this.accepted.push({ rowIndex: base.rowIndex, sha, sig, keys });
      outcome.signature = sig;
    }
    return outcome;
  }

  /** Decides whether this submission warrants a slashing proposal, with evidence. Call after the last batch. */
  verdict(context: EvidenceContext = {}): SubmissionVerdict {
    const cfg = this.validator.config;
    const s = this.stats;
    const dups = s.exactDuplicates + s.nearDuplicates;
    const low = s.lowQuality + s.tooShort;
    const duplicateRatioPpm = s.rows === 0 ? 0 : Math.floor((dups * 1_000_000) / s.rows);
    const lowQualityRatioPpm = s.rows === 0 ? 0 : Math.floor((low * 1_000_000) / s.rows);
    const maxDupPpm = ppm(cfg.slashing.maxDuplicateRatio);
    const maxLowPpm = ppm(cfg.slashing.maxLowQualityRatio);
    const reasons: SlashingEvidence["reasons"] = [];
    const bigEnough = s.rows >= cfg.slashing.minRows;
    if (bigEnough && duplicateRatioPpm > maxDupPpm) reasons.push("redundant");
    if (bigEnough && lowQualityRatioPpm > maxLowPpm) reasons.push("junk");
    const flagged = [...(context.adversarialRows ?? [])].sort((a, b) => a.rowIndex - b.rowIndex);
    if (flagged.length > 0) reasons.push("adversarial");
    const verdict: SubmissionVerdict = {
      stats: { ...s },
      duplicateRatioPpm,
      lowQualityRatioPpm,
      slash: reasons.length > 0,
      reasons,
    };
    if (!verdict.slash) return verdict;

    const rows: EvidenceRow[] = [];
    const wantDup = reasons.includes("redundant");
    const wantLow = reasons.includes("junk");
    for (const o of this.rejected) {
      const isDup = o.reason === "exact_duplicate" || o.reason === "near_duplicate";
      if ((isDup && wantDup) || (!isDup && wantLow)) {
        const row: EvidenceRow = { rowIndex: o.rowIndex, contentHash: o.contentHash, reason: o.reason! };
        if (o.duplicateOf !== undefined) {
          row.duplicateOf =
            o.duplicateOf.scope === "datanet"
              ? { scope: "datanet", id: String(o.duplicateOf.id) }
              : o.duplicateOf;
          row.similarityPpm = ppm(o.similarity ?? 1);
        } else {
          row.qualityScore = o.qualityScore;
        }
        rows.push(row);
      }
    }
    for (const f of flagged)
      rows.push({
        rowIndex: f.rowIndex,
        contentHash: f.contentHash ?? "",
        reason: "adversarial",
        note: f.reason,
      });
    rows.sort((a, b) => a.rowIndex - b.rowIndex || (a.reason < b.reason ? -1 : a.reason > b.reason ? 1 : 0));
    const listed = rows.slice(0, cfg.slashing.maxEvidenceRows);
    const shingle = `${cfg.minHash.shingle.kind}:${cfg.minHash.shingle.size}`;
    const evidence: SlashingEvidence = {
      schema: "openledger.datanet.slashing-evidence.v1",
      ...(context.datanetId !== undefined ? { datanetId: context.datanetId } : {}),
      ...(context.contributor !== undefined ? { contributor: context.contributor.toLowerCase() } : {}),
      ...(context.submissionId !== undefined ? { submissionId: context.submissionId } : {}),
      reasons,
      config: {
        nearDuplicateThresholdPpm: ppm(cfg.nearDuplicateThreshold),
        numPerm: cfg.minHash.numPerm,
        bands: cfg.bands,
        rows: cfg.rows,
        seed: cfg.minHash.seed >>> 0,
        shingle,
        minQuality: cfg.minQuality,
        maxDuplicateRatioPpm: maxDupPpm,
        maxLowQualityRatioPpm: maxLowPpm,
      },
      stats: { ...s, duplicateRatioPpm, lowQualityRatioPpm, evidenceRows: rows.length },
      rows: listed,
    };
    verdict.evidence = evidence;
    verdict.evidenceHash = canonicalHash(evidence);
    return verdict;
  }

  /** Rows accepted so far, in row order (what the service inserts as accepted). */
  get acceptedRowIndexes(): number[] {
    return this.accepted.map((a) => a.rowIndex);
  }

  /**
   * Adds the accepted rows to the datanet index under the ids the database gave them. Call once,
   * after the database transaction that stored them committed (so a rollback never leaves rows in
   * the index). Returns the number of rows added.
   */
  commit(idForRow: (rowIndex: number) => number): number {
    if (this.committed) throw new Error("submission already committed");
    this.committed = true;
    if (!this.dedupe) return 0;
    const main = this.validator.index;
    main.reserve(main.size + this.accepted.length);
    for (const a of this.accepted) main.add(idForRow(a.rowIndex), a.sha, a.sig, a.keys);
    return this.accepted.length;
  }
}
