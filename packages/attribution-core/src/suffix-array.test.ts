import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { buildLcpArray, buildSuffixArray, buildSuffixArrayBySort, compareSuffixes } from "./suffix-array.ts";

function naiveLcp(text: Int32Array, sa: Int32Array): Int32Array {
  const lcp = new Int32Array(sa.length);
  for (let i = 1; i < sa.length; i++) {
    let h = 0;
    const a = sa[i - 1]!;
    const b = sa[i]!;
    while (a + h < text.length && b + h < text.length && text[a + h] === text[b + h]) h++;
    lcp[i] = h;
  }
  return lcp;
}

// Texts over tiny and larger alphabets, with runs and repeated blocks (the hard cases for
// induced sorting: long equal LMS substrings and deep recursion).
const textArb = fc.oneof(
  fc
    .record({ k: fc.integer({ min: 1, max: 3 }), len: fc.integer({ min: 0, max: 300 }) })
    .chain(({ k, len }) =>
      fc.array(fc.integer({ min: 0, max: k - 1 }), { minLength: len, maxLength: len }).map((a) => ({ k, a })),
    ),
  fc
    .record({ k: fc.integer({ min: 1, max: 40 }) })
    .chain(({ k }) =>
      fc.array(fc.integer({ min: 0, max: k - 1 }), { maxLength: 200 }).map((a) => ({ k, a })),
    ),
  fc
    .tuple(
      fc.array(fc.integer({ min: 0, max: 4 }), { minLength: 1, maxLength: 12 }),
      fc.integer({ min: 1, max: 30 }),
    )
    .map(([block, reps]) => ({
      k: 5,
      a: Array.from({ length: block.length * reps }, (_, i) => block[i % block.length]!),
    })),
);

test("SA-IS equals the comparison-sort suffix array; Kasai LCP equals naive LCP", () => {
  fc.assert(
    fc.property(textArb, ({ k, a }) => {
      const text = Int32Array.from(a);
      const sa = buildSuffixArray(text, k);
      assert.deepEqual(sa, buildSuffixArrayBySort(text));
      assert.deepEqual(buildLcpArray(text, sa), naiveLcp(text, sa));
    }),
    { numRuns: 400 },
  );
});

test("SA-IS gives the same array whether the text is a Uint8Array, Uint16Array or Int32Array", () => {
  fc.assert(
    fc.property(
      fc.oneof(
        fc.array(fc.integer({ min: 0, max: 255 }), { maxLength: 400 }),
        fc
          .tuple(
            fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 1, maxLength: 9 }),
            fc.integer({ min: 1, max: 60 }),
          )
          .map(([block, reps]) =>
            Array.from({ length: block.length * reps }, (_, i) => block[i % block.length]!),
          ),
      ),
      (a) => {
        const expected = buildSuffixArrayBySort(Int32Array.from(a));
        assert.deepEqual(buildSuffixArray(Uint8Array.from(a), 256), expected);
        assert.deepEqual(buildSuffixArray(Uint16Array.from(a), 256), expected);
        assert.deepEqual(buildSuffixArray(Int32Array.from(a), 256), expected);
      },
    ),
    { numRuns: 300 },
  );
});

test("SA-IS on longer texts (deep recursion, reduced buckets in and outside the output) equals the sort", () => {
  let seed = 11;
  const rnd = () => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed >>> 8;
  };
  const words = ["the ", "of ", "and ", "to ", "a ", "in ", "that ", "is ", "was ", "he "];
  const english = new TextEncoder().encode(Array.from({ length: 6000 }, () => words[rnd() % 10]).join(""));
  // Fibonacci word: maximally repetitive (every level's names repeat), deep recursion.
  let prevWord = [0];
  let fib = [0, 1];
  while (fib.length < 30000) [prevWord, fib] = [fib, fib.concat(prevWord)];
  const random16 = Uint16Array.from({ length: 30000 }, () => rnd() % 60000);
  for (const [text, k] of [
    [english, 256],
    [Uint8Array.from(fib), 2],
    [random16, 60000],
  ] as const) {
    assert.deepEqual(buildSuffixArray(text, k), buildSuffixArrayBySort(text));
  }
});

test("SA-IS handles a large alphabet with unused symbols and reports monotone progress", () => {
  let seed = 7;
  const rnd = () => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed >>> 8;
  };
  const text = new Int32Array(20000);
  for (let i = 0; i < text.length; i++) text[i] = i % 1000 < 500 ? rnd() % 3 : rnd() % 50000;
  const fractions: number[] = [];
  const sa = buildSuffixArray(text, 100000, { progress: (f) => fractions.push(f) });
  for (let i = 1; i < sa.length; i++) assert.ok(compareSuffixes(text, sa[i - 1]!, sa[i]!) < 0);
  assert.equal(fractions.at(-1), 1);
  for (let i = 1; i < fractions.length; i++) assert.ok(fractions[i]! >= fractions[i - 1]!);
});

test("SA-IS rejects symbols outside the alphabet", () => {
  assert.throws(() => buildSuffixArray(Int32Array.from([0, 3, 1]), 3), RangeError);
  assert.throws(() => buildSuffixArray(Int32Array.from([0, -1]), 3), RangeError);
});
