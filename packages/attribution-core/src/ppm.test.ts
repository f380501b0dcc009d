import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { normalizeToPpm, PPM_TOTAL } from "./ppm.ts";

test("ppm weights sum to exactly 1e6 and follow largest remainders", () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.record({
          contributorId: fc.string({ maxLength: 4 }),
          score: fc.bigInt({ min: 0n, max: 10n ** 30n }),
        }),
        {
          maxLength: 50,
        },
      ),
      (scores) => {
        const w = normalizeToPpm(scores);
        const total = scores.reduce((s, x) => s + x.score, 0n);
        if (total === 0n) return assert.deepEqual(w, []);
        assert.equal(
          w.reduce((s, x) => s + x.ppm, 0),
          PPM_TOTAL,
        );
        // Each weight is floor or floor+1 of the exact share.
        const merged = new Map<string, bigint>();
        for (const s of scores) merged.set(s.contributorId, (merged.get(s.contributorId) ?? 0n) + s.score);
        for (const x of w) {
          const exactFloor = (merged.get(x.contributorId)! * 1_000_000n) / total;
          assert.ok(BigInt(x.ppm) === exactFloor || BigInt(x.ppm) === exactFloor + 1n);
        }
        assert.deepEqual(
          w.map((x) => x.contributorId),
          [...w.map((x) => x.contributorId)].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)),
        );
      },
    ),
  );
});

test("remainder ties go to the smaller contributor id", () => {
  assert.deepEqual(
    normalizeToPpm([
      { contributorId: "c", score: 1n },
      { contributorId: "a", score: 1n },
      { contributorId: "b", score: 1n },
    ]),
    [
      { contributorId: "a", ppm: 333_334 },
      { contributorId: "b", ppm: 333_333 },
      { contributorId: "c", ppm: 333_333 },
    ],
  );
  assert.throws(() => normalizeToPpm([{ contributorId: "a", score: -1n }]), RangeError);
});
