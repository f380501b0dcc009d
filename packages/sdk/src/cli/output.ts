import cliProgress from "cli-progress";
import Table from "cli-table3";
import { OpenLedgerError } from "../errors.ts";
import type { OnProgress, Progress } from "../http.ts";

/** Exit codes (documented in the package README). */
export const EXIT = {
  ok: 0,
  /** The platform or the chain refused (4xx, a revert, a failed job). */
  refused: 1,
  /** Bad command line. */
  usage: 2,
  /** A service or the chain does not answer. */
  unreachable: 3,
  /** A wait ran out. */
  timeout: 4,
  /** No key, a wrong password, a key that may not be used here. */
  key: 5,
} as const;

const KEY_CODES = new Set([
  "KEY_REQUIRED",
  "KEY_INVALID",
  "KEY_PASSWORD_REQUIRED",
  "WRONG_PASSWORD",
  "KEYSTORE_NOT_FOUND",
  "KEYSTORE_INVALID",
  "NOT_DEV_CHAIN",
]);

export function exitCodeOf(err: unknown): number {
  if (!(err instanceof OpenLedgerError)) return EXIT.refused;
  if (err.code === "USAGE") return EXIT.usage;
  if (err.code === "UNREACHABLE" || err.code === "NO_ADDRESSES") return EXIT.unreachable;
  if (err.code === "TIMEOUT") return EXIT.timeout;
  if (KEY_CODES.has(err.code)) return EXIT.key;
  return EXIT.refused;
}

/** JSON with bigints as decimal strings. */
export function toJson(value: unknown): string {
  return JSON.stringify(value, (_k, v) => (typeof v === "bigint" ? v.toString() : v), 2);
}

export class Output {
  constructor(readonly json: boolean) {}

  /** The command's result: `data` as JSON with --json, else the human rendering. */
  result(data: unknown, human: () => void): void {
    if (this.json) process.stdout.write(`${toJson(data)}\n`);
    else human();
  }

  line(text: string): void {
    process.stdout.write(`${text}\n`);
  }

  /** Progress notes go to stderr, so stdout stays the result (pipe-able, --json clean). */
  note(text: string): void {
    if (!this.json) process.stderr.write(`${text}\n`);
  }

  table(head: string[], rows: (string | number | bigint | null | undefined)[][]): void {
    const t = new Table({ head, style: { head: process.stdout.isTTY ? ["cyan"] : [], border: [] } });
    for (const r of rows) t.push(r.map((c) => (c === null || c === undefined ? "-" : String(c))));
    this.line(t.toString());
  }

  /** Key/value pairs as a two-column table. */
  fields(pairs: [string, unknown][]): void {
    const t = new Table({ style: { head: [], border: [] } });
    for (const [k, v] of pairs) t.push({ [k]: v === null || v === undefined ? "-" : String(v) });
    this.line(t.toString());
  }

  /**
   * A progress bar on stderr for one stage of a long step (upload bytes, rows validated, index
   * percent, fine-tune steps). On a terminal it redraws; otherwise (CI, pipes) nothing is drawn and the
   * stage's last figure is printed once when it ends. Silent with --json.
   */
  progress(label: string): { onProgress: OnProgress; stop: () => void } {
    const tty = process.stderr.isTTY && !this.json;
    let bar: cliProgress.SingleBar | undefined;
    let last: Progress | undefined;
    const fmt = (p: Progress) =>
      (p.unit === "bytes"
        ? `${(p.done / 1e6).toFixed(2)}/${((p.total ?? 0) / 1e6).toFixed(2)} MB`
        : `${p.done}/${p.total ?? "?"} ${p.unit}`) + (p.detail ? ` | ${p.detail}` : "");
    return {
      onProgress: (p) => {
        last = p;
        if (!tty) return;
        if (!bar) {
          bar = new cliProgress.SingleBar(
            {
              format: `${label.padEnd(10)} [{bar}] {percentage}% | {figures} {stage}`,
              hideCursor: true,
              clearOnComplete: false,
              stream: process.stderr,
            },
            cliProgress.Presets.shades_classic,
          );
          bar.start(p.total ?? 100, 0, { figures: "", stage: "" });
        }
        if (p.total !== null) bar.setTotal(p.total);
        bar.update(p.done, { figures: fmt(p), stage: p.stage.includes(":") ? p.stage.split(":")[1] : "" });
      },
      stop: () => {
        bar?.stop();
        if (!tty && !this.json && last) process.stderr.write(`${label}: ${fmt(last)}\n`);
      },
    };
  }

  /** Runs `fn` with a progress bar, stopping the bar whatever happens. */
  async withProgress<T>(label: string, fn: (onProgress: OnProgress) => Promise<T>): Promise<T> {
    const p = this.progress(label);
    try {
      return await fn(p.onProgress);
    } finally {
      p.stop();
    }
  }

  error(err: unknown): void {
    if (err instanceof OpenLedgerError) {
      if (this.json) process.stderr.write(`${toJson({ error: err.toJSON() })}\n`);
      else process.stderr.write(`error ${err.code}: ${err.message}\n`);
    } else {
      const e = err as Error;
      if (this.json) process.stderr.write(`${toJson({ error: { code: "INTERNAL", message: e.message } })}\n`);
      else process.stderr.write(`error: ${e.stack ?? String(err)}\n`);
    }
  }
}
