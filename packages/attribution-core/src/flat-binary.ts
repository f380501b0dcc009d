/**
 * The flat binary container shared by the span index and the influence model: one header,
 * a section table and 8-byte-aligned typed-array sections, little-endian, CRC-32 over the
 * whole file. Loads with one read; sections decode as zero-copy typed-array views.
 *
 * header (64 bytes):
 *   0  magic (8 ASCII bytes)   8  u32 format version   12 u32 headerBytes (64 + 32 * sections)
 *   16 u32 sections            20 u32 CRC-32 of the whole file with this field zero
 *   24..64 eight u32 header words for the format's own use (counts, flags)
 * section table: per section u32 id, u32 kind (1 int32, 2 uint32, 3 utf-8 JSON, 4 float64),
 *   u64 offset, u64 byteLength, u64 zero. Sections start 8-byte aligned, zero padded.
 */
import { crc32 } from "node:zlib";

const HEADER_BYTES = 64;
const ENTRY_BYTES = 32;
export const HEADER_WORDS = 10;

export const SectionKind = { Int32: 1, Uint32: 2, Json: 3, Float64: 4 } as const;
export type SectionKind = (typeof SectionKind)[keyof typeof SectionKind];

export interface Section {
  id: number;
  kind: SectionKind;
  bytes: Uint8Array;
}

export class FlatFormatError extends Error {
  override name = "FlatFormatError";
}

function assertLittleEndian(): void {
  if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
    throw new Error("flat binary files are little-endian; big-endian hosts are not supported");
  }
}

export function bytesOf(a: Int32Array | Uint32Array | Float64Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

export function jsonBytes(value: unknown): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(value));
}

/** Size in bytes of the encoded file, without encoding it (no checksum pass). */
export function flatByteLength(sections: readonly Section[]): number {
  let offset = HEADER_BYTES + ENTRY_BYTES * sections.length;
  for (const s of sections) offset += ((8 - (offset % 8)) % 8) + s.bytes.byteLength;
  return offset;
}

/** Encode as byte chunks (header first) that share memory with the sections. */
export function encodeFlat(
  magic: string,
  version: number,
  words: readonly number[],
  sections: readonly Section[],
): Uint8Array[] {
  assertLittleEndian();
  if (magic.length !== 8) throw new RangeError("magic must be 8 ASCII characters");
  if (words.length > HEADER_WORDS) throw new RangeError(`at most ${HEADER_WORDS} header words`);
  const headerBytes = HEADER_BYTES + ENTRY_BYTES * sections.length;
  const header = new Uint8Array(headerBytes);
  const dv = new DataView(header.buffer);
  header.set(new TextEncoder().encode(magic), 0);
  dv.setUint32(8, version, true);
  dv.setUint32(12, headerBytes, true);
  dv.setUint32(16, sections.length, true);
  words.forEach((w, i) => {
    dv.setUint32(24 + 4 * i, w, true);
  });
  const parts: Uint8Array[] = [header];
  let offset = headerBytes;
  sections.forEach((s, i) => {
    const pad = (8 - (offset % 8)) % 8;
    if (pad > 0) parts.push(new Uint8Array(pad));
    offset += pad;
    const e = HEADER_BYTES + ENTRY_BYTES * i;
    dv.setUint32(e, s.id, true);
    dv.setUint32(e + 4, s.kind, true);
    dv.setBigUint64(e + 8, BigInt(offset), true);
    dv.setBigUint64(e + 16, BigInt(s.bytes.byteLength), true);
    parts.push(s.bytes);
    offset += s.bytes.byteLength;
  });
  let crc = 0;
  // Skip empty chunks: zlib.crc32 returns 0 (not the running value) for some zero-length
  // views, which made files with an empty section (e.g. an index of no rows) fail to load.
  for (const p of parts) if (p.byteLength > 0) crc = crc32(p, crc);
  dv.setUint32(20, crc, true);
  return parts;
}

export interface DecodedFlat {
  version: number;
  words: number[];
  section(id: number): Uint8Array | undefined;
  need(id: number): Uint8Array;
}

export interface DecodeOptions {
  /** Verify the CRC-32 (one pass over the file, ~0.1 s per 400 MB). Default true. */
  verifyChecksum?: boolean;
}

export function decodeFlat(
  data: Uint8Array,
  magic: string,
  versions: readonly number[],
  options: DecodeOptions = {},
): DecodedFlat {
  assertLittleEndian();
  let buf = data;
  if (buf.byteOffset % 8 !== 0) buf = new Uint8Array(buf); // one copy to align the views
  if (buf.byteLength < HEADER_BYTES) throw new FlatFormatError("truncated header");
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  if (new TextDecoder().decode(buf.subarray(0, 8)) !== magic) {
    throw new FlatFormatError(`not a ${magic} file (bad magic)`);
  }
  const version = dv.getUint32(8, true);
  if (!versions.includes(version)) throw new FlatFormatError(`unsupported format version ${version}`);
  const headerBytes = dv.getUint32(12, true);
  const count = dv.getUint32(16, true);
  if (headerBytes !== HEADER_BYTES + ENTRY_BYTES * count || headerBytes > buf.byteLength) {
    throw new FlatFormatError("corrupt header");
  }
  if (options.verifyChecksum ?? true) {
    let crc = crc32(buf.subarray(0, 20));
    crc = crc32(new Uint8Array(4), crc);
    if (buf.byteLength > 24) crc = crc32(buf.subarray(24), crc);
    if (crc !== dv.getUint32(20, true)) throw new FlatFormatError("checksum mismatch");
  }
  const sections = new Map<number, Uint8Array>();
  for (let i = 0; i < count; i++) {
    const e = HEADER_BYTES + ENTRY_BYTES * i;
    const id = dv.getUint32(e, true);
    const off = Number(dv.getBigUint64(e + 8, true));
    const len = Number(dv.getBigUint64(e + 16, true));
    if (off % 8 !== 0 || off + len > buf.byteLength) throw new FlatFormatError(`corrupt section ${id}`);
    sections.set(id, buf.subarray(off, off + len));
  }
  return {
    version,
    words: Array.from({ length: HEADER_WORDS }, (_, i) => dv.getUint32(24 + 4 * i, true)),
    section: (id) => sections.get(id),
    need(id) {
      const s = sections.get(id);
      if (!s) throw new FlatFormatError(`missing section ${id}`);
      return s;
    },
  };
}

export const asInt32 = (s: Uint8Array) => new Int32Array(s.buffer, s.byteOffset, s.byteLength >>> 2);
export const asUint32 = (s: Uint8Array) => new Uint32Array(s.buffer, s.byteOffset, s.byteLength >>> 2);
export const asFloat64 = (s: Uint8Array) => new Float64Array(s.buffer, s.byteOffset, s.byteLength >>> 3);
export const asJson = <T>(s: Uint8Array) => JSON.parse(new TextDecoder().decode(s)) as T;
