import assert from "node:assert/strict";
import { test } from "node:test";
import { looExperiment, mislabelExperiment, pearson, rocAuc } from "./ground-truth.ts";
import { loadSpamAssassin } from "./spam-assassin.ts";

// A small seeded sample keeps this fast; `npm run bench:attribution` prints the full figures.
const data = loadSpamAssassin(1000, 1);
const features = { dim: 256, maxNgram: 2 as const, maxChars: 3000 };

test("fixture: real labelled e-mails, deterministic subset", () => {
  assert.equal(data.length, 1000);
  const spam = data.filter((d) => d.label === 1).length;
  assert.ok(spam > 200 && spam < 500, `spam ${spam}`);
  assert.deepEqual(
    loadSpamAssassin(5, 1).map((d) => d.id),
    data.slice(0, 5).map((d) => d.id),
  );
});

test("SpamAssassin: predicted vs actual leave-one-out loss change, Pearson >= 0.9", () => {
  const r = looExperiment({
    train: data.slice(0, 700),
    test: data.slice(700),
    features,
    lambda: 1,
    sampleRows: 20,
    testPoints: 2,
    seed: 7,
  });
  for (const p of r.pearsonPerTest) assert.ok(p >= 0.9, `pearson ${p}`);
  assert.ok(r.pearsonPooled >= 0.9, `pooled ${r.pearsonPooled}`);
  // Not a degenerate comparison: removals really change the test loss.
  assert.ok(r.actual.some((a) => Math.abs(a) > 1e-6));
});

test("SpamAssassin: 10% flipped labels found by self-influence, AUC >= 0.9", () => {
  const r = mislabelExperiment({ data: data.slice(0, 800), features, lambda: 1, flipFraction: 0.1, seed: 3 });
  assert.ok(r.flipped > 40);
  assert.ok(r.auc >= 0.9, `auc ${r.auc}`);
});

test("statistics helpers", () => {
  assert.equal(rocAuc([1, 2, 3, 4], [false, false, true, true]), 1);
  assert.equal(rocAuc([1, 1, 1, 1], [false, true, false, true]), 0.5);
  assert.ok(Math.abs(pearson([1, 2, 3], [2, 4, 6.5]) - 0.9985) < 1e-3);
});
