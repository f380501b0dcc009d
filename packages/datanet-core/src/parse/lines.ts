import { DatanetInputError } from "../errors.ts";
import { type ByteSource, byteChunks } from "./byte-source.ts";
import type { ParseLimits } from "./limits.ts";
import { firstInvalidUtf8 } from "./utf8.ts";

export interface SourceLine {
  /** The line without its terminator (`\n` or `\r\n`). */
  text: string;
  /** 1-based line number. */
  line: number;
  /** Byte offset of the line's first byte in the file. */
  byteOffset: number;
}

const fatalDecoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

function decodeLine(bytes: Uint8Array, line: number, byteOffset: number): string {
  try {
    return fatalDecoder.decode(bytes);
  } catch {
    const at = firstInvalidUtf8(bytes);
    const offset = byteOffset + Math.max(at, 0);
    const bad = bytes[Math.max(at, 0)] ?? 0;
    throw new DatanetInputError(
      "INVALID_UTF8",
      `line ${line}: invalid UTF-8 byte 0x${bad.toString(16).padStart(2, "0")} at byte offset ${offset}`,
      { line, byteOffset: offset },
    );
  }
}

function concat(parts: Uint8Array[], total: number): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  const out = new Uint8Array(total);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/**
 * Splits a byte stream into strictly-decoded UTF-8 lines. Splitting on 0x0A before decoding is safe
 * because that byte never occurs inside a multi-byte UTF-8 sequence. Memory is bounded by one chunk
 * plus one line (`maxRowBytes`); the total is bounded by `maxFileBytes`, checked as bytes arrive so an
 * oversized upload is refused without reading it to the end. A leading UTF-8 BOM is dropped.
 */
export async function* readLines(
  source: ByteSource,
  limits: Pick<ParseLimits, "maxFileBytes" | "maxRowBytes">,
): AsyncGenerator<SourceLine> {
  let total = 0;
  let lineNo = 1;
  let lineStart = 0; // byte offset of the pending line
  let pending: Uint8Array[] = [];
  let pendingLen = 0;
  let first = true;

  const emit = (bytes: Uint8Array): SourceLine => {
    let end = bytes.length;
    if (end > 0 && bytes[end - 1] === 0x0d) end--;
    const text = decodeLine(end === bytes.length ? bytes : bytes.subarray(0, end), lineNo, lineStart);
    return { text, line: lineNo, byteOffset: lineStart };
  };
  const tooLong = (): DatanetInputError =>
    new DatanetInputError(
      "ROW_TOO_LONG",
      `line ${lineNo}: longer than the limit of ${limits.maxRowBytes} bytes`,
      { line: lineNo, byteOffset: lineStart },
    );

  for await (let chunk of byteChunks(source)) {
    if (first && chunk.length > 0) {
      first = false;
      if (chunk.length >= 3 && chunk[0] === 0xef && chunk[1] === 0xbb && chunk[2] === 0xbf) {
        chunk = chunk.subarray(3);
        total += 3;
        lineStart = 3;
      }
    }
    if (total + chunk.length > limits.maxFileBytes) {
      throw new DatanetInputError(
        "FILE_TOO_LARGE",
        `file is larger than the limit of ${limits.maxFileBytes} bytes (exceeded at line ${lineNo})`,
        { line: lineNo, byteOffset: limits.maxFileBytes },
      );
    }
    const chunkBase = total;
    total += chunk.length;
    let from = 0;
    for (;;) {
      const nl = chunk.indexOf(0x0a, from);
      if (nl < 0) break;
      const piece = chunk.subarray(from, nl);
      if (pendingLen + piece.length > limits.maxRowBytes) throw tooLong();
      pending.push(piece);
      pendingLen += piece.length;
      yield emit(concat(pending, pendingLen));
      pending = [];
      pendingLen = 0;
      lineNo++;
      from = nl + 1;
      lineStart = chunkBase + from;
    }
    if (from < chunk.length) {
      const rest = chunk.subarray(from);
      if (pendingLen + rest.length > limits.maxRowBytes) throw tooLong();
      // Copy: the producer may reuse its buffer after we ask for the next chunk.
      pending.push(rest.slice());
      pendingLen += rest.length;
    }
  }
  if (pendingLen > 0) yield emit(concat(pending, pendingLen));
}
