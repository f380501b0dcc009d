/**
 * Datanets validation benchmark.
 *  (a) Near-duplicate precision/recall at the DEFAULT config on a planted set: seeded synthetic
 *      paragraphs; near-duplicates made by word edits, sentence shuffles, case/whitespace noise and
 *      all three combined, against the datanet and within the submission; negatives are unrelated
 *      rows and rows that share exactly one sentence with an indexed row.
 *  (b) Ingest throughput of the full validation pipeline (normalize, SHA-256, exact lookup,
 *      MinHash, LSH query + verify, quality, verdict, index insert) against a datanet of 1M rows
 *      already indexed, dedupe on vs dedupe off (normalize, SHA-256, quality only) in the same run.
 *
 *   npm run bench:datanets               human table
 *   npm run bench:datanets -- --json     one JSON object on stdout
 *   npm run bench:datanets -- --quick    100k existing rows (smoke run)
 * Progress goes to stderr.
 */
import os from "node:os";
import {
  computeBandKeys,
  contentHash,
  DatanetIndex,
  DatanetValidator,
  editWords,
  indexParamsOf,
  makeVariant,
  normalizeText,
  paragraph,
  Rng,
  type RowOutcome,
  render,
  resolveValidationConfig,
  type VariantKind,
} from "../packages/datanet-core/src/index.ts";

const args = process.argv.slice(2);
const JSON_OUT = args.includes("--json");
const QUICK = args.includes("--quick");
const argNum = (name: string, dflt: number): number => {
  const i = args.indexOf(name);
  return i >= 0 && args[i + 1] !== undefined ? Number(args[i + 1]) : dflt;
};
const log = (msg: string) => process.stderr.write(`[bench:datanets] ${msg}\n`);

const EXISTING = argNum("--existing", QUICK ? 100_000 : 1_000_000);
const INGEST_ROWS = argNum("--ingest-rows", QUICK ? 5_000 : 20_000);
const ROUNDS = 3;
const RESERVE_HEADROOM = 250_000;
const SUBMISSION_ROWS = 1_000; // one submission session per 1,000 rows
const BATCH_ROWS = 250; // rows per validateBatch call (what the worker would write per DB batch)

const config = resolveValidationConfig();
const now = () => performance.now();

// ---------------------------------------------------------------- (a) planted precision/recall

interface PlantedRow {
  text: string;
  /** Ground truth: "dup" rows are variants of `source`; others are new. */
  kind: VariantKind | "unrelated" | "partial_overlap" | "fresh_in_submission";
  dup: boolean;
  source?: { scope: "datanet"; id: number } | { scope: "submission"; rowIndex: number };
}

function plantedBenchmark() {
  const BASES = 5_000;
  const BACKGROUND = 45_000;
  const rng = new Rng(20_261_124);
  const validator = new DatanetValidator(config);
  // Datanet: 5,000 base rows (ids 0..4999) that submissions will duplicate, plus background rows.
  const bases = Array.from({ length: BASES }, () => paragraph(rng));
  const setup = validator.startSubmission();
  const all = [
    ...bases.map((p) => render(p)),
    ...Array.from({ length: BACKGROUND }, () => render(paragraph(rng))),
  ];
  for (let i = 0; i < all.length; i += 5_000)
    setup.validateBatch(all.slice(i, i + 5_000).map((text) => ({ text })));
  const setupStats = { ...setup.stats };
  setup.commit((rowIndex) => rowIndex);

  const kinds: VariantKind[] = [
    "edit",
    "shuffle",
    "case_whitespace",
    "shuffle_edit_case",
    // Copies dodging the filter: Cyrillic/Greek look-alikes (plus small edits), an accent on every letter.
    "homoglyph",
    "accents",
  ];
  const rows: PlantedRow[] = [];
  for (let i = 0; i < 4_000; i++) {
    const id = rng.int(BASES);
    const kind = kinds[i % kinds.length]!;
    rows.push({
      text: makeVariant(rng, bases[id]!, kind),
      kind,
      dup: true,
      source: { scope: "datanet", id },
    });
  }
  for (let i = 0; i < 3_000; i++) rows.push({ text: render(paragraph(rng)), kind: "unrelated", dup: false });
  for (let i = 0; i < 2_000; i++) {
    const p = paragraph(rng);
    const src = bases[rng.int(BASES)]!;
    p[rng.int(p.length)] = src[rng.int(src.length)]!.slice();
    rows.push({ text: render(p), kind: "partial_overlap", dup: false });
  }
  // Within-submission pairs: a new row, then (later) a variant of it.
  const fresh: { p: string[][]; at: number }[] = [];
  rng.shuffle(rows);
  const withPairs: PlantedRow[] = [];
  for (const r of rows) {
    withPairs.push(r);
    if (withPairs.length % 9 === 0) {
      const p = paragraph(rng);
      fresh.push({ p, at: withPairs.length });
      withPairs.push({ text: render(p), kind: "fresh_in_submission", dup: false });
    }
    if (fresh.length > 0 && withPairs.length % 13 === 0) {
      const f = fresh.shift()!;
      const kind = kinds[withPairs.length % kinds.length]!;
      withPairs.push({
        text: makeVariant(rng, f.p, kind),
        kind,
        dup: true,
        source: { scope: "submission", rowIndex: f.at },
      });
    }
  }

  // Stress tiers, reported apart from the headline figures: heavier edits than "small edits".
  const stress: Record<string, { rows: number; flagged: number }> = {};
  const stressSub = validator.startSubmission();
  for (const wordsPerEdit of [10, 6, 4]) {
    const texts = Array.from({ length: 1_000 }, () =>
      render(editWords(rng, bases[rng.int(BASES)]!, wordsPerEdit)),
    );
    const res = stressSub.validateBatch(texts.map((text) => ({ text })));
    const flagged = res.filter((o) => o.reason === "exact_duplicate" || o.reason === "near_duplicate").length;
    stress[`oneEditPer${wordsPerEdit}Words`] = { rows: texts.length, flagged };
  }

  const sub = validator.startSubmission();
  const t0 = now();
  const outcomes: RowOutcome[] = [];
  for (let i = 0; i < withPairs.length; i += BATCH_ROWS) {
    outcomes.push(...sub.validateBatch(withPairs.slice(i, i + BATCH_ROWS)));
  }
  const seconds = (now() - t0) / 1000;

  let tp = 0;
  let fp = 0;
  let fn = 0;
  let rightSource = 0;
  let otherRejects = 0;
  const perKind: Record<string, { rows: number; flagged: number }> = {};
  for (let i = 0; i < withPairs.length; i++) {
    const truth = withPairs[i]!;
    const o = outcomes[i]!;
    const flagged = o.reason === "exact_duplicate" || o.reason === "near_duplicate";
    perKind[truth.kind] ??= { rows: 0, flagged: 0 };
    const k = perKind[truth.kind]!;
    k.rows++;
    if (flagged) k.flagged++;
    if (o.reason === "too_short" || o.reason === "low_quality") otherRejects++;
    if (flagged && truth.dup) {
      tp++;
      const s = truth.source!;
      const d = o.duplicateOf!;
      if (
        (s.scope === "datanet" && d.scope === "datanet" && s.id === d.id) ||
        (s.scope === "submission" && d.scope === "submission" && s.rowIndex === d.rowIndex)
      ) {
        rightSource++;
      }
    } else if (flagged) fp++;
    else if (truth.dup) fn++;
  }
  const verdict = sub.verdict({ datanetId: "bench", contributor: "0x0", submissionId: "planted" });
  return {
    indexedRows: validator.index.size,
    setupRejected: setupStats.rows - setupStats.accepted,
    rows: withPairs.length,
    planted: tp + fn,
    precision: tp / Math.max(1, tp + fp),
    recall: tp / Math.max(1, tp + fn),
    truePositives: tp,
    falsePositives: fp,
    falseNegatives: fn,
    rightSourceRate: rightSource / Math.max(1, tp),
    qualityRejects: otherRejects,
    perKind: Object.fromEntries(
      Object.entries(perKind).map(([k, v]) => [
        k,
        { rows: v.rows, flaggedRate: round(v.flagged / v.rows, 4) },
      ]),
    ),
    stressRecall: Object.fromEntries(
      Object.entries(stress).map(([k, v]) => [k, round(v.flagged / v.rows, 4)]),
    ),
    rowsPerSec: Math.round(withPairs.length / seconds),
    verdict: { slash: verdict.slash, reasons: verdict.reasons, duplicateRatioPpm: verdict.duplicateRatioPpm },
  };
}

// ---------------------------------------------------------------- (b) ingest throughput

const rowSeed = (i: number) => Math.imul(i + 1, 0x9e3779b1) ^ 0x5eed;
const existingParagraph = (i: number) => paragraph(new Rng(rowSeed(i)));

function buildExisting(n: number): { index: DatanetIndex; seconds: number } {
  const params = indexParamsOf(config);
  const index = new DatanetIndex(params, 1024);
  // What the service does when it loads a datanet: reserve the current size plus headroom for the
  // rows it will accept, so growth (a one-off copy + rehash, timed separately below) is rare.
  index.reserve(n + RESERVE_HEADROOM);
  const validator = new DatanetValidator(config, index);
  const keys = new Uint32Array(params.bands);
  const sig = new Uint32Array(params.numPerm);
  const t0 = now();
  let last = t0;
  for (let i = 0; i < n; i++) {
    const normalized = normalizeText(render(existingParagraph(i)));
    validator.hasher.signature(normalized, sig);
    index.add(i, contentHash(normalized), sig, computeBandKeys(sig, params, keys));
    if (now() - last > 5_000) {
      last = now();
      log(`indexing existing rows: ${i + 1}/${n} (${Math.round(((i + 1) * 1000) / (last - t0))} rows/s)`);
    }
  }
  return { index, seconds: (now() - t0) / 1000 };
}

/** Incoming rows: 80% new, 10% near-duplicates of existing rows, 5% exact (case/space) duplicates, 5% in-submission variants. */
function ingestRows(seed: number, count: number, existing: number): string[] {
  const rng = new Rng(seed);
  const out: string[] = [];
  const recent: string[][][] = [];
  for (let i = 0; i < count; i++) {
    const r = rng.int(20);
    if (r < 2) out.push(makeVariant(rng, existingParagraph(rng.int(existing)), "shuffle_edit_case"));
    else if (r < 3) out.push(makeVariant(rng, existingParagraph(rng.int(existing)), "case_whitespace"));
    else if (r < 4 && recent.length > 0) out.push(makeVariant(rng, recent[rng.int(recent.length)]!, "edit"));
    else {
      const p = paragraph(rng);
      if (recent.length >= 50) recent.shift();
      recent.push(p);
      out.push(render(p));
    }
  }
  return out;
}

let nextId = 10_000_000;
function ingest(validator: DatanetValidator, rows: string[], dedupe: boolean) {
  const c0 = process.cpuUsage();
  const t0 = now();
  let accepted = 0;
  let slashProposals = 0;
  for (let s = 0; s < rows.length; s += SUBMISSION_ROWS) {
    const sub = validator.startSubmission({ dedupe });
    const end = Math.min(rows.length, s + SUBMISSION_ROWS);
    for (let b = s; b < end; b += BATCH_ROWS) {
      const batch = rows.slice(b, Math.min(end, b + BATCH_ROWS)).map((text) => ({ text }));
      sub.validateBatch(batch);
    }
    if (sub.verdict().slash) slashProposals++;
    accepted += sub.stats.accepted;
    sub.commit(() => nextId++);
  }
  const seconds = (now() - t0) / 1000;
  const cpu = process.cpuUsage(c0);
  const cpuSeconds = (cpu.user + cpu.system) / 1e6;
  return {
    rowsPerSec: rows.length / seconds,
    rowsPerCpuSec: rows.length / cpuSeconds,
    accepted,
    slashProposals,
  };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}
function round(x: number, digits = 0): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

// ---------------------------------------------------------------- main

log(
  `config: threshold ${config.nearDuplicateThreshold}, ${config.minHash.numPerm} perms, ${config.bands} bands x ${config.rows} rows, shingles ${config.minHash.shingle.kind}:${config.minHash.shingle.size}`,
);
log("(a) planted near-duplicate set...");
const planted = plantedBenchmark();
log(`precision ${planted.precision.toFixed(4)} recall ${planted.recall.toFixed(4)}`);

log(`(b) building a datanet of ${EXISTING} existing rows...`);
const built = buildExisting(EXISTING);
const index = built.index;
const rssAfterBuild = process.memoryUsage().rss;
const indexMemoryAfterBuild = index.memoryBytes;
log(
  `indexed ${index.size} rows in ${built.seconds.toFixed(1)} s, index ${(index.memoryBytes / 2 ** 20).toFixed(0)} MiB`,
);

const tSer = now();
const snapshot = index.serialize();
const serializeMs = now() - tSer;
const tDe = now();
const reloaded = DatanetIndex.deserialize(snapshot);
const deserializeMs = now() - tDe;
const snapshotBytes = snapshot.length;
if (reloaded.size !== index.size) throw new Error("snapshot round trip lost rows");

const validator = new DatanetValidator(config, index);
// Warm-up (JIT) on rows that are then part of the datanet like any other.
ingest(validator, ingestRows(1, 2_000, EXISTING), true);
ingest(validator, ingestRows(2, 2_000, EXISTING), false);
const on: number[] = [];
const off: number[] = [];
const onCpu: number[] = [];
const offCpu: number[] = [];
const loadBefore = os.loadavg()[0]!;
let acceptedOn = 0;
let slashOn = 0;
for (let r = 0; r < ROUNDS; r++) {
  const rowsOn = ingestRows(100 + r, INGEST_ROWS, EXISTING);
  const rowsOff = ingestRows(200 + r, INGEST_ROWS, EXISTING);
  const a = ingest(validator, rowsOn, true);
  const b = ingest(validator, rowsOff, false);
  on.push(a.rowsPerSec);
  off.push(b.rowsPerSec);
  onCpu.push(a.rowsPerCpuSec);
  offCpu.push(b.rowsPerCpuSec);
  acceptedOn += a.accepted;
  slashOn += a.slashProposals;
  log(
    `round ${r + 1}/${ROUNDS}: dedupe on ${Math.round(a.rowsPerSec)} rows/s, off ${Math.round(b.rowsPerSec)} rows/s`,
  );
}

// One-off cost of growing past the reserved capacity (1.5x), measured on the full index.
const sizeBeforeGrowth = index.size;
const tGrow = now();
index.reserve(Math.ceil(index.size * 1.5));
const growthMs = now() - tGrow;

const result = {
  config: {
    nearDuplicateThreshold: config.nearDuplicateThreshold,
    numPerm: config.minHash.numPerm,
    bands: config.bands,
    rows: config.rows,
    shingle: `${config.minHash.shingle.kind}:${config.minHash.shingle.size}`,
  },
  dedupe: {
    ...planted,
    precision: round(planted.precision, 4),
    recall: round(planted.recall, 4),
    rightSourceRate: round(planted.rightSourceRate, 4),
  },
  ingest: {
    existingRows: EXISTING,
    rowsPerSecDedupe: Math.round(median(on)),
    rowsPerSecNoDedupe: Math.round(median(off)),
    dedupeCostRatio: round(median(off) / median(on), 2),
    // Rows per second of this process's CPU time: what one uncontended core would do. The machine
    // is shared, so wall-clock figures move with other people's load (loadAverage1m).
    rowsPerCpuSecDedupe: Math.round(median(onCpu)),
    rowsPerCpuSecNoDedupe: Math.round(median(offCpu)),
    loadAverage1m: round(loadBefore, 2),
    cpus: os.cpus().length,
    roundsDedupe: on.map((x) => Math.round(x)),
    roundsNoDedupe: off.map((x) => Math.round(x)),
    ingestRowsPerRound: INGEST_ROWS,
    acceptedRateDedupe: round(acceptedOn / (ROUNDS * INGEST_ROWS), 4),
    slashProposalsDedupe: slashOn,
    indexBuildRowsPerSec: Math.round(EXISTING / built.seconds),
    indexMemoryBytes: indexMemoryAfterBuild,
    indexBytesPerRow: Math.round(indexMemoryAfterBuild / (EXISTING + RESERVE_HEADROOM)),
    reservedRows: EXISTING + RESERVE_HEADROOM,
    growthRows: sizeBeforeGrowth,
    growthMs: Math.round(growthMs),
    rssBytesAfterBuild: rssAfterBuild,
    snapshotBytes,
    snapshotSerializeMs: Math.round(serializeMs),
    snapshotDeserializeMs: Math.round(deserializeMs),
  },
};

if (JSON_OUT) {
  process.stdout.write(`${JSON.stringify(result)}\n`);
} else {
  const mib = (b: number) => `${(b / 2 ** 20).toFixed(0)} MiB`;
  const lines = [
    `config                      threshold ${result.config.nearDuplicateThreshold}, ${result.config.numPerm} perms, ${result.config.bands}x${result.config.rows} bands, ${result.config.shingle} shingles`,
    "(a) planted set",
    `  rows / planted duplicates ${planted.rows} / ${planted.planted}`,
    `  precision                 ${planted.precision.toFixed(4)}`,
    `  recall                    ${planted.recall.toFixed(4)}`,
    `  right source              ${planted.rightSourceRate.toFixed(4)}`,
    ...Object.entries(planted.perKind).map(
      ([k, v]) => `  flagged ${k.padEnd(20)}${v.flaggedRate.toFixed(4)} of ${v.rows}`,
    ),
    ...Object.entries(planted.stressRecall).map(([k, v]) => `  stress ${k.padEnd(21)}${v.toFixed(4)} recall`),
    `(b) ingest vs ${EXISTING} existing rows`,
    `  dedupe on                 ${result.ingest.rowsPerSecDedupe} rows/s (rounds ${result.ingest.roundsDedupe.join(", ")})`,
    `  dedupe off (baseline)     ${result.ingest.rowsPerSecNoDedupe} rows/s (rounds ${result.ingest.roundsNoDedupe.join(", ")})`,
    `  cost of dedupe            x${result.ingest.dedupeCostRatio}`,
    `  per CPU-second            on ${result.ingest.rowsPerCpuSecDedupe}, off ${result.ingest.rowsPerCpuSecNoDedupe} rows (load average ${result.ingest.loadAverage1m} on ${result.ingest.cpus} CPUs)`,
    `  index build               ${result.ingest.indexBuildRowsPerSec} rows/s`,
    `  index memory              ${mib(indexMemoryAfterBuild)} for ${result.ingest.reservedRows} reserved rows (${result.ingest.indexBytesPerRow} B/row), RSS ${mib(rssAfterBuild)}`,
    `  growth x1.5 at ${sizeBeforeGrowth} rows ${result.ingest.growthMs} ms (one-off copy + rehash)`,
    `  snapshot                  ${mib(snapshotBytes)}, serialize ${result.ingest.snapshotSerializeMs} ms, load ${result.ingest.snapshotDeserializeMs} ms`,
  ];
  process.stdout.write(`${lines.join("\n")}\n`);
}
