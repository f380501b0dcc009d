import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import fc from "fast-check";
import { FlatFormatError } from "./flat-binary.ts";
import { PPM_TOTAL } from "./ppm.ts";
import {
  buildSpanIndex,
  type CorpusRow,
  decodeSpanIndex,
  indexStats,
  readSpanIndexFile,
  rowTokens,
  type SpanIndex,
  SpanIndexBuilder,
  spanIndexToBuffer,
  writeSpanIndexFile,
} from "./span-index.ts";
import { attributeSpans, findSpans, rarityTable, scoreRows, spanWeight } from "./span-query.ts";

// ---- brute force oracle: works on the raw rows, never touches the suffix array ----------

interface BruteSpan {
  start: number;
  end: number;
  count: number;
  rows: number[];
  positions: Array<[number, number]>; // (row, offset) of each occurrence, corpus order
}

function bruteSpans(docs: number[][], x: number[], minLen: number, maxCount: number): BruteSpan[] {
  const out: BruteSpan[] = [];
  let lastEnd = 0;
  for (let l = 0; l < x.length; l++) {
    let m = 0;
    for (const d of docs) {
      for (let p = 0; p < d.length; p++) {
        let h = 0;
        while (l + h < x.length && p + h < d.length && d[p + h] === x[l + h]) h++;
        if (h > m) m = h;
      }
    }
    if (m < minLen || l + m <= lastEnd) continue;
    const positions: Array<[number, number]> = [];
    docs.forEach((d, r) => {
      for (let p = 0; p + m <= d.length; p++) {
        let ok = true;
        for (let h = 0; h < m && ok; h++) ok = d[p + h] === x[l + h];
        if (ok) positions.push([r, p]);
      }
    });
    if (positions.length > maxCount) continue;
    out.push({
      start: l,
      end: l + m,
      count: positions.length,
      rows: [...new Set(positions.map((p) => p[0]))],
      positions,
    });
    lastEnd = l + m;
  }
  return out;
}

function corpusRows(docs: number[][], owners: number[]): CorpusRow[] {
  return docs.map((tokens, i) => ({
    rowId: `row-${String(i).padStart(3, "0")}`,
    contributionId: `c-${owners[i]! % 4}`,
    contributorId: `0xabc${owners[i]! % 4 === 3 ? 0 : owners[i]! % 4}`,
    tokens,
  }));
}

// Tiny alphabets make long repeats and many occurrences; empty and single-token rows and
// outputs that copy corpus passages (possibly across a row boundary) are all generated.
const caseArb = fc
  .record({ k: fc.integer({ min: 1, max: 4 }), withLcp: fc.boolean() })
  .chain(({ k, withLcp }) =>
    fc.record({
      k: fc.constant(k),
      withLcp: fc.constant(withLcp),
      docs: fc.array(
        fc.oneof(
          fc.constant<number[]>([]),
          fc.array(fc.integer({ min: 0, max: k - 1 }), { minLength: 1, maxLength: 1 }),
          fc.array(fc.integer({ min: 0, max: k - 1 }), { maxLength: 40 }),
        ),
        { minLength: 1, maxLength: 8 },
      ),
      owners: fc.array(fc.nat(10), { minLength: 8, maxLength: 8 }),
      x: fc.array(fc.integer({ min: 0, max: k }), { maxLength: 30 }),
      copy: fc.option(fc.tuple(fc.nat(), fc.nat(), fc.integer({ min: 1, max: 60 }))),
      minLen: fc.integer({ min: 1, max: 5 }),
      maxCount: fc.integer({ min: 1, max: 30 }),
      cap: fc.integer({ min: 1, max: 5 }),
    }),
  );

function outputOf(c: { docs: number[][]; x: number[]; copy: [number, number, number] | null }): number[] {
  if (!c.copy) return c.x;
  // Copy a run straight out of the concatenated rows (it may straddle a boundary).
  const flat = c.docs.flat();
  if (flat.length === 0) return c.x;
  const from = c.copy[0] % flat.length;
  const cut = c.copy[1] % (c.x.length + 1);
  return [...c.x.slice(0, cut), ...flat.slice(from, from + c.copy[2]), ...c.x.slice(cut)];
}

test("spans, counts and row sets equal brute force (with and without LCP)", () => {
  fc.assert(
    fc.property(caseArb, (c) => {
      const index = buildSpanIndex(corpusRows(c.docs, c.owners), { vocabSize: c.k + 1, withLcp: c.withLcp });
      const x = outputOf(c);
      const got = findSpans(index, x, { minLen: c.minLen, maxCount: c.maxCount, maxRowsPerSpan: 100 });
      const want = bruteSpans(c.docs, x, c.minLen, c.maxCount);
      assert.deepEqual(
        got.map((s) => [s.start, s.end, s.count, s.rows.map((r) => r.row)]),
        want.map((s) => [s.start, s.end, s.count, s.rows]),
      );
      // Maximality and no span crosses a separator: every occurrence lies inside one row.
      for (let i = 1; i < got.length; i++) assert.ok(got[i]!.end > got[i - 1]!.end);
      for (const s of got) {
        for (const d of s.rows) assert.ok(rowTokens(index, d.row).length >= s.end - s.start);
      }
    }),
    { numRuns: 300 },
  );
});

test("row scores equal the brute-force formula; ppm weights sum to exactly 1e6", () => {
  fc.assert(
    fc.property(caseArb, fc.constantFrom("length" as const, "rarity" as const), (c, weighting) => {
      const index = buildSpanIndex(corpusRows(c.docs, c.owners), { vocabSize: c.k + 1, withLcp: c.withLcp });
      const x = outputOf(c);
      const opts = { minLen: c.minLen, maxCount: c.maxCount, maxCreditedOccurrences: c.cap, weighting };
      const spans = findSpans(index, x, opts);
      const scores = scoreRows(index, x, spans, opts);
      // Oracle: equal shares over the first `cap` occurrences in corpus order.
      const want = new Map<number, bigint>();
      const rarity = rarityTable(index);
      for (const b of bruteSpans(c.docs, x, c.minLen, c.maxCount)) {
        const w = spanWeight(index, x, b, weighting, rarity) << 20n;
        const k = Math.min(c.cap, b.positions.length);
        for (const [r] of b.positions.slice(0, k)) want.set(r, (want.get(r) ?? 0n) + w / BigInt(k));
      }
      assert.deepEqual(
        scores.map((r) => [r.row, r.score]),
        [...want].filter(([, v]) => v > 0n).sort((a, b) => a[0] - b[0]),
      );
      const result = attributeSpans(index, x, opts);
      const sum = result.weights.reduce((s, w) => s + w.ppm, 0);
      if (result.rows.length === 0) assert.equal(result.weights.length, 0);
      else assert.equal(sum, PPM_TOTAL);
      for (const w of result.weights) assert.ok(Number.isInteger(w.ppm) && w.ppm > 0);
    }),
    { numRuns: 200 },
  );
});

test("shards: the same spans, rows and weights as one index over all rows", () => {
  fc.assert(
    fc.property(
      caseArb,
      fc.array(fc.nat(8), { maxLength: 3 }),
      fc.constantFrom("length" as const, "rarity" as const),
      (c, cuts, weighting) => {
        const rows = corpusRows(c.docs, c.owners);
        const whole = buildSpanIndex(rows, { vocabSize: c.k + 1, withLcp: c.withLcp });
        // Contiguous slices of the row list (empty shards allowed).
        const bounds = [0, ...cuts.map((x) => x % (rows.length + 1)).sort((a, b) => a - b), rows.length];
        const shards = bounds
          .slice(1)
          .map((end, i) =>
            buildSpanIndex(rows.slice(bounds[i]!, end), { vocabSize: c.k + 1, withLcp: !c.withLcp }),
          );
        const x = outputOf(c);
        const opts = {
          minLen: c.minLen,
          maxCount: c.maxCount,
          maxCreditedOccurrences: c.cap,
          weighting,
          maxRowsPerSpan: 3,
        };
        assert.deepEqual(attributeSpans(shards, x, opts), attributeSpans(whole, x, opts));
      },
    ),
    { numRuns: 200 },
  );
  const a = buildSpanIndex(corpusRows([[1]], [0]), { vocabSize: 3 });
  const b = buildSpanIndex(corpusRows([[1]], [0]), { vocabSize: 4 });
  assert.throws(() => findSpans([a, b], [1]), /vocabularies/);
  assert.throws(() => findSpans([], [1]), RangeError);
});

test("rarity weights rare tokens higher and are exact integers", () => {
  const docs = [
    [1, 1, 1, 1, 1, 1, 2, 3],
    [1, 1, 1, 1, 4, 4],
  ];
  const index = buildSpanIndex(corpusRows(docs, [0, 1]), { vocabSize: 10 });
  const r = rarityTable(index);
  // 14 tokens; token 1 occurs 10 times, token 2 once: -log2(1/14) = 3.807 bits.
  // Internal symbols are token + 1.
  assert.ok(Math.abs(r[3]! - Math.log2(14) * 65536) <= 1);
  assert.ok(r[3]! > r[5]! && r[5]! > r[2]!);
  const res = attributeSpans(index, [9, 1, 2, 3, 9], { minLen: 2, weighting: "rarity" });
  assert.deepEqual(res.weights, [{ contributorId: "0xabc0", ppm: 1_000_000 }]);
  assert.deepEqual(res.spans, [{ start: 1, end: 4, count: 1, rowIds: ["row-000"], rowsTruncated: false }]);
});

test("serialize / deserialize round-trips (buffer and file) and detects corruption", () => {
  const docs = [[5, 6, 7, 8], [], [5, 6, 7, 9, 9], [1]];
  const index = buildSpanIndex(corpusRows(docs, [0, 1, 2, 5]), {
    vocabSize: 16,
    withLcp: true,
    meta: { datanet: "d1", version: 3 },
  });
  const buf = spanIndexToBuffer(index);
  const stats = indexStats(index);
  assert.equal(stats.bytes, buf.length);
  assert.deepEqual(
    [stats.tokens, stats.rows, stats.contributions, stats.contributors, stats.hasLcp],
    [10, 4, 3, 3, true],
  );
  const back = decodeSpanIndex(buf);
  const plain = (i: SpanIndex) => ({ ...i });
  assert.deepEqual(plain(back), plain(index));
  const out = [0, 5, 6, 7, 9, 9, 2];
  assert.deepEqual(attributeSpans(back, out, { minLen: 2 }), attributeSpans(index, out, { minLen: 2 }));
  // Misaligned input (copied once internally).
  const shifted = new Uint8Array(buf.length + 3);
  shifted.set(buf, 3);
  assert.deepEqual(plain(decodeSpanIndex(shifted.subarray(3))), plain(index));
  // A flipped bit anywhere is caught by the checksum.
  for (const at of [30, 200, buf.length - 2]) {
    const bad = Buffer.from(buf);
    bad[at]! ^= 0x10;
    assert.throws(() => decodeSpanIndex(bad), FlatFormatError);
  }
  const dir = mkdtempSync(join(tmpdir(), "span-index-"));
  try {
    const path = join(dir, "idx.bin");
    writeSpanIndexFile(path, index);
    assert.deepEqual(plain(readSpanIndexFile(path)), plain(index));
  } finally {
    rmSync(dir, { recursive: true });
  }
  // Same rows in the same order give byte-identical files.
  const again = buildSpanIndex(corpusRows(docs, [0, 1, 2, 5]), {
    vocabSize: 16,
    withLcp: true,
    meta: { datanet: "d1", version: 3 },
  });
  assert.deepEqual(spanIndexToBuffer(again), buf);
});

test("incremental builder (growing buffer) gives the same bytes; a rejected row changes nothing", () => {
  const rnd = (i: number) => (Math.imul(i, 2654435761) >>> 8) % 50;
  const docs = Array.from({ length: 300 }, (_, d) =>
    Array.from({ length: d % 17 }, (_, i) => rnd(d * 31 + i)),
  );
  const rows = corpusRows(
    docs,
    Array.from({ length: 300 }, (_, i) => i % 8),
  );
  const builder = new SpanIndexBuilder({ vocabSize: 50 });
  rows.forEach((r, i) => {
    builder.add(r);
    if (i === 100) {
      assert.throws(() => builder.add({ ...r, rowId: "bad", tokens: [1, 99] }), RangeError);
      assert.throws(() => builder.add({ ...r, rowId: "bad", contributorId: "other" }), /two contributors/);
    }
  });
  assert.equal(
    builder.symbolCount,
    docs.reduce((s, d) => s + d.length + 1, 0),
  );
  const built = builder.finish({ meta: { v: 1 } });
  assert.deepEqual(
    spanIndexToBuffer(built),
    spanIndexToBuffer(buildSpanIndex(rows, { vocabSize: 50, meta: { v: 1 } })),
  );
  assert.throws(() => builder.add(rows[0]!), /finished/);
});

test("build rejects bad input and reports monotone progress", () => {
  assert.throws(() => buildSpanIndex(corpusRows([[3]], [0]), { vocabSize: 3 }), RangeError);
  assert.throws(
    () =>
      buildSpanIndex(
        [
          { rowId: "a", contributionId: "k", contributorId: "x", tokens: [1] },
          { rowId: "b", contributionId: "k", contributorId: "y", tokens: [1] },
        ],
        { vocabSize: 3 },
      ),
    /two contributors/,
  );
  const seen: number[] = [];
  buildSpanIndex(
    corpusRows(
      [
        [1, 2, 3],
        [2, 3],
      ],
      [0, 1],
    ),
    { vocabSize: 4, withLcp: true, onProgress: (p) => seen.push(p.fraction) },
  );
  assert.equal(seen.at(-1), 1);
  for (let i = 1; i < seen.length; i++) assert.ok(seen[i]! >= seen[i - 1]!);
});
