import { createHash } from "node:crypto";
import { createWriteStream } from "node:fs";
import { mkdir, rm } from "node:fs/promises";
import { basename, join } from "node:path";
import { Readable, Transform, type TransformCallback } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGunzip } from "node:zlib";
import { AppError } from "@openledger/errors";
import tar from "tar-stream";
import { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE } from "./adapter-store.ts";

const WANTED = new Set([ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE]);

export interface ReceivedFile {
  path: string;
  bytes: number;
  sha256: Buffer;
}

/** What makes an upload too large: the per-adapter limit, or what is left of the account's quota. */
export interface UploadLimit {
  bytes: number;
  /** Thrown when `bytes` is passed (413 for the size limit, 403 for the quota). */
  error: () => AppError;
}

/** Passes bytes through, counting them against a shared budget; fails as soon as it is passed,
 *  so the bytes beyond it are never buffered anywhere (a decompression bomb stops at the limit). */
class Budget extends Transform {
  constructor(
    private readonly upload: AdapterUpload,
    private readonly limit: UploadLimit,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.upload.received += chunk.length;
    if (this.upload.received > this.limit.bytes) callback(this.limit.error());
    else callback(null, chunk);
  }
}

/** The first bytes of a stream, and the whole stream again (those bytes included). */
async function peek(stream: Readable, n: number): Promise<{ head: Buffer; all: Readable }> {
  const it = stream[Symbol.asyncIterator]();
  const chunks: Buffer[] = [];
  let length = 0;
  let done = false;
  while (length < n) {
    const next = await it.next();
    if (next.done) {
      done = true;
      break;
    }
    chunks.push(next.value as Buffer);
    length += (next.value as Buffer).length;
  }
  const head = Buffer.concat(chunks);
  const all = Readable.from(
    (async function* () {
      yield head;
      if (done) return;
      for (let next = await it.next(); !next.done; next = await it.next()) yield next.value as Buffer;
    })(),
    { objectMode: false },
  );
  return { head, all };
}

/**
 * An adapter upload received as streams into a private directory, never whole in memory: plain
 * files (`adapter_config.json`, `adapter_model.safetensors`) or one `.tar` / `.tar.gz` holding
 * them at any depth. Gzip is inflated by Node's asynchronous zlib (the libuv thread pool, a chunk
 * at a time), the tar is parsed by `tar-stream`, and every byte received — decompressed bytes
 * of every archive entry, wanted or not — counts against one limit that stops the upload the
 * moment it is passed. Files are hashed (SHA-256) as they are written.
 */
export class AdapterUpload {
  readonly files = new Map<string, ReceivedFile>();
  /** Bytes received so far (decompressed), against the limit. */
  received = 0;

  constructor(
    readonly dir: string,
    readonly limit: UploadLimit,
  ) {}

  async open(): Promise<void> {
    await mkdir(this.dir, { recursive: true });
  }

  /** Removes the directory (after its files were moved into the store, or on failure). */
  async discard(): Promise<void> {
    await rm(this.dir, { recursive: true, force: true });
  }

  /** One adapter file sent as itself. */
  async addFile(name: string, stream: Readable): Promise<void> {
    await this.#write(name, stream);
  }

  /** A `.tar` or `.tar.gz` (sniffed from its first bytes): the adapter files at any depth. */
  async addArchive(stream: Readable): Promise<void> {
    const { head, all } = await peek(stream, 2);
    const gzip = head[0] === 0x1f && head[1] === 0x8b;
    const extract = tar.extract();
    const stop = new AbortController();
    const budget = new Budget(this, this.limit);
    const options = { signal: stop.signal };
    const feeding = gzip
      ? pipeline(all, createGunzip(), budget, extract, options)
      : pipeline(all, budget, extract, options);
    const reading = (async () => {
      for await (const entry of extract) {
        const name = basename(entry.header.name.replace(/\/+$/, ""));
        if ((entry.header.type === "file" || entry.header.type === "contiguous-file") && WANTED.has(name)) {
          await this.#write(name, entry, false);
        } else {
          entry.resume(); // read (and counted above) but not kept
        }
      }
    })().catch((err: unknown) => {
      stop.abort(err); // nobody reads the archive any more: stop feeding it
      throw err;
    });
    const [fed, read] = await Promise.allSettled([feeding, reading]);
    const failed =
      read.status === "rejected" ? read.reason : fed.status === "rejected" ? fed.reason : undefined;
    // The limits (ours, and multipart's per-file size: 413) say what they are; anything else is a
    // broken archive (truncated gzip, a bad tar header): the client's, so 400.
    if (failed instanceof AppError || (failed as { statusCode?: number } | undefined)?.statusCode === 413) {
      throw failed;
    }
    if (failed !== undefined) {
      throw new AppError("VALIDATION_FAILED", `adapter archive: ${(failed as Error).message ?? failed}`, {
        cause: failed,
      });
    }
  }

  async #write(name: string, source: Readable, budget = true): Promise<void> {
    const path = join(this.dir, name);
    const hash = createHash("sha256");
    let bytes = 0;
    const hashing = new Transform({
      transform(chunk: Buffer, _e, callback) {
        hash.update(chunk);
        bytes += chunk.length;
        callback(null, chunk);
      },
    });
    const out = createWriteStream(path);
    if (budget) await pipeline(source, new Budget(this, this.limit), hashing, out);
    else await pipeline(source, hashing, out);
    this.files.set(name, { path, bytes, sha256: hash.digest() });
  }
}
