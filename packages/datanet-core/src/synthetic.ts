/**
 * Deterministic synthetic contributions for tests and benchmarks: plausible English paragraphs
 * from a seeded grammar, and the near-duplicate edits a redundant contributor would make (word
 * substitutions/insertions/deletions, sentence shuffles, case/whitespace/punctuation changes).
 * Same seed, same text, on every machine.
 */

/** mulberry32: small, fast, good enough for test data. */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  next(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  pick<T>(arr: readonly T[]): T {
    return arr[this.int(arr.length)]!;
  }
  shuffle<T>(arr: T[]): T[] {
    for (let i = arr.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      [arr[i], arr[j]] = [arr[j]!, arr[i]!];
    }
    return arr;
  }
}

const w = (s: string): readonly string[] => Object.freeze(s.trim().split(/\s+/));

const NOUNS = w(`
  model dataset contributor validator network ledger token reward stake protocol adapter engine
  farmer harvest river valley forest village market bridge harbor engineer teacher student doctor
  patient hospital library museum garden kitchen recipe bakery orchard vineyard climate storm
  rainfall drought glacier coastline island mountain desert canyon satellite telescope planet comet
  orbit signal sensor battery circuit factory warehouse shipment invoice budget contract lawyer
  court judge council mayor citizen election campaign newspaper journalist editor novel poem author
  painter gallery concert orchestra violin festival stadium athlete coach tournament league
  algorithm database server cluster query index cache compiler function variable pipeline
  language grammar dialect translation dictionary archive manuscript chapter theorem proof equation
  molecule protein enzyme cell tissue vaccine virus bacteria experiment laboratory microscope sample
  bicycle railway station airport passenger ticket highway tunnel vehicle engineer mechanic workshop
  neighbor family grandmother childhood holiday journey letter photograph memory winter summer autumn
  spring morning evening midnight coffee bread cheese soup lantern window roof chimney staircase
`);
const ADJECTIVES = w(`
  quiet ancient modern careful rapid gentle bright narrow broad fragile sturdy hidden famous local
  remote rural urban coastal northern southern eastern western digital analog precise rough smooth
  heavy light early late generous strict curious patient anxious brave tired eager humble proud
  efficient reliable noisy silent colorful pale dark golden silver wooden stone frozen humid dry
  complex simple elegant clumsy steady volatile scarce abundant fresh stale crowded empty private
  public formal casual seasonal annual weekly distant nearby hollow solid transparent opaque
  experimental traditional practical theoretical hungry thirsty wealthy modest ambitious reluctant
`);
const VERBS = w(`
  builds measures repairs studies describes records collects reviews explains protects improves
  inspects designs predicts compares replaces delivers publishes translates evaluates organizes
  supports tracks cleans paints guards visits crosses follows questions answers teaches learns
  trains tests verifies rejects accepts shares stores sells buys grows harvests cooks bakes carries
  watches observes imagines remembers forgets discovers invents defends attacks approves funds
  schedules cancels postpones announces explores maps surveys calibrates compiles indexes caches
`);
const ADVERBS = w(`
  quickly slowly carefully quietly openly rarely often suddenly gradually finally usually barely
  nearly eagerly patiently boldly gently firmly loosely warmly coldly proudly calmly wisely
`);
const PREPOSITIONS = w(`in near behind beside across under over along through around beyond within toward`);
const TIMES = w(`
  yesterday today tonight recently afterwards meanwhile eventually sometimes nowadays annually
`);
const NAMES = w(`
  Amara Bruno Chen Dalia Emeka Farah Goran Hana Ivo Jun Kofi Lena Mateo Nia Omar Priya Quinn Rosa
  Sven Tariq Uma Viktor Wen Ximena Yusuf Zora
`);
const CITIES = w(`
  Lisbon Nairobi Osaka Quito Tallinn Hanoi Accra Bergen Cusco Dakar Krakow Lagos Lyon Medan Perth
`);
const CONNECTORS = w(`However Moreover Therefore Meanwhile Afterwards Instead Still Indeed Later Also`);

function cap(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}

/** One sentence as a list of words (last word carries the final punctuation). */
export function sentence(rng: Rng): string[] {
  const n = () => rng.pick(NOUNS);
  const a = () => rng.pick(ADJECTIVES);
  const v = () => rng.pick(VERBS);
  const t = rng.int(9);
  let s: string;
  switch (t) {
    case 0:
      s = `the ${a()} ${n()} ${v()} the ${n()} ${rng.pick(PREPOSITIONS)} the ${a()} ${n()}`;
      break;
    case 1:
      s = `${rng.pick(NAMES)} ${rng.pick(ADVERBS)} ${v()} a ${a()} ${n()} ${rng.pick(PREPOSITIONS)} ${rng.pick(CITIES)}`;
      break;
    case 2:
      s = `${rng.pick(TIMES)} every ${n()} ${v()} its own ${n()} and ${v()} the ${a()} ${n()}`;
      break;
    case 3:
      s = `${rng.pick(CONNECTORS).toLowerCase()} the ${n()} of the ${a()} ${n()} ${v()} ${rng.int(90) + 2} ${n()}s ${rng.pick(TIMES)}`;
      break;
    case 4:
      s = `a ${a()} ${n()} from ${rng.pick(CITIES)} ${v()} the ${n()} while the ${n()} ${rng.pick(ADVERBS)} ${v()} a ${a()} ${n()}`;
      break;
    case 5:
      s = `${rng.pick(NAMES)} said that the ${n()} ${v()} more ${n()}s than the ${a()} ${n()} ${rng.pick(PREPOSITIONS)} ${rng.pick(CITIES)}`;
      break;
    case 6:
      s = `when the ${n()} is ${a()} the ${n()} ${rng.pick(ADVERBS)} ${v()} the ${a()} ${n()}`;
      break;
    case 7:
      s = `nobody ${v()} a ${a()} ${n()} ${rng.pick(PREPOSITIONS)} a ${a()} ${n()} ${rng.pick(TIMES)}`;
      break;
    default:
      s = `the ${n()} and the ${n()} ${v()} ${rng.pick(ADVERBS)} ${rng.pick(PREPOSITIONS)} the ${a()} ${n()} of ${rng.pick(NAMES)}`;
  }
  const words = s.split(" ");
  words[0] = cap(words[0]!);
  const end = rng.int(10) === 0 ? "!" : rng.int(8) === 0 ? "?" : ".";
  if (rng.int(4) === 0 && words.length > 6) words[Math.floor(words.length / 2)] += ",";
  words[words.length - 1] += end;
  return words;
}

/** A paragraph: a list of sentences, each a list of words. */
export function paragraph(rng: Rng, minSentences = 2, maxSentences = 6): string[][] {
  const k = minSentences + rng.int(maxSentences - minSentences + 1);
  return Array.from({ length: k }, () => sentence(rng));
}

export function render(p: string[][]): string {
  return p.map((s) => s.join(" ")).join(" ");
}

export type VariantKind =
  | "edit"
  | "shuffle"
  | "case_whitespace"
  | "shuffle_edit_case"
  | "homoglyph"
  | "accents";

/** Cyrillic and Greek letters that look like Latin ones (what a copier swaps in to dodge a filter). */
const LOOKALIKE: Record<string, string[]> = {
  a: ["а", "α"],
  c: ["с"],
  e: ["е"],
  i: ["і", "ı"],
  j: ["ј"],
  o: ["о", "ο"],
  p: ["р", "ρ"],
  s: ["ѕ"],
  x: ["х"],
  y: ["у"],
  A: ["А", "Α"],
  B: ["В", "Β"],
  E: ["Е", "Ε"],
  H: ["Н", "Η"],
  K: ["К", "Κ"],
  M: ["М", "Μ"],
  O: ["О", "Ο"],
  P: ["Р", "Ρ"],
  T: ["Т", "Τ"],
  X: ["Х", "Χ"],
};
const COMBINING_ACCENTS = ["\u0301", "\u0300", "\u0308", "\u0302", "\u0303"];

/** Swaps about `share` of the letters that have a look-alike for one (Cyrillic, Greek). */
export function homoglyphs(rng: Rng, text: string, share = 0.6): string {
  return [...text].map((c) => (LOOKALIKE[c] && rng.next() < share ? rng.pick(LOOKALIKE[c]!) : c)).join("");
}

/** A combining accent on every letter ("a" -> "á", as combining marks). */
export function accentEveryLetter(rng: Rng, text: string): string {
  return [...text].map((c) => (/[A-Za-z]/.test(c) ? c + rng.pick(COMBINING_ACCENTS) : c)).join("");
}

/** A small-edit near-duplicate of `p`: about one word edit per `wordsPerEdit` words (at least one). */
export function editWords(rng: Rng, p: string[][], wordsPerEdit = 25): string[][] {
  const out = p.map((s) => s.slice());
  const total = out.reduce((n, s) => n + s.length, 0);
  const edits = 1 + Math.floor(total / wordsPerEdit);
  for (let e = 0; e < edits; e++) {
    const s = out[rng.int(out.length)]!;
    const i = rng.int(s.length - 1); // never touch the last word (it carries the punctuation)
    const op = rng.int(3);
    if (op === 0) s[i] = rng.pick(rng.int(2) === 0 ? ADJECTIVES : NOUNS);
    else if (op === 1) s.splice(i + 1, 0, rng.pick(ADVERBS));
    else if (s.length > 4) s.splice(i, 1);
  }
  return out;
}

export function shuffleSentences(rng: Rng, p: string[][]): string[][] {
  if (p.length < 2) return p.map((s) => s.slice());
  const out = p.map((s) => s.slice());
  const before = out.map((s) => s.join(" ")).join("|");
  for (let tries = 0; tries < 5; tries++) {
    rng.shuffle(out);
    if (out.map((s) => s.join(" ")).join("|") !== before) break;
  }
  return out;
}

/** Case, whitespace and punctuation noise that normalization removes. */
export function caseWhitespace(rng: Rng, text: string): string {
  const mode = rng.int(4);
  let t =
    mode === 0
      ? text.toUpperCase()
      : mode === 1
        ? text.toLowerCase()
        : text.replace(/\b\w/g, (c) => c.toUpperCase());
  t = t.replace(/ /g, () =>
    rng.int(6) === 0 ? "  " : rng.int(12) === 0 ? "\n" : rng.int(20) === 0 ? " \t " : " ",
  );
  if (rng.int(2) === 0) t = `  ${t}\n`;
  if (rng.int(2) === 0) t = t.replace(/\./g, " ...");
  return t;
}

export function makeVariant(rng: Rng, p: string[][], kind: VariantKind): string {
  switch (kind) {
    case "edit":
      return render(editWords(rng, p));
    case "shuffle":
      return render(shuffleSentences(rng, p));
    case "case_whitespace":
      return caseWhitespace(rng, render(p));
    case "shuffle_edit_case":
      return caseWhitespace(rng, render(editWords(rng, shuffleSentences(rng, p))));
    case "homoglyph":
      return homoglyphs(rng, render(editWords(rng, p)));
    case "accents":
      return accentEveryLetter(rng, render(p));
  }
}
