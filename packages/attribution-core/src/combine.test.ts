import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { combineAttributions, uncoveredTokenMask } from "./combine.ts";
import { type ContributorWeight, normalizeToPpm, PPM_TOTAL } from "./ppm.ts";

const ids = ["0xa", "0xb", "0xc", "0xd", "0xe"];
const weightsArb = fc
  .array(fc.tuple(fc.constantFrom(...ids), fc.bigInt({ min: 0n, max: 10n ** 15n })), { maxLength: 6 })
  .map((xs) => normalizeToPpm(xs.map(([contributorId, score]) => ({ contributorId, score }))));
const ppmOf = (w: readonly ContributorWeight[], id: string) =>
  w.find((x) => x.contributorId === id)?.ppm ?? 0;

test("combined weights sum to exactly 1e6 (or []), each path weighted by the tokens it explains", () => {
  fc.assert(
    fc.property(weightsArb, weightsArb, fc.nat(500), fc.nat(500), (span, influence, a, b) => {
      const totalTokens = a + b;
      const coveredTokens = Math.min(a, totalTokens);
      const r = combineAttributions({ coveredTokens, totalTokens, span, influence });
      const sum = r.weights.reduce((s, w) => s + w.ppm, 0);
      const anything = r.spanTokens + r.influenceTokens > 0;
      assert.equal(sum, anything ? PPM_TOTAL : 0);
      assert.ok(r.weights.every((w) => w.ppm > 0));
      if (!anything) return;
      // Each contributor gets its token-weighted mix of the two paths, within rounding.
      const denom = r.spanTokens + r.influenceTokens;
      for (const id of ids) {
        const want = (ppmOf(span, id) * r.spanTokens + ppmOf(influence, id) * r.influenceTokens) / denom;
        assert.ok(
          Math.abs(ppmOf(r.weights, id) - want) <= 1 + 1e-9,
          `${id}: ${ppmOf(r.weights, id)} vs ${want}`,
        );
      }
    }),
  );
});

test("no double pay: a fully quoted answer pays by spans only, an unquoted one by influence only", () => {
  fc.assert(
    fc.property(weightsArb, weightsArb, fc.integer({ min: 1, max: 400 }), (span, influence, n) => {
      const all = combineAttributions({ coveredTokens: n, totalTokens: n, span, influence });
      assert.equal(all.influenceTokens, 0);
      if (span.length > 0) assert.deepEqual(all.weights, span);
      const none = combineAttributions({ coveredTokens: 0, totalTokens: n, span: [], influence });
      assert.deepEqual(none.weights, influence);
      assert.equal(none.spanTokens, 0);
    }),
  );
});

test("the uncovered-token mask is the complement of the spans' union", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 60 }),
      fc.array(fc.tuple(fc.nat(60), fc.nat(20)), { maxLength: 6 }),
      (n, raw) => {
        const spans = raw
          .filter(([s]) => s <= n)
          .map(([s, len]) => ({ start: s, end: Math.min(n, s + len) }));
        const { mask, covered } = uncoveredTokenMask(n, spans);
        for (let i = 0; i < n; i++) {
          const inside = spans.some((s) => i >= s.start && i < s.end);
          assert.equal(mask[i], inside ? 0 : 1);
        }
        assert.equal(covered + mask.reduce((s, m) => s + m, 0), n);
      },
    ),
  );
  assert.throws(() => uncoveredTokenMask(3, [{ start: 2, end: 5 }]), RangeError);
  assert.throws(
    () => combineAttributions({ coveredTokens: 4, totalTokens: 3, span: [], influence: [] }),
    RangeError,
  );
});
