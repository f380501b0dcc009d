import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { test } from "node:test";
import { ByteTokenizer, TINY_CONFIG, toHfConfig } from "@openledger/model-runtime";
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

test("a model directory: the tiny model (no tokenizer.json) is bytes; a tokenizer.json is used and named by hash", async () => {
  const dir = await mkdtemp(path.join(tmpdir(), "attr-tok-"));
  try {
    await writeFile(path.join(dir, "config.json"), JSON.stringify(toHfConfig(TINY_CONFIG)));
    assert.equal((await loadAttributionTokenizer(dir)).id, "byte");
    const vocab = { "[UNK]": 0, contracts: 1, need: 2, consideration: 3 };
    await writeFile(
      path.join(dir, "tokenizer.json"),
      JSON.stringify({
        version: "1.0",
        added_tokens: [],
        normalizer: null,
        pre_tokenizer: { type: "Whitespace" },
        post_processor: null,
        decoder: null,
        model: { type: "WordLevel", vocab, unk_token: "[UNK]" },
      }),
    );
    await writeFile(
      path.join(dir, "config.json"),
      JSON.stringify({ ...toHfConfig(TINY_CONFIG), vocab_size: 4 }),
    );
    const t = await loadAttributionTokenizer(dir);
    assert.match(t.id, /^hf:[0-9a-f]{16}$/);
    assert.equal(t.vocabSize, 4);
    assert.deepEqual(Array.from(t.encode("contracts need consideration")), [1, 2, 3]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
