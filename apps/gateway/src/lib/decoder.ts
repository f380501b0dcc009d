import type { TextTokenizer } from "@openledger/model-runtime";

/**
 * A window that still ends in an incomplete character after this many tokens is emitted as it
 * decodes (U+FFFD and all): a UTF-8 character is at most 4 bytes, so only a model emitting long
 * runs of invalid bytes gets here, and the window — hence the cost of each decode — stays bounded.
 */
const MAX_WINDOW_TOKENS = 64;

function trailingReplacements(s: string): number {
  let n = 0;
  while (n < s.length && s.charCodeAt(s.length - 1 - n) === 0xfffd) n++;
  return n;
}

/**
 * Turns generated token ids into text deltas in O(window) per token instead of decoding the whole
 * output on every token (quadratic in its length). The approach of Hugging Face's
 * text-generation-inference (`decode_token`): decode only a window of recent tokens, starting at
 * the previous clean boundary (so tokenizers whose decoding depends on the preceding token — a
 * sentencepiece leading space — see the same context), and hold back text while it ends in U+FFFD
 * (a multi-byte character split across tokens). Tokenizers expose only `decode(ids)`, so this is
 * written here; no maintained npm package streams arbitrary `tokenizer.json` decoders.
 *
 * The concatenated deltas (plus `flush()`) equal `decode(all ids)` for any byte sequence whose
 * invalid runs are shorter than MAX_WINDOW_TOKENS tokens (property-tested against a full decode).
 */
export class IncrementalDecoder {
  readonly ids: number[] = [];
  /** Window start: a boundary at which an earlier window decoded cleanly. */
  #start = 0;
  /** The last clean boundary (the next window start). */
  #clean = 0;
  /** Characters of decode(ids[#start:]) already emitted. */
  #emitted = 0;
  /** The last push left an incomplete character held back. */
  holding = false;

  constructor(readonly tokenizer: Pick<TextTokenizer, "decode">) {}

  #decode(from: number): string {
    return this.tokenizer.decode(this.ids.slice(from), { skipSpecialTokens: true });
  }

  /** Adds a token; returns the text it completes ("" while a character is incomplete). */
  push(id: number): string {
    this.ids.push(id);
    const window = this.#decode(this.#start);
    const held = trailingReplacements(window);
    const forced = held > 0 && this.ids.length - this.#start > MAX_WINDOW_TOKENS;
    const upto = forced ? window.length : window.length - held;
    const delta = upto > this.#emitted ? window.slice(this.#emitted, upto) : "";
    this.#emitted = Math.max(this.#emitted, upto);
    this.holding = held > 0 && !forced;
    if (!this.holding) {
      // Clean: the next window starts at the previous clean boundary (one chunk of context).
      this.#start = forced ? this.ids.length : this.#clean;
      this.#clean = this.ids.length;
      this.#emitted = this.#start === this.ids.length ? 0 : this.#decode(this.#start).length;
    }
    return delta;
  }

  /** The text still held back at the end (an incomplete character: U+FFFD, as a full decode gives). */
  flush(): string {
    const window = this.#decode(this.#start);
    const rest = window.length > this.#emitted ? window.slice(this.#emitted) : "";
    this.#start = this.#clean = this.ids.length;
    this.#emitted = 0;
    this.holding = false;
    return rest;
  }
}

export interface OutputProgress {
  /** The text completed by this token, stop strings cut (already part of `text`). */
  delta: string;
  /** A stop string was found: the output ends here (text cut before it). */
  stopped: boolean;
}

/**
 * The output of one request as it is generated: decoded incrementally, cut at the first stop
 * string (searched only where new text can complete one), with the length that may be streamed
 * (text that could still become a stop string is held back) and the number of tokens a streamed
 * prefix of it covers — what a cut stream is billed for.
 */
export class OutputText {
  readonly #decoder: IncrementalDecoder;
  readonly #stop: string[];
  readonly #longestStop: number;
  /** The output so far (cut at a stop string once found). */
  text = "";
  stopped = false;
  /** Per token, in order: the output length once its bytes were part of the text. */
  readonly #ends: number[] = [];
  /** Tokens whose text is still incomplete (held by the decoder). */
  #pendingTokens = 0;

  constructor(tokenizer: Pick<TextTokenizer, "decode">, stop: string[] = []) {
    this.#decoder = new IncrementalDecoder(tokenizer);
    this.#stop = stop.filter((s) => s.length > 0);
    this.#longestStop = Math.max(0, ...this.#stop.map((s) => s.length));
  }

  get tokens(): number {
    return this.#decoder.ids.length;
  }

  push(id: number): OutputProgress {
    if (this.stopped) return { delta: "", stopped: true };
    return this.#append(this.#decoder.push(id), true);
  }

  /** At the end of generation: the held-back incomplete character, if any. */
  finish(): OutputProgress {
    if (this.stopped) return { delta: "", stopped: true };
    return this.#append(this.#decoder.flush(), false);
  }

  #append(piece: string, isToken: boolean): OutputProgress {
    if (isToken) this.#pendingTokens++;
    const before = this.text.length;
    // A stop string completed by this piece starts at most longestStop - 1 characters before it.
    const from = Math.max(0, before - this.#longestStop + 1);
    const combined = this.text + piece;
    let cut = -1;
    for (const s of this.#stop) {
      const at = combined.indexOf(s, from);
      if (at >= 0 && (cut < 0 || at < cut)) cut = at;
    }
    if (cut >= 0) {
      this.text = combined.slice(0, cut);
      this.stopped = true;
    } else {
      this.text = combined;
    }
    // A token counts as delivered once all of its text is: while the decoder holds part of a
    // character, the tokens since the last clean point wait (a cut stream never bills a token whose
    // bytes it did not send).
    if (!this.#decoder.holding || this.stopped) {
      for (; this.#pendingTokens > 0; this.#pendingTokens--) this.#ends.push(this.text.length);
    }
    return { delta: this.text.slice(before), stopped: this.stopped };
  }

  /** How much of `text` may be sent now: all once stopped, else without a possible stop-string prefix. */
  streamableLength(): number {
    if (this.stopped) return this.text.length;
    let hold = 0;
    for (const s of this.#stop) {
      for (let k = Math.min(s.length - 1, this.text.length); k > 0; k--) {
        if (this.text.endsWith(s.slice(0, k))) {
          hold = Math.max(hold, k);
          break;
        }
      }
    }
    return this.text.length - hold;
  }

  /** Tokens whose text lies entirely within the first `chars` characters of the output. */
  tokensWithin(chars: number): number {
    // #ends is non-decreasing: binary search for the first end beyond `chars`.
    let lo = 0;
    let hi = this.#ends.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.#ends[mid]! <= chars) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}
