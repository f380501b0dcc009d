import assert from "node:assert/strict";
import { test } from "node:test";
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

/** GPT-2's byte -> printable unicode map, as byte-level BPE vocabularies use. */
function bytesToUnicode(): string[] {
  const bs: number[] = [];
  for (let i = 33; i <= 126; i++) bs.push(i);
  for (let i = 161; i <= 172; i++) bs.push(i);
  for (let i = 174; i <= 255; i++) bs.push(i);
  const cs = [...bs];
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n++);
    }
  }
  const map: string[] = new Array(256);
  bs.forEach((b, i) => {
    map[b] = String.fromCodePoint(cs[i]!);
  });
  return map;
}

function smallTokenizerJson() {
  const specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
  const vocab: Record<string, number> = {};
  specials.forEach((s, i) => {
    vocab[s] = i;
  });
  for (const ch of bytesToUnicode()) vocab[ch] = Object.keys(vocab).length;
  const merges = ["h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or", "Ġwor l", "Ġworl d"];
  for (const m of merges) vocab[m.replace(" ", "")] = Object.keys(vocab).length;
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: specials.map((content, id) => ({
      id,
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    })),
    normalizer: null,
    pre_tokenizer: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: null,
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      vocab,
      merges,
    },
  };
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
