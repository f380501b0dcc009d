import { gunzipSync } from "node:zlib";

/**
 * Regular files of a tar archive (ustar/GNU/pax; gzip-compressed or not), by base name.
 * Just what an adapter upload needs: two small files at any depth. Bounded: the
 * decompressed size is capped, and parsing stops at the end-of-archive marker.
 */
export function readTarball(bytes: Uint8Array, maxBytes: number): Map<string, Buffer> {
  let tar = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (tar[0] === 0x1f && tar[1] === 0x8b) tar = gunzipSync(tar, { maxOutputLength: maxBytes });
  const files = new Map<string, Buffer>();
  let off = 0;
  let longName: string | undefined;
  while (off + 512 <= tar.length) {
    const header = tar.subarray(off, off + 512);
    if (header.every((b) => b === 0)) break;
    const field = (start: number, len: number) => {
      const raw = header.subarray(start, start + len);
      const end = raw.indexOf(0);
      return raw.subarray(0, end < 0 ? len : end).toString("utf8");
    };
    const size = Number.parseInt(field(124, 12).trim() || "0", 8);
    if (!Number.isFinite(size) || size < 0) throw new Error("tarball: bad entry size");
    const type = String.fromCharCode(header[156] ?? 0);
    const magic = field(257, 6);
    const prefix = magic.startsWith("ustar") ? field(345, 155) : "";
    let name = longName ?? (prefix ? `${prefix}/${field(0, 100)}` : field(0, 100));
    longName = undefined;
    const dataStart = off + 512;
    if (dataStart + size > tar.length) throw new Error("tarball: truncated");
    const data = tar.subarray(dataStart, dataStart + size);
    if (type === "L") {
      longName = data.toString("utf8").replace(/\0.*$/s, "");
    } else if (type === "x") {
      const path = /\d+ path=([^\n]*)\n/.exec(data.toString("utf8"));
      if (path) longName = path[1];
    } else if (type === "0" || type === "\0") {
      name = name.replace(/\/+$/, "");
      files.set(name.slice(name.lastIndexOf("/") + 1), Buffer.from(data));
    }
    off = dataStart + Math.ceil(size / 512) * 512;
  }
  return files;
}
