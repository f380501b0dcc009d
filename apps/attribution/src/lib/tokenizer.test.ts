import assert from "node:assert/strict";
import { test } from "node:test";
import { ByteTokenizer, TINY_CONFIG } from "@openledger/model-runtime";
import fc from "fast-check";
import { loadAttributionTokenizer } from "./tokenizer.ts";

test("the byte tokenizer gives exactly the gateway tiny model's token ids, and decodes back", async () => {
  const t = await loadAttributionTokenizer("byte");
  const gateway = new ByteTokenizer();
  assert.equal(t.id, "byte");
  assert.equal(t.vocabSize, TINY_CONFIG.vocabSize);
  fc.assert(
    fc.property(fc.string({ unit: "grapheme" }), (text) => {
      const ids = Array.from(t.encode(text));
      assert.deepEqual(ids, gateway.encode(text, { addSpecialTokens: false }));
      assert.equal(t.decode(ids), text);
    }),
    { numRuns: 300, seed: 3 },
  );
});

test("an unknown tokenizer directory is an error, not a silent fallback", async () => {
  await assert.rejects(loadAttributionTokenizer("/nonexistent/model-dir"));
});
