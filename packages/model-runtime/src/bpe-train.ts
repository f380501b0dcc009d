// Byte-level BPE training, written here because no well-kept npm library trains one offline:
// @huggingface/tokenizers (the JS port the runtime loads tokenizer.json with) encodes and decodes
// only, and the native builds of Hugging Face's Rust trainer on npm are unofficial forks. The
// output is a standard Hugging Face `tokenizer.json` (ByteLevel pre-tokenizer and decoder, BPE
// model, a template that adds BOS), so any HF tokenizer loads it, ours included.
//
// The algorithm is the classic one (Sennrich et al.; GPT-2's byte-level variant): split the text
// the way GPT-2's ByteLevel pre-tokenizer does, count the distinct pieces, then repeatedly merge
// the most frequent adjacent pair of symbols. Ties go to the pair whose merged string sorts first
// (code unit order), so the result is a pure function of the text and the vocabulary size.

/** GPT-2's pre-tokenizer pattern, as the ByteLevel pre-tokenizer (use_regex) applies it. */
const GPT2_SPLIT = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

/** GPT-2's byte -> printable character table (bytes that print as themselves keep their code). */
export function bytesToUnicode(): string[] {
  const keep: number[] = [];
  for (let b = 33; b <= 126; b++) keep.push(b);
  for (let b = 161; b <= 172; b++) keep.push(b);
  for (let b = 174; b <= 255; b++) keep.push(b);
  const table: string[] = new Array(256);
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    table[b] = String.fromCharCode(keep.includes(b) ? b : 256 + extra++);
  }
  return table;
}

export interface BpeTrainOptions {
  /** Vocabulary size, special tokens included. */
  vocabSize: number;
  /** Special tokens, given the first ids in this order. */
  specialTokens: string[];
  /** The special token the post-processor puts before every encoded text (BOS), if any. */
  bosToken?: string;
  /** Pairs seen fewer times than this are not merged (default 2). */
  minFrequency?: number;
}

/** A trained tokenizer: the `tokenizer.json` object and how many merges it learned. */
export interface TrainedBpe {
  tokenizerJson: Record<string, unknown>;
  merges: number;
}

/**
 * Trains a byte-level BPE tokenizer on `texts`. Deterministic: the same texts and options give
 * the same vocabulary and merges on every machine.
 */
export function trainByteLevelBpe(texts: Iterable<string>, options: BpeTrainOptions): TrainedBpe {
  const byteChar = bytesToUnicode();
  const encoder = new TextEncoder();
  // Distinct pre-tokenized pieces and their counts.
  const pieceCounts = new Map<string, number>();
  for (const text of texts) {
    for (const m of text.matchAll(GPT2_SPLIT)) {
      pieceCounts.set(m[0], (pieceCounts.get(m[0]) ?? 0) + 1);
    }
  }
  // Symbols: the 256 byte characters first (ids after the specials), then one per merge.
  const symbols: string[] = [];
  const symbolId = new Map<string, number>();
  for (const ch of [...byteChar].sort()) {
    symbolId.set(ch, symbols.length);
    symbols.push(ch);
  }
  const words: Int32Array[] = [];
  const counts: number[] = [];
  for (const [piece, count] of [...pieceCounts].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))) {
    const bytes = encoder.encode(piece);
    words.push(Int32Array.from(bytes, (b) => symbolId.get(byteChar[b]!)!));
    counts.push(count);
  }
  // Pair counts, and which words hold each pair (rebuilt lazily per merge).
  const key = (a: number, b: number) => a * 65536 + b;
  const pairCounts = new Map<number, number>();
  const pairWords = new Map<number, Set<number>>();
  const addPairs = (w: number, sign: 1 | -1) => {
    const word = words[w]!;
    for (let i = 0; i + 1 < word.length; i++) {
      const k = key(word[i]!, word[i + 1]!);
      pairCounts.set(k, (pairCounts.get(k) ?? 0) + sign * counts[w]!);
      if (sign === 1) {
        const set = pairWords.get(k);
        if (set) set.add(w);
        else pairWords.set(k, new Set([w]));
      }
    }
  };
  for (let w = 0; w < words.length; w++) addPairs(w, 1);

  const minFrequency = options.minFrequency ?? 2;
  const target = options.vocabSize - options.specialTokens.length;
  if (target < symbols.length)
    throw new Error(`vocabSize ${options.vocabSize} is below 256 bytes + specials`);
  const merges: [string, string][] = [];
  while (symbols.length < target) {
    let best = -1;
    let bestCount = 0;
    let bestString = "";
    for (const [k, c] of pairCounts) {
      if (c < minFrequency || c < bestCount) continue;
      const s = symbols[Math.floor(k / 65536)]! + symbols[k % 65536]!;
      if (c > bestCount || s < bestString) {
        best = k;
        bestCount = c;
        bestString = s;
      }
    }
    if (best < 0) break;
    const a = Math.floor(best / 65536);
    const b = best % 65536;
    const merged = symbols.length;
    // The same string can come from two different pairs ("ab"+"c", "a"+"bc"): it keeps one id.
    const existing = symbolId.get(bestString);
    const id = existing ?? merged;
    if (existing === undefined) {
      symbols.push(bestString);
      symbolId.set(bestString, id);
    }
    merges.push([symbols[a]!, symbols[b]!]);
    for (const w of [...(pairWords.get(best) ?? [])].sort((x, y) => x - y)) {
      const word = words[w]!;
      let has = false;
      for (let i = 0; i + 1 < word.length; i++) {
        if (word[i] === a && word[i + 1] === b) {
          has = true;
          break;
        }
      }
      if (!has) continue;
      addPairs(w, -1);
      const out: number[] = [];
      for (let i = 0; i < word.length; i++) {
        if (i + 1 < word.length && word[i] === a && word[i + 1] === b) {
          out.push(id);
          i++;
        } else out.push(word[i]!);
      }
      words[w] = Int32Array.from(out);
      addPairs(w, 1);
    }
    pairCounts.delete(best);
    pairWords.delete(best);
  }

  const vocab: Record<string, number> = {};
  options.specialTokens.forEach((t, i) => {
    vocab[t] = i;
  });
  symbols.forEach((s, i) => {
    vocab[s] = i + options.specialTokens.length;
  });
  const bos = options.bosToken;
  const bosId = bos === undefined ? undefined : options.specialTokens.indexOf(bos);
  if (bos !== undefined && (bosId === undefined || bosId < 0))
    throw new Error(`bosToken ${bos} is not special`);
  const tokenizerJson = byteLevelBpeTokenizerJson({
    specialTokens: options.specialTokens,
    vocab,
    merges,
    postProcessor:
      bos === undefined
        ? { type: "ByteLevel", add_prefix_space: true, trim_offsets: false, use_regex: true }
        : {
            type: "TemplateProcessing",
            single: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
            pair: [
              { SpecialToken: { id: bos, type_id: 0 } },
              { Sequence: { id: "A", type_id: 0 } },
              { SpecialToken: { id: bos, type_id: 1 } },
              { Sequence: { id: "B", type_id: 1 } },
            ],
            special_tokens: { [bos]: { id: bos, ids: [bosId], tokens: [bos] } },
          },
  });
  return { tokenizerJson, merges: merges.length };
}

/**
 * A byte-level BPE `tokenizer.json` (Hugging Face's format): `specialTokens` as added tokens with ids
 * 0.., GPT-2's ByteLevel pre-tokenizer and decoder, a BPE model over `vocab` and `merges`. The trainer
 * writes its output with it; tests and benchmarks build small or synthetic tokenizers with it.
 */
export function byteLevelBpeTokenizerJson<Merge extends string | [string, string]>(options: {
  specialTokens: readonly string[];
  vocab: Record<string, number>;
  /** "a b" strings or [a, b] pairs (both forms load). */
  merges: readonly Merge[];
  /** Default null (encode adds nothing). */
  postProcessor?: Record<string, unknown> | null;
}) {
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: options.specialTokens.map((content, id) => ({
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
    post_processor: options.postProcessor ?? null,
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab: options.vocab,
      merges: [...options.merges],
    },
  };
}
