import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { computeBandKeys, DatanetIndex, signatureFromBytes, signatureToBytes } from "./datanet-index.ts";
import { candidateProbability, chooseBands } from "./lsh-params.ts";
import { estimateJaccard, exactJaccard, isEmptySignature, MinHasher, Shingler } from "./minhash.ts";
import { contentHash, normalizeText } from "./normalize.ts";

/** Deterministic word soup: rows over a 5,000-word vocabulary, so unrelated rows barely overlap. */
function makeWords(seed: number, n: number): string[] {
  let s = seed >>> 0;
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out.push(`w${s % 5000}`);
  }
  return out;
}

describe("shingles", () => {
  it("word shingles ignore case, punctuation and spacing (they work on normalized text)", () => {
    const sh = new Shingler({ kind: "word", size: 2 });
    const a = Array.from(sh.hashes(normalizeText("The quick, brown  FOX!")));
    const b = Array.from(sh.hashes(normalizeText("the quick brown fox")));
    assert.deepEqual(a, b);
    assert.equal(a.length, 3);
  });
  it("short texts get one shingle; empty text none and an empty signature", () => {
    const mh = new MinHasher();
    assert.equal(new Shingler({ kind: "word", size: 3 }).hashes("hello").length, 1);
    assert.equal(new Shingler({ kind: "char", size: 5 }).hashes("abc").length, 1);
    assert.ok(isEmptySignature(mh.signature("")));
    assert.ok(!isEmptySignature(mh.signature("x")));
  });
});

describe("minhash", () => {
  it("is deterministic and depends on the seed", () => {
    const t = normalizeText("Data contributed to a datanet is validated before it is accepted.");
    const a = new MinHasher().signature(t);
    const b = new MinHasher().signature(t);
    const c = new MinHasher({ seed: 7 }).signature(t);
    assert.deepEqual(a, b);
    assert.notDeepEqual(a, c);
  });
  it("estimate tracks exact Jaccard (|error| < 0.2 per pair, mean |error| < 0.05)", () => {
    const mh = new MinHasher({ numPerm: 128 });
    let totalErr = 0;
    let pairs = 0;
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 1e9 }),
        fc.integer({ min: 10, max: 80 }),
        fc.integer({ min: 0, max: 40 }),
        (seed, len, edits) => {
          const a = makeWords(seed, len);
          const b = a.slice();
          const noise = makeWords(seed ^ 0x5bd1e995, edits);
          for (let i = 0; i < edits; i++) b[(i * 7919) % b.length] = noise[i]!;
          const ta = a.join(" ");
          const tb = b.join(" ");
          const exact = exactJaccard(mh.shingleSet(ta), mh.shingleSet(tb));
          const est = estimateJaccard(mh.signature(ta), mh.signature(tb));
          totalErr += Math.abs(est - exact);
          pairs++;
          assert.ok(Math.abs(est - exact) < 0.2, `exact ${exact} est ${est}`);
        },
      ),
      { numRuns: 300 },
    );
    assert.ok(totalErr / pairs < 0.05, `mean abs error ${totalErr / pairs}`);
  });
});

describe("LSH parameters", () => {
  it("chooseBands puts the S-curve around the threshold", () => {
    for (const t of [0.3, 0.5, 0.7, 0.85]) {
      const { bands, rows } = chooseBands(t, 128);
      assert.ok(bands * rows <= 128);
      assert.ok(
        candidateProbability(Math.min(t + 0.15, 1), bands, rows) > 0.9,
        `t=${t} b=${bands} r=${rows}`,
      );
      assert.ok(candidateProbability(t / 3, bands, rows) < 0.2, `t=${t} b=${bands} r=${rows}`);
    }
  });
});

function indexed(texts: string[], params = { numPerm: 128, ...chooseBands(0.5, 128) }) {
  const mh = new MinHasher({ numPerm: params.numPerm });
  const idx = new DatanetIndex(params, 16);
  const sigs = texts.map((t) => mh.signature(normalizeText(t)));
  texts.forEach((t, i) => {
    idx.add(1000 + i, contentHash(normalizeText(t)), sigs[i]!);
  });
  return { mh, idx, sigs, params };
}

describe("DatanetIndex", () => {
  const base = Array.from({ length: 400 }, (_, i) => makeWords(i + 1, 40).join(" "));

  it("finds exact duplicates by content hash, and nothing for new text", () => {
    const { idx } = indexed(base);
    assert.equal(idx.idOf(idx.findExact(contentHash(normalizeText(base[17]!.toUpperCase())))), 1017);
    assert.equal(idx.findExact(contentHash(normalizeText("never seen"))), -1);
  });

  it("recall at the threshold: rows with Jaccard >= 0.6 to an indexed row are found", () => {
    const { idx, mh, params } = indexed(base);
    let found = 0;
    let total = 0;
    for (let i = 0; i < base.length; i++) {
      const words = base[i]!.split(" ");
      words[5] = "changed";
      words[25] = "edited";
      const t = words.join(" ");
      const sig = mh.signature(normalizeText(t));
      const exact = exactJaccard(mh.shingleSet(normalizeText(t)), mh.shingleSet(normalizeText(base[i]!)));
      if (exact < 0.6) continue;
      total++;
      const m = idx.bestMatch(sig, computeBandKeys(sig, params), 0.5);
      if (m?.id === 1000 + i) found++;
    }
    assert.ok(total > 300);
    assert.ok(found / total >= 0.97, `recall ${found}/${total}`);
  });

  it("unrelated rows are not matched", () => {
    const { idx, mh, params } = indexed(base);
    let falseHits = 0;
    for (let i = 0; i < 300; i++) {
      const sig = mh.signature(normalizeText(makeWords(100_000 + i, 40).join(" ")));
      if (idx.bestMatch(sig, computeBandKeys(sig, params), 0.5) !== undefined) falseHits++;
    }
    assert.equal(falseHits, 0);
  });

  it("serialization round trip gives the same answers, and equals a rebuild from records", () => {
    const { idx, sigs, mh, params } = indexed(base);
    const buf = idx.serialize();
    const loaded = DatanetIndex.deserialize(buf);
    const rebuilt = DatanetIndex.fromRecords(
      params,
      base.map((t, i) => ({
        id: 1000 + i,
        sha256: contentHash(normalizeText(t)),
        signature: signatureFromBytes(signatureToBytes(sigs[i]!)),
      })),
    );
    assert.equal(loaded.size, idx.size);
    assert.deepEqual(rebuilt.serialize(), buf);
    assert.deepEqual(loaded.serialize(), buf);
    for (let i = 0; i < 50; i++) {
      const sig = mh.signature(normalizeText(`${base[i]} extra words here`));
      const keys = computeBandKeys(sig, params);
      assert.deepEqual(loaded.candidates(keys), idx.candidates(keys));
      assert.deepEqual(rebuilt.bestMatch(sig, keys, 0.3), idx.bestMatch(sig, keys, 0.3));
    }
    assert.throws(() => DatanetIndex.deserialize(buf.subarray(0, buf.length - 1)));
  });

  it("several growths (16 -> 1024 -> 1536 -> ...) keep every row findable and the snapshot canonical", () => {
    const texts = Array.from({ length: 5_000 }, (_, i) => makeWords(7_000_000 + i * 13, 10).join(" "));
    const { idx, sigs, params } = indexed(texts);
    for (let i = 0; i < texts.length; i += 7) {
      const ord = idx.findExact(contentHash(normalizeText(texts[i]!)));
      assert.equal(idx.idOf(ord), 1000 + i);
      assert.ok(idx.candidates(computeBandKeys(sigs[i]!, params)).includes(ord));
    }
    const presized = new DatanetIndex(params, 8_192);
    texts.forEach((t, i) => {
      presized.add(1000 + i, contentHash(normalizeText(t)), sigs[i]!);
    });
    assert.deepEqual(presized.serialize(), idx.serialize());
    assert.throws(() => presized.add(2 ** 53, contentHash("x"), sigs[0]!), /safe integer/);
  });

  it("growth keeps every row findable (property)", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 300 }), fc.integer({ min: 1, max: 1e6 }), (n, seed) => {
        const texts = Array.from({ length: n }, (_, i) => makeWords(seed + i * 31, 12).join(" "));
        const { idx, sigs, params } = indexed(texts);
        for (let i = 0; i < n; i++) {
          const ord = idx.findExact(contentHash(normalizeText(texts[i]!)));
          assert.ok(ord >= 0 && idx.idOf(ord) === texts.indexOf(texts[i]!) + 1000);
          assert.ok(idx.candidates(computeBandKeys(sigs[i]!, params)).includes(ord));
        }
      }),
      { numRuns: 40 },
    );
  });
});
