// The incremental decoder against a full decode of the same tokens: byte tokens (the tiny model's
// tokenizer) and multi-byte tokens whose boundaries split UTF-8 characters (byte-level BPE), with
// valid text, invalid bytes and special tokens; and the stop-string / delivered-token bookkeeping.
import assert from "node:assert/strict";
import { test } from "node:test";
import { ByteTokenizer, TINY_BOS, TINY_EOS } from "@openledger/model-runtime";
import fc from "fast-check";
import { IncrementalDecoder, OutputText } from "./decoder.ts";

const bytes = new ByteTokenizer();

/** Token ids of the byte tokenizer: valid UTF-8 of arbitrary text, raw bytes, specials. */
const byteTokens = fc
  .array(
    fc.oneof(
      fc.string({ unit: "binary", maxLength: 6 }).map((s) => [...new TextEncoder().encode(s)]),
      fc.array(fc.integer({ min: 0, max: 255 }), { maxLength: 4 }),
      fc.constantFrom([TINY_BOS], [TINY_EOS]),
    ),
    { maxLength: 40 },
  )
  .map((parts) => parts.flat());

function incremental(tok: ConstructorParameters<typeof IncrementalDecoder>[0], ids: number[]): string {
  const d = new IncrementalDecoder(tok);
  let out = "";
  for (const id of ids) out += d.push(id);
  return out + d.flush();
}

test("byte tokens: the incremental deltas equal a full decode (multi-byte characters split across tokens)", () => {
  // The classic cases first: "é" (2 bytes), "€" (3), "𝄞" (4) one byte per token, then ASCII.
  const ids = [...new TextEncoder().encode("aé€𝄞b")];
  const d = new IncrementalDecoder(bytes);
  const deltas = ids.map((id) => d.push(id));
  assert.deepEqual(deltas, ["a", "", "é", "", "", "€", "", "", "", "𝄞", "b"]);
  assert.equal(d.flush(), "");
  // An incomplete character at the end is what a full decode makes of it.
  assert.equal(incremental(bytes, [0x61, 0xe2, 0x82]), bytes.decode([0x61, 0xe2, 0x82]));
  fc.assert(
    fc.property(byteTokens, (ids) => {
      assert.equal(incremental(bytes, ids), bytes.decode(ids, { skipSpecialTokens: true }));
    }),
    { numRuns: 2000 },
  );
});

test("multi-byte tokens (byte-level BPE): deltas equal a full decode whatever the token boundaries", () => {
  fc.assert(
    fc.property(
      fc.string({ unit: "binary", maxLength: 60 }),
      fc.array(fc.integer({ min: 0, max: 255 }), { maxLength: 8 }),
      fc.array(fc.integer({ min: 1, max: 5 }), { minLength: 1, maxLength: 10 }),
      (text, junk, cuts) => {
        // The text's UTF-8 (plus some invalid bytes) cut into tokens of 1-5 bytes.
        const all = [...new TextEncoder().encode(text), ...junk];
        const vocab: number[][] = [];
        for (let i = 0, c = 0; i < all.length; c++) {
          const len = cuts[c % cuts.length]!;
          vocab.push(all.slice(i, i + len));
          i += len;
        }
        const tok = {
          decode: (ids: number[]) =>
            new TextDecoder().decode(Uint8Array.from(ids.flatMap((id) => vocab[id]!))),
        };
        const ids = vocab.map((_, i) => i);
        assert.equal(incremental(tok, ids), tok.decode(ids));
      },
    ),
    { numRuns: 2000 },
  );
});

test("a long output costs O(window) per token, not a decode of everything so far", () => {
  let decoded = 0;
  const counting = {
    decode: (ids: number[], o?: { skipSpecialTokens?: boolean }) => {
      decoded += ids.length;
      return bytes.decode(ids, o);
    },
  };
  const ids = [...new TextEncoder().encode("é".repeat(2000))];
  const d = new IncrementalDecoder(counting);
  for (const id of ids) d.push(id);
  // A full decode per token would read ids.length^2 / 2 = 8e6 ids.
  assert.ok(decoded < 20 * ids.length, `${decoded} ids decoded for ${ids.length} tokens`);
});

test("output text: cut at the first stop string, never streams a prefix of one, counts delivered tokens", () => {
  fc.assert(
    fc.property(
      byteTokens,
      fc.array(fc.string({ minLength: 1, maxLength: 3 }), { maxLength: 2 }),
      (ids, stop) => {
        const out = new OutputText(bytes, stop);
        let streamed = "";
        for (const id of ids) {
          if (out.push(id).stopped) break;
          const upto = out.streamableLength();
          assert.ok(upto >= streamed.length);
          streamed = out.text.slice(0, upto);
          for (const s of stop) assert.ok(!streamed.includes(s), "a stop string was streamed");
        }
        out.finish();
        const full = bytes.decode(ids.slice(0, out.tokens));
        const cuts = stop.map((s) => full.indexOf(s)).filter((i) => i >= 0);
        const expected = cuts.length ? full.slice(0, Math.min(...cuts)) : full;
        assert.equal(out.text, expected);
        assert.ok(out.text.startsWith(streamed));
        // Delivered tokens grow with the characters sent, and all text sent covers every token.
        let last = 0;
        for (let c = 0; c <= out.text.length; c++) {
          const n = out.tokensWithin(c);
          assert.ok(n >= last && n <= out.tokens);
          last = n;
        }
        assert.equal(out.tokensWithin(out.text.length), out.tokens);
      },
    ),
    { numRuns: 1000 },
  );
});

test("delivered tokens: a token counts once all of its bytes are in the text sent", () => {
  const out = new OutputText(bytes);
  for (const id of new TextEncoder().encode("ab€")) out.push(id);
  // "ab" sent: two tokens; the three bytes of € only once "€" is sent.
  assert.equal(out.tokensWithin(2), 2);
  assert.equal(out.tokensWithin(3), 5);
  const partial = new OutputText(bytes);
  for (const id of [0x61, 0xe2, 0x82]) partial.push(id);
  assert.equal(partial.text, "a");
  assert.equal(partial.tokensWithin(1), 1, "the incomplete character's bytes are not delivered");
});
