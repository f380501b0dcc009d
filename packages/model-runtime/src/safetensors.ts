import { closeSync, openSync, readSync } from "node:fs";
import { open, readFile, writeFile } from "node:fs/promises";
import { ModelRuntimeError } from "./errors.ts";

/**
 * safetensors: 8-byte little-endian header length, a JSON header
 * `{name: {dtype, shape, data_offsets: [begin, end]}, __metadata__?: {...}}`, then raw
 * little-endian tensor bytes. Everything is decoded to f32 on load (f16 and bf16 are
 * widened) because the runtime computes in f32.
 */
export type SafetensorsDtype = "F32" | "F16" | "BF16";

export interface Tensor {
  shape: number[];
  data: Float32Array;
}

export interface SafetensorsFile {
  tensors: Map<string, Tensor>;
  metadata: Record<string, string>;
}

const BYTES: Record<SafetensorsDtype, number> = { F32: 4, F16: 2, BF16: 2 };

interface TensorEntry {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  /** Byte offset from the start of the file, element count. */
  start: number;
  count: number;
}

/** Parses and checks the header: each tensor's dtype, shape and byte range. */
function parseHeader(
  headerBytes: Uint8Array,
  fileLength: number,
): { entries: TensorEntry[]; metadata: Record<string, string> } {
  const view = new DataView(headerBytes.buffer, headerBytes.byteOffset, headerBytes.byteLength);
  if (headerBytes.byteLength < 8 || fileLength < 8)
    throw invalid("file shorter than its 8-byte header length");
  const headerLen = Number(view.getBigUint64(0, true));
  if (headerLen > fileLength - 8) throw invalid(`header length ${headerLen} exceeds file size`);
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(new TextDecoder().decode(headerBytes.subarray(8, 8 + headerLen)));
  } catch (err) {
    throw invalid(`header is not JSON: ${(err as Error).message}`);
  }
  const dataStart = 8 + headerLen;
  const dataLen = fileLength - dataStart;
  const entries: TensorEntry[] = [];
  let metadata: Record<string, string> = {};
  for (const [name, entry] of Object.entries(header)) {
    if (name === "__metadata__") {
      metadata = (entry ?? {}) as Record<string, string>;
      continue;
    }
    const e = entry as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    const dtype = e.dtype as SafetensorsDtype;
    if (!(dtype in BYTES)) throw invalid(`tensor ${name}: unsupported dtype ${String(e.dtype)}`);
    const shape = e.shape;
    const offsets = e.data_offsets;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0)) {
      throw invalid(`tensor ${name}: bad shape ${JSON.stringify(shape)}`);
    }
    if (!Array.isArray(offsets) || offsets.length !== 2) throw invalid(`tensor ${name}: bad data_offsets`);
    const [begin, end] = offsets as [number, number];
    const count = shape.reduce((a: number, b: number) => a * b, 1);
    if (end - begin !== count * BYTES[dtype] || begin < 0 || end > dataLen) {
      throw invalid(
        `tensor ${name}: data_offsets [${begin}, ${end}] do not fit shape ${JSON.stringify(shape)}`,
      );
    }
    entries.push({ name, dtype, shape: [...shape], start: dataStart + begin, count });
  }
  return { entries, metadata };
}

export function parseSafetensors(bytes: Uint8Array): SafetensorsFile {
  const { entries, metadata } = parseHeader(bytes, bytes.byteLength);
  const tensors = new Map<string, Tensor>();
  for (const e of entries)
    tensors.set(e.name, { shape: e.shape, data: decode(bytes, e.start, e.count, e.dtype) });
  return { tensors, metadata };
}

/**
 * Reads only the header; each tensor's `data` is read from the file when accessed (and not
 * kept), so a consumer that uses each tensor once — building the ONNX graph, which hands the
 * weights to onnxruntime — never holds more than one tensor of the model in JS at a time.
 */
export async function readSafetensorsLazy(path: string): Promise<SafetensorsFile> {
  const fh = await open(path, "r");
  let headerBytes: Uint8Array;
  let size: number;
  try {
    size = (await fh.stat()).size;
    const lenBuf = new Uint8Array(8);
    await fh.read(lenBuf, 0, 8, 0);
    const headerLen = size >= 8 ? Number(new DataView(lenBuf.buffer).getBigUint64(0, true)) : 0;
    if (headerLen > size - 8) throw invalid(`header length ${headerLen} exceeds file size`);
    headerBytes = new Uint8Array(8 + headerLen);
    await fh.read(headerBytes, 0, headerBytes.length, 0);
  } finally {
    await fh.close();
  }
  const { entries, metadata } = parseHeader(headerBytes, size);
  const tensors = new Map<string, Tensor>();
  for (const e of entries) {
    tensors.set(e.name, {
      shape: e.shape,
      get data(): Float32Array {
        const bytes = new Uint8Array(e.count * BYTES[e.dtype]);
        const fd = openSync(path, "r");
        try {
          let done = 0;
          while (done < bytes.length) done += readSync(fd, bytes, done, bytes.length - done, e.start + done);
        } finally {
          closeSync(fd);
        }
        return decode(bytes, 0, e.count, e.dtype);
      },
    });
  }
  return { tensors, metadata };
}

export async function readSafetensors(path: string): Promise<SafetensorsFile> {
  const bytes = await readFile(path);
  return parseSafetensors(bytes);
}

export function serializeSafetensors(
  tensors: Map<string, Tensor> | Record<string, Tensor>,
  options: { dtype?: SafetensorsDtype; metadata?: Record<string, string> } = {},
): Uint8Array {
  const dtype = options.dtype ?? "F32";
  const entries = tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors);
  const header: Record<string, unknown> = {};
  if (options.metadata) header["__metadata__"] = options.metadata;
  let offset = 0;
  for (const [name, t] of entries) {
    const count = t.shape.reduce((a, b) => a * b, 1);
    if (count !== t.data.length) throw invalid(`tensor ${name}: shape does not match data length`);
    const size = count * BYTES[dtype];
    header[name] = { dtype, shape: t.shape, data_offsets: [offset, offset + size] };
    offset += size;
  }
  let headerBytes = new TextEncoder().encode(JSON.stringify(header));
  // Pad the header with spaces so tensor data starts 8-byte aligned (as the reference writer does).
  const pad = (8 - (headerBytes.byteLength % 8)) % 8;
  if (pad > 0) headerBytes = new TextEncoder().encode(JSON.stringify(header) + " ".repeat(pad));
  const out = new Uint8Array(8 + headerBytes.byteLength + offset);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(headerBytes.byteLength), true);
  out.set(headerBytes, 8);
  let pos = 8 + headerBytes.byteLength;
  for (const [, t] of entries) {
    encode(t.data, out, pos, dtype);
    pos += t.data.length * BYTES[dtype];
  }
  return out;
}

export async function writeSafetensors(
  path: string,
  tensors: Map<string, Tensor> | Record<string, Tensor>,
  options: { dtype?: SafetensorsDtype; metadata?: Record<string, string> } = {},
): Promise<void> {
  await writeFile(path, serializeSafetensors(tensors, options));
}

function decode(bytes: Uint8Array, start: number, count: number, dtype: SafetensorsDtype): Float32Array {
  if (dtype === "F32" && start === 0 && bytes.byteOffset === 0 && bytes.byteLength === count * 4) {
    return new Float32Array(bytes.buffer, 0, count); // a buffer read for this tensor alone: no copy
  }
  const out = new Float32Array(count);
  if (dtype === "F32") {
    // Copy through a byte view: the source offset need not be 4-byte aligned.
    new Uint8Array(out.buffer).set(bytes.subarray(start, start + count * 4));
    return out;
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset + start, count * 2);
  if (dtype === "BF16") {
    const u32 = new Uint32Array(out.buffer);
    for (let i = 0; i < count; i++) u32[i] = view.getUint16(i * 2, true) << 16;
    return out;
  }
  for (let i = 0; i < count; i++) out[i] = halfToFloat(view.getUint16(i * 2, true));
  return out;
}

function encode(data: Float32Array, out: Uint8Array, pos: number, dtype: SafetensorsDtype): void {
  if (dtype === "F32") {
    out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), pos);
    return;
  }
  const view = new DataView(out.buffer, out.byteOffset + pos, data.length * 2);
  if (dtype === "BF16") {
    const u32 = new Uint32Array(data.buffer, data.byteOffset, data.length);
    for (let i = 0; i < data.length; i++) {
      const x = u32[i]!;
      // round to nearest even on the dropped 16 bits
      view.setUint16(i * 2, ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff, true);
    }
    return;
  }
  for (let i = 0; i < data.length; i++) view.setUint16(i * 2, floatToHalf(data[i]!), true);
}

export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 0x1f) return frac ? Number.NaN : sign * Number.POSITIVE_INFINITY;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

const F32 = new Float32Array(1);
const U32 = new Uint32Array(F32.buffer);

export function floatToHalf(value: number): number {
  F32[0] = value;
  const x = U32[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && half & 1)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && half & 1)) half++;
  e = half;
  return sign | e;
}

function invalid(message: string): ModelRuntimeError {
  return new ModelRuntimeError("SAFETENSORS_INVALID", `safetensors: ${message}`);
}
