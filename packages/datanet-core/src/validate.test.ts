import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { canonicalHash, canonicalJson } from "./canonical-json.ts";
import { DatanetIndex } from "./datanet-index.ts";
import { normalizeText } from "./normalize.ts";
import { qualityScore, qualitySignals } from "./quality.ts";
import { makeVariant, paragraph, Rng, render } from "./synthetic.ts";
import { DatanetValidator, resolveValidationConfig } from "./validate.ts";

const score = (t: string) => qualityScore(qualitySignals(t, normalizeText(t)));

function seededDatanet(n: number, seed = 1) {
  const rng = new Rng(seed);
  const paras = Array.from({ length: n }, () => paragraph(rng, 3, 5));
  const v = new DatanetValidator();
  const sub = v.startSubmission();
  const outcomes = sub.validateBatch(paras.map((p) => ({ text: render(p) })));
  assert.ok(outcomes.every((o) => o.status === "accepted"));
  sub.commit((rowIndex) => 500 + rowIndex);
  return { v, paras, rng };
}

/** Straightforward reference for qualitySignals (strings, regexes, Maps): the fast version must agree. */
function referenceSignals(text: string, normalized: string) {
  let chars = 0;
  let junk = 0;
  let letters = 0;
  const distinct = new Set<number>();
  for (const ch of text) {
    if (/\s/u.test(ch)) continue;
    chars++;
    distinct.add(ch.codePointAt(0)!);
    if (/[\p{Cc}\p{Co}\p{Cn}\p{Cs}\uFFFD]/u.test(ch)) junk++;
    else if (/\p{L}/u.test(ch)) letters++;
  }
  const words = normalized.length === 0 ? [] : normalized.split(" ");
  const counts = new Map<string, number>();
  for (let i = 0; i + 2 < words.length; i++) {
    const g = words.slice(i, i + 3).join(" ");
    counts.set(g, (counts.get(g) ?? 0) + 1);
  }
  let repeated = 0;
  for (const c of counts.values()) if (c > 1) repeated += c;
  const trigrams = words.length - 2;
  return {
    chars,
    words: words.length,
    junkRatio: chars === 0 ? 0 : junk / chars,
    letterRatio: chars === 0 ? 0 : letters / chars,
    distinctChars: distinct.size,
    distinctWordRatio: words.length === 0 ? 0 : new Set(words).size / words.length,
    repeatedTrigramRatio: trigrams > 0 ? repeated / trigrams : 0,
    wellFormedWordRatio: words.length === 0 ? 0 : words.filter((w) => w.length <= 24).length / words.length,
  };
}

describe("quality score", () => {
  it("fast signals agree with the reference implementation", () => {
    const wordy = fc
      .array(
        fc.constantFrom(
          "the",
          "data",
          "ÄÖ",
          "x",
          "\u0000",
          "  ",
          "\t",
          "\u00a0",
          "🎉",
          "naïve",
          "a".repeat(30),
          ".",
          "\ud800",
        ),
        { maxLength: 60 },
      )
      .map((a) => a.join(" "));
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: "binary", maxLength: 120 }), wordy), (s) => {
        const n = normalizeText(s);
        assert.deepEqual(qualitySignals(s, n), referenceSignals(s, n));
      }),
      { numRuns: 1500 },
    );
  });

  it("ranks ordinary prose high and junk low", () => {
    const prose =
      "The river valley floods every spring, so the farmers plant late and harvest their barley in the first dry weeks of autumn.";
    assert.ok(score(prose) >= 80, `prose ${score(prose)}`);
    assert.ok(score("buy now buy now buy now buy now buy now buy now buy now buy now buy now") < 40);
    assert.ok(score("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa aaaaaaaaaaaaaaaa") < 40);
    assert.ok(score("QmFzZTY0IGVuY29kZWQgYmxvYiBvZiBiaW5hcnkgZ2FyYmFnZSB0aGF0IGlzIG5vdCB0ZXh0") < 40);
    assert.ok(score("12 34 56 78 90 12 34 56 78 90 11 22 33 44 55 66 77 88 99 00 +-*/") < 40);
    assert.ok(
      score(`text with binary \u0000\u0001\u0002\u0003\u0004\u0005\u0006\u0007\u0008\u000e\u000f junk`) < 60,
    );
  });
  it("is an integer in [0, 100] for any input", () => {
    fc.assert(
      fc.property(fc.string({ unit: "binary", maxLength: 200 }), (s) => {
        const q = score(s);
        assert.ok(Number.isInteger(q) && q >= 0 && q <= 100);
      }),
      { numRuns: 1000 },
    );
  });
});

describe("row outcomes", () => {
  it("accepts new rows and rejects exact, near, in-submission duplicates, short and low-quality rows", () => {
    const { v, paras, rng } = seededDatanet(300);
    const fresh = paragraph(rng, 4, 4);
    const sub = v.startSubmission();
    const out = sub.validateBatch([
      { text: render(paragraph(rng, 4, 4)) }, // 0 accepted
      { text: render(paras[7]!).toUpperCase() }, // 1 exact dup of datanet row 507
      { text: makeVariant(rng, paras[42]!, "edit") }, // 2 near dup of 542
      { text: render(fresh) }, // 3 accepted
      { text: makeVariant(rng, fresh, "shuffle") }, // 4 near dup of row 3
      { text: `  ${render(fresh)}  ` }, // 5 exact dup of row 3
      { text: "too short" }, // 6
      { text: "spam spam spam spam spam spam spam spam spam spam spam spam spam spam spam" }, // 7 low quality
    ]);
    assert.deepEqual(
      out.map((o) => [o.status, o.reason, o.duplicateOf]),
      [
        ["accepted", undefined, undefined],
        ["rejected", "exact_duplicate", { scope: "datanet", id: 507 }],
        ["rejected", "near_duplicate", { scope: "datanet", id: 542 }],
        ["accepted", undefined, undefined],
        ["rejected", "near_duplicate", { scope: "submission", rowIndex: 3 }],
        ["rejected", "exact_duplicate", { scope: "submission", rowIndex: 3 }],
        ["rejected", "too_short", undefined],
        ["rejected", "low_quality", undefined],
      ],
    );
    assert.ok(out[2]!.similarity! >= 0.5 && out[2]!.similarity! < 1);
    assert.equal(out[1]!.similarity, 1);
    assert.ok(out[0]!.signature instanceof Uint32Array);
    // Nothing reaches the datanet index before commit.
    assert.equal(v.index.size, 300);
    assert.equal(
      sub.commit((i) => 10_000 + i),
      2,
    );
    assert.equal(v.index.size, 302);
    const again = v.startSubmission().validateBatch([{ text: render(fresh) }]);
    assert.deepEqual(again[0]!.duplicateOf, { scope: "datanet", id: 10_003 });
  });

  it("copies written with Cyrillic/Greek look-alikes or an accent on every letter are caught (issue #12)", () => {
    const { v, paras, rng } = seededDatanet(200, 3);
    const swap = (t: string, map: Record<string, string>) => [...t].map((c) => map[c] ?? c).join("");
    const text = (i: number) => render(paras[i]!);
    const out = v.startSubmission().validateBatch([
      { text: swap(text(11), { a: "а", e: "е", o: "о", p: "р", c: "с", x: "х", y: "у" }) }, // Cyrillic
      { text: swap(text(12), { o: "ο" }) }, // Greek omicron
      { text: [...text(13)].map((c) => (/[a-z]/i.test(c) ? `${c}\u0301` : c)).join("") }, // accents
      { text: makeVariant(rng, paras[14]!, "homoglyph") }, // look-alikes and small edits
      { text: makeVariant(rng, paras[15]!, "accents") },
    ]);
    assert.deepEqual(
      out.map((o) => [o.status, o.duplicateOf]),
      [11, 12, 13, 14, 15].map((i) => ["rejected", { scope: "datanet", id: 500 + i }]),
    );
    assert.deepEqual(
      out.slice(0, 3).map((o) => o.reason),
      ["exact_duplicate", "exact_duplicate", "exact_duplicate"],
      "look-alikes and accents normalize away entirely",
    );
  });

  it("batches of one submission see each other; dedupe off checks quality only", () => {
    const { v, paras, rng } = seededDatanet(50);
    const p = paragraph(rng, 3, 3);
    const sub = v.startSubmission();
    assert.equal(sub.validateBatch([{ text: render(p) }])[0]!.status, "accepted");
    const second = sub.validateBatch([{ text: makeVariant(rng, p, "edit") }])[0]!;
    assert.equal(second.rowIndex, 1);
    assert.deepEqual(second.duplicateOf, { scope: "submission", rowIndex: 0 });
    const off = v.startSubmission({ dedupe: false }).validateBatch([{ text: render(paras[3]!) }]);
    assert.equal(off[0]!.status, "accepted");
  });

  it("refuses an index built with other LSH parameters", () => {
    assert.throws(
      () => new DatanetValidator({}, new DatanetIndex({ numPerm: 128, bands: 8, rows: 8 })),
      /rebuild/,
    );
  });

  it("is deterministic: same datanet and submission give identical outcomes (property)", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 1e6 }), (seed) => {
        const run = () => {
          const { v, paras, rng } = seededDatanet(40, seed);
          const rows = Array.from({ length: 30 }, (_, i) =>
            i % 3 === 0
              ? { text: makeVariant(rng, paras[i]!, "shuffle_edit_case") }
              : { text: render(paragraph(rng)) },
          );
          return v
            .startSubmission()
            .validateBatch(rows)
            .map((o) => ({ ...o, signature: o.signature ? Array.from(o.signature) : undefined }));
        };
        assert.deepEqual(run(), run());
      }),
      { numRuns: 10 },
    );
  });
});

describe("submission verdict and evidence", () => {
  it("a mostly redundant submission yields a slashing proposal with evidence and a stable hash", () => {
    const make = () => {
      const { v, paras, rng } = seededDatanet(100, 9);
      const sub = v.startSubmission();
      const rows = [
        ...paras.slice(0, 8).map((p) => ({ text: makeVariant(rng, p, "edit") })),
        ...paras.slice(8, 12).map((p) => ({ text: render(p) })),
        ...Array.from({ length: 4 }, () => ({ text: render(paragraph(rng)) })),
      ];
      sub.validateBatch(rows);
      return sub.verdict({ datanetId: "dn-1", contributor: "0xABCdef", submissionId: "s-9" });
    };
    const verdict = make();
    assert.equal(verdict.slash, true);
    assert.deepEqual(verdict.reasons, ["redundant"]);
    assert.equal(verdict.stats.rows, 16);
    assert.equal(verdict.stats.exactDuplicates, 4);
    assert.equal(verdict.stats.nearDuplicates, 8);
    assert.equal(verdict.duplicateRatioPpm, 750_000);
    const ev = verdict.evidence!;
    assert.equal(ev.rows.length, 12);
    assert.equal(ev.contributor, "0xabcdef");
    assert.deepEqual(ev.rows[0]!.duplicateOf, { scope: "datanet", id: "500" });
    assert.ok(ev.rows.every((r) => Number.isInteger(r.similarityPpm) && r.similarityPpm! >= 500_000));
    assert.equal(verdict.evidenceHash, canonicalHash(ev));
    assert.match(verdict.evidenceHash!, /^0x[0-9a-f]{64}$/);
    assert.equal(make().evidenceHash, verdict.evidenceHash);
  });

  it("small or clean submissions are not slashed; junk floods and flagged rows are", () => {
    const { v, paras, rng } = seededDatanet(30, 3);
    const small = v.startSubmission();
    small.validateBatch(paras.slice(0, 5).map((p) => ({ text: render(p) })));
    assert.equal(small.verdict().slash, false);

    const clean = v.startSubmission();
    clean.validateBatch(Array.from({ length: 20 }, () => ({ text: render(paragraph(rng)) })));
    const cv = clean.verdict();
    assert.equal(cv.slash, false);
    assert.equal(cv.evidence, undefined);
    const flagged = clean.verdict({ adversarialRows: [{ rowIndex: 4, reason: "label flip" }] });
    assert.deepEqual(flagged.reasons, ["adversarial"]);
    assert.deepEqual(flagged.evidence!.rows, [
      { rowIndex: 4, contentHash: "", reason: "adversarial", note: "label flip" },
    ]);

    const junk = v.startSubmission();
    junk.validateBatch(Array.from({ length: 12 }, (_, i) => ({ text: `${"zz ".repeat(10 + i)}` })));
    const jv = junk.verdict();
    assert.deepEqual(jv.reasons, ["junk"]);
    assert.ok(jv.evidence!.rows.every((r) => r.qualityScore !== undefined));
  });

  it("thresholds are configurable", () => {
    const cfg = resolveValidationConfig({
      nearDuplicateThreshold: 0.8,
      slashing: { maxDuplicateRatio: 0.9 },
    });
    assert.equal(cfg.slashing.maxDuplicateRatio, 0.9);
    assert.ok(cfg.rows > resolveValidationConfig().rows);
    assert.deepEqual(resolveValidationConfig(cfg), cfg);
  });
});

describe("canonical JSON", () => {
  it("sorts keys, drops undefined properties, rejects fractions", () => {
    assert.equal(canonicalJson({ b: 1, a: [true, null, "x"], c: undefined }), '{"a":[true,null,"x"],"b":1}');
    assert.throws(() => canonicalJson({ x: 0.5 }));
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        const clean = JSON.parse(
          JSON.stringify(v, (_k, x) => (typeof x === "number" && !Number.isSafeInteger(x) ? 0 : x)),
        );
        const shuffled = JSON.parse(JSON.stringify(clean));
        assert.equal(canonicalJson(shuffled), canonicalJson(clean));
        assert.deepEqual(JSON.parse(canonicalJson(clean)), clean);
      }),
      { numRuns: 300 },
    );
  });
});
