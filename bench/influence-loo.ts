/**
 * Leave-one-out accuracy of the influence scores for the rows that are paid most: for each test
 * point, its 10 most influential training rows by the *retrained* leave-one-out effect on the
 * loss of the predicted class, and the median ratio predicted / retrained of the first-order
 * score (g_tᵀH⁻¹g_i, the "before") and of the one-Newton-step leave-one-out score (what
 * validators sign, the "after"). Every ratio's denominator comes from actually retraining the
 * model without the row (to max|∇F₋ᵢ| <= 1e-10). Two real corpora: SpamAssassin (the harness's)
 * and State of the Union passages by party (never used to tune anything), at λ = 1 (the
 * service's setting) and λ = 0.05 (high leverage).
 *
 * Imported by bench/attribution.ts (its `influence.topRows*` fields); also runs alone:
 *   node --import tsx bench/influence-loo.ts [--json] [--quick]
 */
import { fileURLToPath } from "node:url";
import {
  type EstimatorRatios,
  topRowsLooExperiment,
} from "../packages/attribution-core/src/testing/ground-truth.ts";
import { loadSotuPassages } from "../packages/attribution-core/src/testing/sotu.ts";
import {
  type LabelledText,
  loadSpamAssassin,
} from "../packages/attribution-core/src/testing/spam-assassin.ts";

export interface TopRowsLooRow {
  dataset: string;
  lambda: number;
  trainRows: number;
  testPoints: number;
  /** (test point, row) pairs compared. */
  pairs: number;
  retrains: number;
  firstOrder: { median: number; p10: number; p90: number };
  newtonLoo: { median: number; p10: number; p90: number };
  seconds: number;
}

const FEATURES = { dim: 512, maxNgram: 2 as const, maxChars: 3000 };

function summary(e: EstimatorRatios) {
  const r = (x: number) => Number(x.toFixed(4));
  return { median: r(e.median), p10: r(e.p10), p90: r(e.p90) };
}

export function measureTopRowsLoo(quick: boolean, log: (msg: string) => void): TopRowsLooRow[] {
  const trainRows = quick ? 700 : 2000;
  const testPoints = quick ? 3 : 10;
  const corpora: Array<{ dataset: string; load: (n: number) => LabelledText[] }> = [
    { dataset: "spam-assassin", load: (n) => loadSpamAssassin(n, 1) },
    { dataset: "sotu-party", load: (n) => loadSotuPassages(n, 1) },
  ];
  const out: TopRowsLooRow[] = [];
  for (const { dataset, load } of corpora) {
    const data = load(trainRows + testPoints);
    for (const lambda of [1, 0.05]) {
      log(`top rows vs retrained leave-one-out: ${dataset}, ${trainRows} rows, λ = ${lambda}...`);
      const t0 = performance.now();
      const r = topRowsLooExperiment({
        train: data.slice(0, trainRows),
        test: data.slice(trainRows),
        features: FEATURES,
        lambda,
        testPoints,
        onProgress: (d, total) => {
          if (d % 50 === 0 || d === total) log(`  retrains ${d}/${total}`);
        },
      });
      out.push({
        dataset,
        lambda,
        trainRows: r.trainRows,
        testPoints: r.testPoints,
        pairs: r.newtonLoo.ratios.length,
        retrains: r.retrains,
        firstOrder: summary(r.firstOrder),
        newtonLoo: summary(r.newtonLoo),
        seconds: Number(((performance.now() - t0) / 1000).toFixed(1)),
      });
      log(`  first-order ${r.firstOrder.median.toFixed(4)}, newton-loo ${r.newtonLoo.median.toFixed(4)}`);
    }
  }
  return out;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const args = new Set(process.argv.slice(2));
  const rows = measureTopRowsLoo(args.has("--quick"), (m) =>
    process.stderr.write(`[bench:influence-loo] ${m}\n`),
  );
  if (args.has("--json")) process.stdout.write(`${JSON.stringify({ topRowsLoo: rows })}\n`);
  else
    console.table(
      rows.map((r) => ({
        dataset: r.dataset,
        λ: r.lambda,
        rows: r.trainRows,
        pairs: r.pairs,
        retrains: r.retrains,
        "first-order median": r.firstOrder.median,
        "first-order p10..p90": `${r.firstOrder.p10}..${r.firstOrder.p90}`,
        "newton-loo median": r.newtonLoo.median,
        "newton-loo p10..p90": `${r.newtonLoo.p10}..${r.newtonLoo.p90}`,
        seconds: r.seconds,
      })),
    );
}
