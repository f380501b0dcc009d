import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { journalSum } from "./journal.ts";
import { buildTrainingJournal, splitTrainingFee } from "./training.ts";

const address = fc
  .uint8Array({ minLength: 20, maxLength: 20 })
  .map((b) => `0x${Buffer.from(b).toString("hex")}`);
const TREASURY = `0x${"33".repeat(20)}`;

test("a training fee goes to the contributors by trained tokens, summing to the fee exactly", () => {
  fc.assert(
    fc.property(
      fc.bigInt({ min: 0n, max: 10n ** 30n }),
      fc.uniqueArray(fc.record({ address, tokens: fc.bigInt({ min: 1n, max: 10n ** 9n }) }), {
        minLength: 1,
        maxLength: 12,
        selector: (s) => s.address,
      }),
      (fee, shares) => {
        const split = splitTrainingFee(fee, shares);
        let sum = 0n;
        for (const v of split.contributors.values()) sum += v;
        assert.equal(sum, fee);
        assert.equal(split.treasury, 0n);
        // Each part is within one wei of its exact proportion.
        const total = shares.reduce((t, s) => t + s.tokens, 0n);
        for (const s of shares) {
          const part = split.contributors.get(s.address) ?? 0n;
          const exact = fee * s.tokens;
          assert.ok(part * total <= exact + total && part * total >= exact - total);
        }
        const journal = buildTrainingJournal({ consumer: `0x${"11".repeat(20)}`, treasury: TREASURY, split });
        assert.equal(journalSum(journal), 0n);
        assert.equal(journal[0]!.amountWei, -fee);
      },
    ),
  );
});

test("largest remainder: ties go to the lower address, the same on every run", () => {
  const a = `0x${"0a".repeat(20)}`;
  const b = `0x${"0b".repeat(20)}`;
  const c = `0x${"0c".repeat(20)}`;
  const split = splitTrainingFee(100n, [
    { address: c, tokens: 1n },
    { address: b, tokens: 1n },
    { address: a, tokens: 1n },
  ]);
  assert.deepEqual(
    [...split.contributors.entries()],
    [
      [a, 34n],
      [b, 33n],
      [c, 33n],
    ],
  );
});

test("no trained tokens: a non-zero fee goes to the treasury rather than nowhere", () => {
  const split = splitTrainingFee(7n, []);
  assert.equal(split.treasury, 7n);
  assert.equal(split.contributors.size, 0);
  assert.throws(() => splitTrainingFee(-1n, []), RangeError);
});
