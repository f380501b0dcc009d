import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { REPO_ROOT } from "@openledger/chain";
import { ByteTokenizer, HfTokenizer, type TextTokenizer, TINY_CONFIG } from "@openledger/model-runtime";

/**
 * The served model's tokenizer, as attribution needs it. Span attribution matches *token ids*
 * of the model's output against token ids of the datanet rows, so both sides must be tokenized
 * by the tokenizer of the model the gateway serves (packages/model-runtime):
 *
 * - "byte": the gateway's built-in tiny model (`ByteTokenizer`): ids 0..255 are UTF-8 bytes;
 *   special tokens (BOS/EOS/PAD, ids 256..258) never occur in encoded text
 *   (`addSpecialTokens: false`), so the vocabulary is TINY_CONFIG.vocabSize.
 * - a directory path: the model's `tokenizer.json` (+ `tokenizer_config.json`), vocabulary size
 *   from its `config.json` (`HfTokenizer`, the same class the gateway uses).
 *
 * `id` names the tokenizer in index metadata and in every signed result ("byte" or
 * "hf:<sha256 of tokenizer.json, 16 hex>"), so an index built with another tokenizer is never
 * queried by mistake and validators with different tokenizers visibly disagree.
 */
export interface AttributionTokenizer {
  id: string;
  vocabSize: number;
  /** Token ids of `text` (no special tokens). */
  encode(text: string): ArrayLike<number>;
  decode(ids: ArrayLike<number>): string;
}

function wrap(id: string, vocabSize: number, t: TextTokenizer): AttributionTokenizer {
  return {
    id,
    vocabSize,
    encode: (text) => t.encode(text, { addSpecialTokens: false }),
    decode: (ids) => t.decode(Array.from(ids), { skipSpecialTokens: true }),
  };
}

export async function loadAttributionTokenizer(specOrPath: string): Promise<AttributionTokenizer> {
  // A relative directory is the repository's (the default base model, models/openledger-moby).
  const spec = specOrPath === "byte" ? specOrPath : path.resolve(REPO_ROOT, specOrPath);
  if (spec === "byte") {
    const t = wrap("byte", TINY_CONFIG.vocabSize, new ByteTokenizer());
    // Same ids as ByteTokenizer.encode (UTF-8 bytes; tested), as a Uint8Array: 1 byte per token
    // while a version is being indexed instead of a JS number array (8+ bytes per token).
    const utf8 = new TextEncoder();
    return { ...t, encode: (text) => utf8.encode(text) };
  }
  const cfg = JSON.parse(await readFile(path.join(spec, "config.json"), "utf8")) as { vocab_size?: number };
  if (!Number.isInteger(cfg.vocab_size)) throw new Error(`${spec}/config.json has no integer vocab_size`);
  const raw = await readFile(path.join(spec, "tokenizer.json")).catch((err: NodeJS.ErrnoException) => {
    // As model-runtime's tokenizerFor: a model directory without tokenizer.json and the tiny
    // model's vocabulary is the byte-level tiny model (e.g. GATEWAY_MODEL_DIR=.data/models/tiny).
    if (err.code === "ENOENT" && cfg.vocab_size === TINY_CONFIG.vocabSize) return null;
    throw err;
  });
  if (raw === null) return loadAttributionTokenizer("byte");
  const tokCfg = await readFile(path.join(spec, "tokenizer_config.json"), "utf8").then(
    (t) => JSON.parse(t) as unknown,
    () => ({}),
  );
  const id = `hf:${createHash("sha256").update(raw).digest("hex").slice(0, 16)}`;
  return wrap(id, cfg.vocab_size!, new HfTokenizer(JSON.parse(raw.toString("utf8")), tokCfg));
}
