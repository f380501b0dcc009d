// Shared by bench/peers*.ts: result shapes, statistics, process memory.
import { readFileSync } from "node:fs";
import { loadavg } from "node:os";

export interface DecodeResult {
  case: string;
  /** prompt tokens per row before the timed steps (`--context`; 8 by default) */
  context: number;
  batch: number;
  adapters: number;
  /** "ours / peer" weight formats, e.g. "int8 / Q8_0". */
  weights: string;
  /** tokens/s, medians over rounds */
  ours: number;
  peer: number;
  /** ours / peer */
  ratio: number;
  /** llama.cpp thread count of the reported (best) peer figure */
  peerThreads: number;
  /** our intra-op threads and spin setting (RuntimeOptions.spinWait) of the reported (best) figure */
  oursThreads: number;
  oursSpin: boolean;
  /** Where our reported configuration's decode steps ran: onnxruntime or the native decode addon. */
  oursPath: "native" | "onnxruntime";
  /** process CPU time per token of the reported configurations (medians; all threads) */
  oursCpuMsPerToken: number;
  peerCpuMsPerToken: number;
  /** peer / ours CPU per token: > 1 = ours needs less CPU for a token */
  cpuRatio: number;
  oursRounds: number[];
  /** tok/s and CPU ms per token of each of our configurations tried ("2t sleep", "1t sleep", ...) */
  oursMedianByConfig: Record<string, number>;
  oursCpuMsByConfig: Record<string, number>;
  peerRounds: number[];
  peerMedianByThreads: Record<number, number>;
}

export interface RssResult {
  weights: string;
  /** peak RSS of the process, MiB */
  ours: number;
  peer: number;
  ratio: number;
  /** RSS after the prompt and 16 decode steps (steady state, the load-time peak gone), MiB */
  oursAfterDecode: number;
  peerAfterDecode: number;
}

export interface SaResult {
  input: string;
  bytes: number;
  /** The builder the platform uses (and `ours` measures): the native addon when built, else TypeScript. */
  oursBuilder: "native" | "typescript";
  /** bytes (= tokens) per second, medians over rounds */
  ours: number | null;
  libdivsufsort: number | null;
  /** ours / libdivsufsort */
  ratio: number | null;
  /** (peak RSS during the build - RSS with the input loaded) / n */
  oursBytesPerToken: number | null;
  libdivsufsortBytesPerToken: number | null;
  /** The TypeScript builder (the fallback), same texts and rounds. */
  oursTypescript: number | null;
  ratioTypescript: number | null;
  oursTypescriptBytesPerToken: number | null;
  /** Threads of our builds (libdivsufsort is single-threaded). */
  threads: number;
  /** Every one of our arrays equals libdivsufsort's. */
  identical: boolean | null;
  note?: string;
}

export const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length === 0 ? Number.NaN : s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

/** The value after `--name` in `args`, or `dflt`. */
export const argValue = (args: readonly string[], name: string, dflt: string): string => {
  const i = args.indexOf(name);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : dflt;
};

export const round = (x: number, d = 2): number => Math.round(x * 10 ** d) / 10 ** d;

export const loadAverage = (): number => round(loadavg()[0]!, 1);

/**
 * CPU time (ms) this process's main thread has run: the first field of /proc/self/schedstat (ns;
 * the thread-group leader only, not the worker threads). Unlike the event-loop delay, this hardly
 * depends on how busy the rest of the machine is: it is the work the loop itself has to do.
 * Undefined where /proc has no schedstat.
 */
export function mainThreadCpuMs(): number | undefined {
  try {
    return Number(readFileSync("/proc/self/schedstat", "utf8").split(" ")[0]) / 1e6;
  } catch {
    return undefined;
  }
}

/** VmRSS and VmHWM (peak) of this process, in bytes (Linux /proc). */
export function processMemory(): { rss: number; peak: number } {
  const status = readFileSync("/proc/self/status", "utf8");
  const kb = (key: string) =>
    Number(new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? Number.NaN);
  return { rss: kb("VmRSS") * 1024, peak: kb("VmHWM") * 1024 };
}
