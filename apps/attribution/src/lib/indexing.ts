import type { FeatureOptions, LabelledRow } from "@openledger/attribution-core";
import type { AttributionIndexKind, Db } from "@openledger/db";
import { runBuildTask } from "./build-runner.ts";
import type { AttributionContext } from "./context.ts";

/** Feature settings of every influence model (part of its identity, recorded in `tokenizer`). */
export const INFLUENCE_FEATURES: FeatureOptions = { dim: 512, maxNgram: 2, maxChars: 3000 };
export const INFLUENCE_LAMBDA = 1;
export const INFLUENCE_FEATURES_ID = `hashed-ngrams:d${INFLUENCE_FEATURES.dim}:n${INFLUENCE_FEATURES.maxNgram}`;

export class VersionNotFoundError extends Error {
  constructor(readonly versionId: string) {
    super(`datanet version ${versionId} does not exist`);
    this.name = "VersionNotFoundError";
  }
}

/** A version without rows has nothing to index (and attribution-core cannot encode an empty index). */
export class EmptyVersionError extends Error {
  constructor(readonly versionId: string) {
    super(`datanet version ${versionId} has no rows to index`);
    this.name = "EmptyVersionError";
  }
}

export interface VersionRow {
  rowId: string;
  contributionId: string;
  contributorAddress: string;
  text: string;
  label: string | null;
}

const PAGE = 5000;

/** The version's rows in their published order (position), read in pages. */
export async function loadVersionRows(db: Db, versionId: string): Promise<VersionRow[]> {
  const out: VersionRow[] = [];
  let after = -1;
  for (;;) {
    const page = await db.datanetVersionRow.findMany({
      where: { versionId, position: { gt: after } },
      orderBy: { position: "asc" },
      take: PAGE,
      select: {
        position: true,
        row: {
          select: { id: true, contributionId: true, contributorAddress: true, text: true, label: true },
        },
      },
    });
    for (const p of page) {
      out.push({
        rowId: p.row.id.toString(),
        contributionId: p.row.contributionId,
        contributorAddress: p.row.contributorAddress.toLowerCase(),
        text: p.row.text,
        label: p.row.label,
      });
    }
    if (page.length < PAGE) return out;
    after = page[page.length - 1]!.position;
  }
}

export type Progress = (value: { phase: string; percent: number }) => void;

export interface BuildOutcome {
  span: "built" | "exists";
  influence: "built" | "exists" | "not-labelled";
}

async function ready(db: Db, ctx: AttributionContext, versionId: string, kind: AttributionIndexKind) {
  const row = await db.attributionIndex.findUnique({
    where: { datanetVersionId_kind: { datanetVersionId: versionId, kind } },
  });
  if (row?.status !== "ready" || !row.blobHash) return false;
  // A ready row whose blob vanished (store wiped) is rebuilt rather than trusted.
  return ctx.store.has(row.blobHash);
}

async function markBuilding(
  db: Db,
  versionId: string,
  kind: AttributionIndexKind,
  tokenizer: string,
  jobId: string | null,
) {
  await db.attributionIndex.upsert({
    where: { datanetVersionId_kind: { datanetVersionId: versionId, kind } },
    create: { datanetVersionId: versionId, kind, tokenizer, stats: {}, jobId, status: "building" },
    update: { status: "building", error: null, tokenizer, jobId },
  });
}

async function markFailed(db: Db, versionId: string, kind: AttributionIndexKind, err: unknown) {
  await db.attributionIndex
    .update({
      where: { datanetVersionId_kind: { datanetVersionId: versionId, kind } },
      data: { status: "failed", error: String((err as Error)?.message ?? err).slice(0, 2000) },
    })
    .catch(() => {});
}

/**
 * Builds (or confirms) the attribution artifacts of one datanet version: the span index
 * always; the influence model + ONNX export when the version has labelled rows of at least two
 * classes. Idempotent: a ready artifact whose blob is present is kept; artifacts are content
 * addressed, so a rebuild of the same rows writes the same blob. Marks the version `indexed`.
 */
export async function buildVersionArtifacts(
  db: Db,
  ctx: AttributionContext,
  versionId: string,
  options: { jobId?: string | null; progress?: Progress; signal?: AbortSignal } = {},
): Promise<BuildOutcome> {
  const progress = options.progress ?? (() => {});
  const jobId = options.jobId ?? null;
  const version = await db.datanetVersion.findUnique({ where: { id: versionId } });
  if (!version) throw new VersionNotFoundError(versionId);
  const tokenizer = await ctx.tokenizer();
  const outcome: BuildOutcome = { span: "exists", influence: "not-labelled" };
  let rows: VersionRow[] | undefined;
  const getRows = async () => {
    rows ??= await loadVersionRows(db, versionId);
    return rows;
  };

  if (!(await ready(db, ctx, versionId, "span"))) {
    if ((await getRows()).length === 0) throw new EmptyVersionError(versionId);
    await markBuilding(db, versionId, "span", tokenizer.id, jobId);
    try {
      const list = await getRows();
      progress({ phase: "tokenize", percent: 0 });
      const { blobHash, stats } = await buildSpanArtifact(ctx, version, list, {
        progress,
        ...(options.signal && { signal: options.signal }),
      });
      await db.attributionIndex.update({
        where: { datanetVersionId_kind: { datanetVersionId: versionId, kind: "span" } },
        data: {
          status: "ready",
          blobHash,
          tokenCount: BigInt(stats.tokens),
          rowCount: stats.rows,
          stats: { ...stats },
          error: null,
        },
      });
      outcome.span = "built";
    } catch (err) {
      await markFailed(db, versionId, "span", err);
      throw err;
    }
  }
  progress({ phase: "span-index", percent: 90 });

  const existingInfluence = await ready(db, ctx, versionId, "influence");
  if (existingInfluence) outcome.influence = "exists";
  else {
    const list = await getRows();
    if (labelClasses(list).length >= 2) {
      await markBuilding(db, versionId, "influence", INFLUENCE_FEATURES_ID, jobId);
      try {
        const built = await buildInfluenceArtifact(ctx, versionId, list, options.signal);
        progress({ phase: "influence", percent: 97 });
        await db.attributionIndex.update({
          where: { datanetVersionId_kind: { datanetVersionId: versionId, kind: "influence" } },
          data: {
            status: "ready",
            blobHash: built.blobHash,
            onnxBlobHash: built.onnxBlobHash,
            rowCount: built.rowCount,
            stats: built.stats,
            error: null,
          },
        });
        outcome.influence = "built";
      } catch (err) {
        await markFailed(db, versionId, "influence", err);
        throw err;
      }
    }
  }
  await db.datanetVersion.update({ where: { id: versionId }, data: { status: "indexed" } });
  progress({ phase: "done", percent: 100 });
  return outcome;
}

/** Distinct non-empty labels in code-unit order: class i = labels[i]. */
function labelClasses(rows: readonly VersionRow[]): string[] {
  const set = new Set(rows.flatMap((r) => (r.label ? [r.label] : [])));
  return [...set].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/** Tokenize + SA-IS + encode (worker thread), then store: the span index blob of a version. */
export async function buildSpanArtifact(
  ctx: AttributionContext,
  version: { id: string; datanetId: string; version: number },
  rows: readonly VersionRow[],
  options: { progress?: Progress; signal?: AbortSignal } = {},
) {
  const built = await runBuildTask(
    {
      kind: "span",
      tokenizer: ctx.config.ATTRIBUTION_TOKENIZER,
      rows: rows.map((r) => ({
        rowId: r.rowId,
        contributionId: r.contributionId,
        contributorId: r.contributorAddress,
        text: r.text,
      })),
      meta: { datanetId: version.datanetId, datanetVersionId: version.id, version: version.version },
    },
    {
      ...(options.progress && { onProgress: options.progress }),
      ...(options.signal && { signal: options.signal }),
    },
  );
  return { blobHash: await ctx.store.put(built.chunks), stats: built.stats };
}

/** Train (worker thread) and store the influence model + ONNX export of a labelled version. */
export async function buildInfluenceArtifact(
  ctx: AttributionContext,
  versionId: string,
  rows: readonly VersionRow[],
  signal?: AbortSignal,
) {
  const classes = labelClasses(rows);
  const classOf = new Map(classes.map((c, i) => [c, i]));
  const training: LabelledRow[] = rows
    .filter((r) => r.label)
    .map((r) => ({
      rowId: r.rowId,
      contributionId: r.contributionId,
      contributorId: r.contributorAddress,
      text: r.text,
      label: classOf.get(r.label!)!,
    }));
  const built = await runBuildTask(
    {
      kind: "influence",
      rows: training,
      features: INFLUENCE_FEATURES,
      classes: classes.length,
      lambda: INFLUENCE_LAMBDA,
      meta: { datanetVersionId: versionId, classNames: classes },
    },
    signal ? { signal } : {},
  );
  return {
    blobHash: await ctx.store.put(built.chunks),
    onnxBlobHash: await ctx.store.put([built.onnx]),
    rowCount: training.length,
    stats: {
      classes: classes.length,
      classNames: classes,
      dim: INFLUENCE_FEATURES.dim,
      lambda: INFLUENCE_LAMBDA,
      iterations: built.iterations,
      unlabelledRows: rows.length - training.length,
    },
  };
}

export class ArtifactMismatchError extends Error {
  constructor(versionId: string, kind: string, expected: string, got: string) {
    super(
      `the ${kind} artifact of datanet version ${versionId} rebuilt here hashes to ${got}, ` +
        `not the recorded ${expected}: refusing to attribute with it`,
    );
    this.name = "ArtifactMismatchError";
  }
}

/**
 * Makes sure the recorded artifact is in this process's blob store. A validator that does not
 * share the store (another machine) rebuilds it from the version's rows in Postgres; builds are
 * deterministic and content addressed, so the rebuild must hash to the recorded value — a
 * mismatch is refused rather than trusted. Validators need not trust whoever built the index.
 */
export async function ensureLocalArtifact(
  db: Db,
  ctx: AttributionContext,
  versionId: string,
  kind: AttributionIndexKind,
  expected: string,
): Promise<void> {
  if (await ctx.store.has(expected)) return;
  const version = await db.datanetVersion.findUnique({ where: { id: versionId } });
  if (!version) throw new VersionNotFoundError(versionId);
  const rows = await loadVersionRows(db, versionId);
  const got =
    kind === "span"
      ? (await buildSpanArtifact(ctx, version, rows)).blobHash
      : (await buildInfluenceArtifact(ctx, versionId, rows)).blobHash;
  if (got !== expected) throw new ArtifactMismatchError(versionId, kind, expected, got);
}
