import assert from "node:assert/strict";
import { test } from "node:test";
import { trainByteLevelBpe } from "./bpe-train.ts";
import { HfTokenizer } from "./tokenizer.ts";

const TEXTS = [
  "Call me Ishmael. Some years ago—never mind how long precisely—having little or no money in my purse,",
  "and nothing particular to interest me on shore, I thought I would sail about a little and see the watery part of the world.",
  "It is a way I have of driving off the spleen, and regulating the circulation.   Whenever I find myself growing grim…",
  "Ça va? 1851, 1852: the whale — THE WHALE! tab\there, and a new\nline and   spaces .",
];
const SPECIAL = "<|endoftext|>";

function train(vocabSize = 400) {
  return trainByteLevelBpe(TEXTS, { vocabSize, specialTokens: [SPECIAL], bosToken: SPECIAL });
}

test("byte-level BPE: deterministic, the vocabulary size asked for, loaded by the HF tokenizer", () => {
  const a = train();
  assert.equal(
    JSON.stringify(a.tokenizerJson),
    JSON.stringify(train().tokenizerJson),
    "same text, same tokenizer",
  );
  const model = a.tokenizerJson.model as { vocab: Record<string, number>; merges: unknown[] };
  const ids = Object.values(model.vocab);
  assert.equal(new Set(ids).size, ids.length, "ids are distinct");
  assert.ok(ids.length <= 400 && ids.length > 257 + 50, `${ids.length} tokens`);
  assert.equal(model.vocab[SPECIAL], 0);
  assert.ok(a.merges > 0);
  // More merges, fewer tokens for the text it was trained on.
  const tok = new HfTokenizer(a.tokenizerJson, {
    bos_token: SPECIAL,
    eos_token: SPECIAL,
    clean_up_tokenization_spaces: false,
  });
  const bytes = new HfTokenizer(train(257).tokenizerJson, { clean_up_tokenization_spaces: false });
  const text = TEXTS.join(" ");
  assert.ok(tok.encode(text).length < bytes.encode(text).length);
});

test("byte-level BPE: any text round-trips exactly (unseen characters too), BOS is added, decode([]) is empty", () => {
  const tok = new HfTokenizer(train().tokenizerJson, {
    bos_token: SPECIAL,
    eos_token: SPECIAL,
    clean_up_tokenization_spaces: false,
  });
  assert.equal(tok.bosTokenId, 0);
  assert.deepEqual(tok.eosTokenIds, [0]);
  for (const text of [...TEXTS, "never seen: 日本語 🐋 \u0000 x\r\n  .", " leading and trailing  ", ""]) {
    const ids = tok.encode(text, { addSpecialTokens: false });
    assert.equal(tok.decode(ids), text);
    assert.deepEqual(tok.encode(text), [0, ...ids], "BOS first");
  }
  // An empty generation (EOS at once) decodes to "" rather than throwing (the gateway answered 500).
  assert.equal(tok.decode([]), "");
  assert.equal(tok.decode([0]), "");
});
