import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { largestRemainder, SignedResultError, sameWeights, signedResultWeights } from "./index.ts";

const RUNS = Number(process.env.FC_RUNS ?? 300);
const opts = { numRuns: RUNS };
const ID = "7d9c7c1e-8d4c-4c47-9a57-0e7f8b3f2a10";
const address = fc
  .uint8Array({ minLength: 20, maxLength: 20 })
  .map((b) => `0x${Buffer.from(b).toString("hex")}`);

/** Signed weights as the attribution service writes them: positive ppm summing to exactly 1e6. */
const signedWeights = fc
  .uniqueArray(fc.tuple(address, fc.integer({ min: 1, max: 1000 })), {
    minLength: 1,
    maxLength: 12,
    selector: ([a]) => a,
  })
  .map((pairs) => {
    const parts = largestRemainder(
      1_000_000n,
      pairs.map(([key, w]) => ({ key, weight: BigInt(w) })),
    );
    return pairs
      .map(([a]) => ({ contributorId: a, ppm: Number(parts.get(a) ?? 0n) }))
      .filter((w) => w.ppm > 0);
  });

const canonical = (weights: unknown, inferenceId: unknown = ID) =>
  JSON.stringify({ format: 2, inferenceId, method: "span", weights });

describe("signed result weights", () => {
  test("are read back exactly from the signed bytes, sorted by address", () => {
    fc.assert(
      fc.property(signedWeights, (weights) => {
        const read = signedResultWeights(canonical(weights), ID);
        assert.equal(
          read.reduce((s, w) => s + w.ppm, 0),
          1_000_000,
        );
        assert.deepEqual(
          read,
          weights
            .map((w) => ({ address: w.contributorId, ppm: w.ppm }))
            .sort((a, b) => (a.address < b.address ? -1 : 1)),
        );
        assert.ok(sameWeights(read, [...read].reverse()));
      }),
      opts,
    );
  });

  test("a cache that differs by one contributor or one ppm is not the signed result", () => {
    fc.assert(
      fc.property(signedWeights, address, (weights, stranger) => {
        const read = signedResultWeights(canonical(weights), ID);
        const renamed = read.map((w, i) => (i === 0 ? { ...w, address: stranger } : w));
        if (stranger !== read[0]!.address) assert.equal(sameWeights(read, renamed), false);
        if (read.length > 1) {
          const shifted = read.map((w, i) => ({ ...w, ppm: w.ppm + (i === 0 ? 1 : i === 1 ? -1 : 0) }));
          assert.equal(sameWeights(read, shifted), false);
        }
        assert.equal(sameWeights(read, read.slice(1)), false);
        assert.equal(sameWeights(read, [...read, { address: stranger, ppm: 0 }]), false);
      }),
      opts,
    );
  });

  test("an empty result pays nobody by weight", () => {
    assert.deepEqual(signedResultWeights(canonical([]), ID), []);
  });

  test("malformed or foreign results are refused", () => {
    const a = `0x${"ab".repeat(20)}`;
    const b = `0x${"cd".repeat(20)}`;
    const bad: [string, RegExp][] = [
      ["not json", /not JSON/],
      ["[1,2]", /not a JSON object/],
      [canonical([{ contributorId: a, ppm: 1_000_000 }], "another"), /about inference another/],
      [JSON.stringify({ inferenceId: ID }), /no weights/],
      [canonical([{ contributorId: a.toUpperCase().replace("0X", "0x"), ppm: 1_000_000 }]), /malformed/],
      [canonical([{ contributorId: a, ppm: 999_999 }]), /sum to 999999/],
      [
        canonical([
          { contributorId: a, ppm: 0 },
          { contributorId: b, ppm: 1_000_000 },
        ]),
        /not a positive/,
      ],
      [canonical([{ contributorId: a, ppm: 1.5 }]), /not a positive/],
      [
        canonical([
          { contributorId: a, ppm: 500_000 },
          { contributorId: a, ppm: 500_000 },
        ]),
        /twice/,
      ],
    ];
    for (const [json, why] of bad)
      assert.throws(
        () => signedResultWeights(json, ID),
        (e: unknown) => {
          assert.ok(e instanceof SignedResultError);
          assert.match(e.message, why);
          return true;
        },
      );
  });
});
