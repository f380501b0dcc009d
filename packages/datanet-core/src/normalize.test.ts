import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { contentHashHex, normalizeText, normalizeTextGeneral } from "./normalize.ts";

describe("normalizeText", () => {
  it("folds case, compatibility forms, punctuation and whitespace", () => {
    assert.equal(normalizeText("  Hello,   WORLD!!\n\tIt's\u00a0me…  "), "hello world its me");
    assert.equal(normalizeText("Ｆｕｌｌｗｉｄｔｈ ﬁne"), "fullwidth fine");
    assert.equal(normalizeText("STRASSE Straße"), "strasse strasse");
    assert.equal(normalizeText("zero\u200bwidth soft\u00adhyphen"), "zerowidth softhyphen");
    assert.equal(normalizeText("café CAFÉ cafe\u0301"), "cafe cafe cafe");
    // Greek letters with an ASCII look-alike fold to it (omicron, sigma); the others stay.
    assert.equal(normalizeText("ΟΔΟΣ οδος"), "oδoo oδoo");
    assert.equal(normalizeText("emoji 🎉 and — dashes"), "emoji and dashes");
    assert.equal(normalizeText("¡!?"), "");
  });
  it("copies written with look-alikes or an accent on every letter normalize to the original", () => {
    const original = "The old river bank was quiet, apart from a pair of crows by the bridge.";
    const swap = (t: string, map: Record<string, string>) => [...t].map((c) => map[c] ?? c).join("");
    const variants = {
      cyrillic: swap(original, {
        a: "а",
        e: "е",
        o: "о",
        p: "р",
        c: "с",
        x: "х",
        y: "у",
        i: "і",
        T: "Т",
        B: "В",
      }),
      greekOmicron: swap(original, { o: "ο" }),
      accentEveryLetter: [...original].map((c) => (/[a-z]/i.test(c) ? `${c}\u0301` : c)).join(""),
      precomposedAccents: swap(original, { a: "á", e: "é", i: "í", o: "ö", u: "ü", c: "ç", n: "ñ" }),
      dotlessAndScript: swap(original, { i: "ı", l: "ℓ" }),
    };
    const key = normalizeText(original);
    for (const [name, text] of Object.entries(variants)) {
      assert.notEqual(text, original, name);
      assert.equal(normalizeText(text), key, name);
    }
    // Other scripts keep their marks (Devanagari vowel signs are letters' parts, not accents).
    assert.equal(normalizeText("नमस्ते दुनिया"), "नमस्ते दुनिया");
    // ASCII look-alikes of each other are never merged: only non-ASCII characters are mapped.
    assert.notEqual(normalizeText("modern 10 lol"), normalizeText("rnodern lO 1ol"));
  });
  it("ASCII fast path equals the general path", () => {
    fc.assert(
      fc.property(
        fc.string({ unit: fc.integer({ min: 0, max: 127 }).map((c) => String.fromCharCode(c)) }),
        (s) => {
          assert.equal(normalizeText(s), normalizeTextGeneral(s));
        },
      ),
      { numRuns: 2000 },
    );
  });
  it("is idempotent and yields single-spaced words", () => {
    fc.assert(
      fc.property(fc.string({ unit: "grapheme", maxLength: 40 }), (s) => {
        const n = normalizeText(s);
        assert.equal(normalizeText(n), n);
        assert.ok(!/\s{2}|^\s|\s$/.test(n));
      }),
      { numRuns: 2000 },
    );
  });
  it("content hash is SHA-256 hex of the normalized text", () => {
    assert.equal(
      contentHashHex(normalizeText("ABC")),
      "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    );
  });
});
