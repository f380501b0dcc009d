import { createHash, randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, open, readFile, rename, rm, stat } from "node:fs/promises";
import path from "node:path";

/** SHA-256 hex of a blob: its address in the store. */
export type BlobHash = string;

const HASH_RE = /^[0-9a-f]{64}$/;
const SLICE = 4 * 1024 * 1024;

/**
 * A content-addressed store of immutable blobs (span indexes, influence models, ONNX graphs).
 * The address is the SHA-256 of the bytes, so writing the same artifact twice is a no-op and
 * a reader can verify what it got. An S3 (or any object store) backend implements the same
 * interface with the hash as the object key.
 */
export interface BlobStore {
  /** Stores the concatenation of `chunks` and returns its hash (idempotent). */
  put(chunks: readonly Uint8Array[]): Promise<BlobHash>;
  /** The whole blob (8-byte aligned Buffer, so typed-array views need no copy). */
  get(hash: BlobHash): Promise<Buffer>;
  has(hash: BlobHash): Promise<boolean>;
  /** Re-hashes the stored bytes; false when missing or corrupt. */
  verify(hash: BlobHash): Promise<boolean>;
}

export class BlobNotFoundError extends Error {
  constructor(readonly hash: string) {
    super(`blob ${hash} is not in the store`);
    this.name = "BlobNotFoundError";
  }
}

function assertHash(hash: string): void {
  if (!HASH_RE.test(hash)) throw new RangeError(`not a blob hash: ${hash}`);
}

/**
 * Blobs on a local (or network-mounted) disk: `<dir>/<h[0..2]>/<h[2..4]>/<hash>`. Writes go to a
 * temporary file in the same directory and are renamed into place, so a reader never sees a
 * partial blob and concurrent writers of the same content both succeed.
 */
export class FsBlobStore implements BlobStore {
  constructor(readonly dir: string) {}

  pathOf(hash: BlobHash): string {
    assertHash(hash);
    return path.join(this.dir, hash.slice(0, 2), hash.slice(2, 4), hash);
  }

  async put(chunks: readonly Uint8Array[]): Promise<BlobHash> {
    await mkdir(this.dir, { recursive: true });
    const tmp = path.join(this.dir, `.tmp-${process.pid}-${randomBytes(8).toString("hex")}`);
    const sha = createHash("sha256");
    const fh = await open(tmp, "w");
    try {
      for (const chunk of chunks) {
        // Hash and write in slices, so a 200 MB index never holds the event loop for long.
        for (let start = 0; start < chunk.byteLength; start += SLICE) {
          const slice = chunk.subarray(start, Math.min(chunk.byteLength, start + SLICE));
          sha.update(slice);
          let off = 0;
          while (off < slice.byteLength) {
            const { bytesWritten } = await fh.write(slice, off, slice.byteLength - off);
            off += bytesWritten;
          }
        }
      }
      await fh.sync();
    } catch (err) {
      await fh.close();
      await rm(tmp, { force: true });
      throw err;
    }
    await fh.close();
    const hash = sha.digest("hex");
    const final = this.pathOf(hash);
    await mkdir(path.dirname(final), { recursive: true });
    await rename(tmp, final);
    return hash;
  }

  async get(hash: BlobHash): Promise<Buffer> {
    const file = this.pathOf(hash);
    try {
      const { size } = await stat(file);
      // Buffer.alloc (not the pool) gives an 8-aligned ArrayBuffer of its own: typed views
      // into the flat-binary sections then need no copy.
      const buf = Buffer.alloc(size);
      const fh = await open(file, "r");
      try {
        let off = 0;
        while (off < size) {
          const { bytesRead } = await fh.read(buf, off, size - off, off);
          if (bytesRead === 0) break;
          off += bytesRead;
        }
      } finally {
        await fh.close();
      }
      return buf;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") throw new BlobNotFoundError(hash);
      throw err;
    }
  }

  async has(hash: BlobHash): Promise<boolean> {
    try {
      await stat(this.pathOf(hash));
      return true;
    } catch {
      return false;
    }
  }

  async verify(hash: BlobHash): Promise<boolean> {
    if (!(await this.has(hash))) return false;
    const sha = createHash("sha256");
    for await (const chunk of createReadStream(this.pathOf(hash))) sha.update(chunk as Buffer);
    return sha.digest("hex") === hash;
  }
}

/** Reads a small file whole (used for tokenizer files). */
export const readWhole = (file: string) => readFile(file);
