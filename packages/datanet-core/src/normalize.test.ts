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
    assert.equal(normalizeText("café CAFÉ cafe\u0301"), "café café café");
    assert.equal(normalizeText("ΟΔΟΣ οδος"), "οδοσ οδοσ");
    assert.equal(normalizeText("emoji 🎉 and — dashes"), "emoji and dashes");
    assert.equal(normalizeText("¡!?"), "");
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
