import assert from "node:assert/strict";
import { test } from "node:test";
import { byteLevelBpeTokenizerJson, bytesToUnicode } from "./bpe-train.ts";
import { TINY_BOS, TINY_EOS } from "./config.ts";
import { ByteTokenizer, HfTokenizer } from "./tokenizer.ts";

test("byte tokenizer round-trips UTF-8 and renders ChatML", () => {
  const tok = new ByteTokenizer();
  const ids = tok.encode("héllo ✓");
  assert.equal(ids[0], TINY_BOS);
  assert.equal(ids.length, 1 + new TextEncoder().encode("héllo ✓").length);
  assert.equal(tok.decode([...ids, TINY_EOS]), "héllo ✓");
  const prompt = tok.applyChatTemplate([{ role: "user", content: "hi" }]);
  assert.equal(prompt, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
});

function smallTokenizerJson() {
  const specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
  const vocab: Record<string, number> = {};
  specials.forEach((s, i) => {
    vocab[s] = i;
  });
  for (const ch of bytesToUnicode()) vocab[ch] = Object.keys(vocab).length;
  const merges = ["h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or", "Ġwor l", "Ġworl d"];
  for (const m of merges) vocab[m.replace(" ", "")] = Object.keys(vocab).length;
  return byteLevelBpeTokenizerJson({ specialTokens: specials, vocab, merges });
}

test("HF tokenizer.json (byte-level BPE) encodes with merges, decodes, and applies the chat template", () => {
  const json = smallTokenizerJson();
  const config = {
    eos_token: "<|im_end|>",
    bos_token: null,
    chat_template:
      "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
  };
  const tok = new HfTokenizer(json, config);
  const ids = tok.encode("hello world");
  assert.deepEqual(ids, [json.model.vocab["hello"], json.model.vocab["Ġworld"]]);
  assert.equal(tok.decode(ids), "hello world");
  assert.deepEqual(tok.eosTokenIds, [2]);
  const prompt = tok.applyChatTemplate([{ role: "user", content: "hello" }]);
  assert.equal(prompt, "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n");
  const promptIds = tok.encode(prompt, { addSpecialTokens: false });
  assert.equal(promptIds[0], 1, "special tokens in the template are single ids");
  assert.ok(promptIds.includes(2));
  assert.equal(tok.decode(promptIds, { skipSpecialTokens: false }), prompt);
  // Unicode outside the merges falls back to bytes and still round-trips.
  assert.equal(tok.decode(tok.encode("naïve ✓")), "naïve ✓");
});
