import { CsvError, parse as csvParse } from "csv-parse";
import { DatanetInputError } from "../errors.ts";
import type { ByteSource } from "./byte-source.ts";
import { type ParseLimits, resolveLimits } from "./limits.ts";
import { readLines, type SourceLine } from "./lines.ts";

export type Metadata = Record<string, unknown>;

/** One contribution row as parsed from a submission, before any validation. */
export interface ContributionRow {
  /** 0-based position in the submission (stable order used everywhere downstream). */
  index: number;
  /** 1-based line where the row starts in the file; undefined for JSON row arrays. */
  line?: number;
  text: string;
  label?: string;
  metadata?: Metadata;
}

export const FILE_FORMATS = ["txt", "md", "jsonl", "csv"] as const;
export type FileFormat = (typeof FILE_FORMATS)[number];

export interface ParseOptions {
  limits?: Partial<ParseLimits>;
  /** txt only: `paragraph` (default) = one row per blank-line separated block; `line` = one row per non-empty line. */
  txtMode?: "paragraph" | "line";
}

/** Maps an upload's file name (or extension) to its format; `.markdown` and `.ndjson` are accepted aliases. */
export function formatFromFilename(name: string): FileFormat {
  const ext = name.toLowerCase().split(".").pop() ?? "";
  if (ext === "txt" || ext === "text") return "txt";
  if (ext === "md" || ext === "markdown") return "md";
  if (ext === "jsonl" || ext === "ndjson") return "jsonl";
  if (ext === "csv") return "csv";
  throw new DatanetInputError(
    "UNSUPPORTED_FORMAT",
    `unsupported file type "${name}" (expected .txt, .md, .jsonl or .csv)`,
  );
}

const encoder = new TextEncoder();
const LONE_SURROGATE = /\p{Cs}/u;

class RowChecker {
  private count = 0;
  constructor(private readonly limits: ParseLimits) {}

  /** Validates one row's sizes and assigns its index; `where` names it in messages ("line 7", "row 3"). */
  make(
    where: string,
    loc: { line?: number; row?: number },
    text: string,
    label?: string,
    metadata?: Metadata,
  ): ContributionRow {
    if (this.count >= this.limits.maxRows) {
      throw new DatanetInputError(
        "TOO_MANY_ROWS",
        `${where}: more than the limit of ${this.limits.maxRows} rows`,
        loc,
      );
    }
    // JSON escapes can smuggle in lone surrogates, which have no UTF-8 encoding at all.
    if (LONE_SURROGATE.test(text)) {
      throw new DatanetInputError("INVALID_UTF8", `${where}: text contains a lone UTF-16 surrogate`, loc);
    }
    const bytes = encoder.encode(text).length;
    if (bytes > this.limits.maxRowBytes) {
      throw new DatanetInputError(
        "ROW_TOO_LONG",
        `${where}: row text is ${bytes} bytes, over the limit of ${this.limits.maxRowBytes}`,
        loc,
      );
    }
    if (metadata !== undefined) {
      const metaBytes = encoder.encode(JSON.stringify(metadata)).length;
      if (metaBytes > this.limits.maxMetadataBytes) {
        throw new DatanetInputError(
          "INVALID_ROW",
          `${where}: metadata is ${metaBytes} bytes, over the limit of ${this.limits.maxMetadataBytes}`,
          loc,
        );
      }
    }
    const row: ContributionRow = { index: this.count++, text };
    if (loc.line !== undefined) row.line = loc.line;
    if (label !== undefined) row.label = label;
    if (metadata !== undefined) row.metadata = metadata;
    return row;
  }
}

const isBlank = (s: string): boolean => s.trim().length === 0;

async function* txtRows(lines: AsyncIterable<SourceLine>, check: RowChecker, mode: "paragraph" | "line") {
  let block: string[] = [];
  let startLine = 0;
  for await (const l of lines) {
    if (mode === "line") {
      if (!isBlank(l.text)) yield check.make(`line ${l.line}`, { line: l.line }, l.text.trim());
      continue;
    }
    if (isBlank(l.text)) {
      if (block.length > 0)
        yield check.make(`line ${startLine}`, { line: startLine }, block.join("\n").trim());
      block = [];
      continue;
    }
    if (block.length === 0) startLine = l.line;
    block.push(l.text.trimEnd());
  }
  if (block.length > 0) yield check.make(`line ${startLine}`, { line: startLine }, block.join("\n").trim());
}

const ATX_HEADING = /^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$/;
const FENCE = /^ {0,3}(`{3,}|~{3,})/;

async function* mdRows(lines: AsyncIterable<SourceLine>, check: RowChecker) {
  const headings: string[] = [];
  let block: string[] = [];
  let startLine = 0;
  let fence: string | null = null;
  let frontMatter: "maybe" | "inside" | "done" = "maybe";

  const flush = function* () {
    if (block.length > 0) {
      const text = block.join("\n").trim();
      if (text.length > 0) {
        const meta = headings.length > 0 ? { section: headings.filter(Boolean).join(" > ") } : undefined;
        yield check.make(`line ${startLine}`, { line: startLine }, text, undefined, meta);
      }
    }
    block = [];
  };

  for await (const l of lines) {
    const text = l.text;
    // YAML front matter (`---` on line 1 ... `---`) is file metadata, not contribution text.
    if (frontMatter === "maybe") {
      frontMatter = "done";
      if (text.trim() === "---") {
        frontMatter = "inside";
        continue;
      }
    } else if (frontMatter === "inside") {
      if (text.trim() === "---" || text.trim() === "...") frontMatter = "done";
      continue;
    }
    if (fence !== null) {
      block.push(text);
      if (text.trimStart().startsWith(fence)) fence = null;
      continue;
    }
    const f = FENCE.exec(text);
    if (f) {
      if (block.length === 0) startLine = l.line;
      fence = f[1]!;
      block.push(text);
      continue;
    }
    const h = ATX_HEADING.exec(text);
    if (h) {
      yield* flush();
      const level = h[1]!.length;
      headings.length = level - 1;
      headings[level - 1] = (h[2] ?? "").trim();
      continue;
    }
    if (isBlank(text)) {
      yield* flush();
      continue;
    }
    if (block.length === 0) startLine = l.line;
    block.push(text.trimEnd());
  }
  yield* flush();
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

const JSON_ROW_KEYS = new Set(["text", "label", "metadata"]);

/** Shared rules for a JSON row object (jsonl lines and JSON row arrays). */
function jsonRow(
  value: unknown,
  where: string,
  loc: { line?: number; row?: number },
  check: RowChecker,
  code: "MALFORMED_JSONL" | "INVALID_ROW",
): ContributionRow {
  if (!isPlainObject(value)) {
    throw new DatanetInputError(code, `${where}: expected a JSON object with a "text" field`, loc);
  }
  for (const key of Object.keys(value)) {
    if (!JSON_ROW_KEYS.has(key)) {
      throw new DatanetInputError(
        code,
        `${where}: unknown field "${key}" (allowed: text, label, metadata)`,
        loc,
      );
    }
  }
  const { text, label, metadata } = value;
  if (typeof text !== "string" || isBlank(text)) {
    throw new DatanetInputError(code, `${where}: "text" must be a non-empty string`, loc);
  }
  if (label !== undefined && label !== null && typeof label !== "string") {
    throw new DatanetInputError(code, `${where}: "label" must be a string`, loc);
  }
  if (metadata !== undefined && metadata !== null && !isPlainObject(metadata)) {
    throw new DatanetInputError(code, `${where}: "metadata" must be an object`, loc);
  }
  return check.make(
    where,
    loc,
    text,
    typeof label === "string" ? label : undefined,
    isPlainObject(metadata) ? metadata : undefined,
  );
}

async function* jsonlRows(lines: AsyncIterable<SourceLine>, check: RowChecker) {
  for await (const l of lines) {
    if (isBlank(l.text)) continue;
    let value: unknown;
    try {
      value = JSON.parse(l.text);
    } catch (e) {
      throw new DatanetInputError(
        "MALFORMED_JSONL",
        `line ${l.line}: not valid JSON (${(e as Error).message})`,
        { line: l.line },
        { cause: e },
      );
    }
    yield jsonRow(value, `line ${l.line}`, { line: l.line }, check, "MALFORMED_JSONL");
  }
}

async function* csvRows(lines: AsyncIterable<SourceLine>, check: RowChecker) {
  const parser = csvParse({
    columns: (header: string[]) => {
      // "text"/"label" are matched case-insensitively ("Text" is common); other names are kept as-is.
      const names = header.map((h) => {
        const t = h.trim();
        const lower = t.toLowerCase();
        return lower === "text" || lower === "label" ? lower : t;
      });
      if (!names.includes("text")) {
        throw new DatanetInputError(
          "MISSING_TEXT_COLUMN",
          `line 1: the CSV header has no "text" column (found: ${names.map((n) => JSON.stringify(n)).join(", ") || "nothing"})`,
          { line: 1 },
        );
      }
      for (const name of new Set(names)) {
        if (names.indexOf(name) !== names.lastIndexOf(name)) {
          throw new DatanetInputError("MALFORMED_CSV", `line 1: duplicate column "${name}" in the header`, {
            line: 1,
          });
        }
      }
      return names;
    },
    info: true,
    skip_empty_lines: true,
    relax_column_count: false,
  });
  // Feeds validated UTF-8 text into csv-parse with backpressure; errors (bad byte, size limit) abort the parser.
  const feed = (async () => {
    for await (const l of lines) {
      if (parser.destroyed) break; // the consumer failed (bad header, bad record): stop reading the source
      if (!parser.write(`${l.text}\n`)) {
        await new Promise((r) => {
          parser.once("drain", r);
          parser.once("close", r);
        });
      }
    }
    if (!parser.destroyed) parser.end();
  })();
  feed.catch((e: unknown) => parser.destroy(e as Error));
  try {
    for await (const item of parser as AsyncIterable<{
      record: Record<string, string>;
      info: { lines: number };
    }>) {
      const { record, info } = item;
      // info.lines is the line where the record ends; a quoted multi-line field starts earlier,
      // but the end line is what csv-parse can report and what editors jump to.
      const line = info.lines;
      const where = `line ${line}`;
      const text = record["text"] ?? "";
      if (isBlank(text)) throw new DatanetInputError("INVALID_ROW", `${where}: empty "text" value`, { line });
      let label: string | undefined;
      let metadata: Metadata | undefined;
      for (const [k, v] of Object.entries(record)) {
        if (k === "text") continue;
        if (k === "label") {
          if (v !== "") label = v;
          continue;
        }
        metadata ??= {};
        metadata[k] = v;
      }
      yield check.make(where, { line }, text, label, metadata);
    }
  } catch (e) {
    if (e instanceof DatanetInputError) throw e;
    if (e instanceof CsvError) {
      const line = (e as unknown as { lines?: number }).lines;
      throw new DatanetInputError(
        "MALFORMED_CSV",
        `line ${line ?? "?"}: ${e.message}`,
        line === undefined ? {} : { line },
        { cause: e },
      );
    }
    // csv-parse wraps errors thrown by the `columns` callback; unwrap ours.
    const cause = (e as { cause?: unknown }).cause;
    if (cause instanceof DatanetInputError) throw cause;
    throw e;
  } finally {
    if (!parser.destroyed) parser.destroy();
    await feed.catch(() => {});
  }
}

/**
 * Streams the rows of a file. Rows come out as they are parsed, so a caller that writes them
 * somewhere must do so inside a transaction it can roll back: a later line may still be an error.
 * `parseContributionFile` is the all-or-nothing wrapper most callers want.
 */
export async function* streamContributionFile(
  source: ByteSource,
  format: FileFormat,
  options: ParseOptions = {},
): AsyncGenerator<ContributionRow> {
  const limits = resolveLimits(options.limits);
  const check = new RowChecker(limits);
  const lines = readLines(source, limits);
  let n = 0;
  let gen: AsyncGenerator<ContributionRow>;
  switch (format) {
    case "txt":
      gen = txtRows(lines, check, options.txtMode ?? "paragraph");
      break;
    case "md":
      gen = mdRows(lines, check);
      break;
    case "jsonl":
      gen = jsonlRows(lines, check);
      break;
    case "csv":
      gen = csvRows(lines, check);
      break;
    default:
      throw new DatanetInputError("UNSUPPORTED_FORMAT", `unsupported format "${String(format)}"`);
  }
  for await (const row of gen) {
    n++;
    yield row;
  }
  if (n === 0) throw new DatanetInputError("EMPTY_FILE", "the file contains no rows");
}

/**
 * Parses a whole file and returns its rows only if every line is valid: a file with any error
 * yields nothing (throws a DatanetInputError naming the line). Memory is bounded by `maxFileBytes`.
 */
export async function parseContributionFile(
  source: ByteSource,
  format: FileFormat,
  options: ParseOptions = {},
): Promise<ContributionRow[]> {
  const rows: ContributionRow[] = [];
  for await (const row of streamContributionFile(source, format, options)) rows.push(row);
  return rows;
}

/**
 * Validates a JSON body that is an array of `{ text, label?, metadata? }` (already parsed by the
 * HTTP layer). Errors name the 1-based row. All-or-nothing like the file parsers.
 */
export function parseJsonRows(value: unknown, options: Pick<ParseOptions, "limits"> = {}): ContributionRow[] {
  const limits = resolveLimits(options.limits);
  if (!Array.isArray(value)) {
    throw new DatanetInputError("MALFORMED_JSON", "expected a JSON array of rows");
  }
  if (value.length === 0) throw new DatanetInputError("EMPTY_FILE", "the submission contains no rows");
  if (value.length > limits.maxRows) {
    throw new DatanetInputError(
      "TOO_MANY_ROWS",
      `${value.length} rows, more than the limit of ${limits.maxRows}`,
    );
  }
  const check = new RowChecker(limits);
  return value.map((v, i) => jsonRow(v, `row ${i + 1}`, { row: i + 1 }, check, "INVALID_ROW"));
}
