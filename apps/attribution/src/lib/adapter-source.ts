/**
 * Where a validator gets a factory-trained adapter's files for LoRA influence (ATTRIBUTION_ADAPTER_SOURCE):
 * the gateway's own store on a shared disk (`dir`, one machine), or the gateway over HTTP (independent
 * validators, issue #14), fetched with this validator's signature, checked against the content hash and
 * only then kept in this process's own cache, `<ATTRIBUTION_BLOB_DIR>/adapters/<content hash>/`.
 */
import { createHash, randomBytes } from "node:crypto";
import { access, mkdir, open, readdir, rename, rm, stat, utimes } from "node:fs/promises";
import { join } from "node:path";
import { adapterFetchHeaders } from "@openledger/chain";
import { contentHashOfDigests } from "@openledger/model-runtime";
import type { LocalAccount } from "viem";

export const ADAPTER_FILES = ["adapter_config.json", "adapter_model.safetensors"] as const;
const HASH_RE = /^[0-9a-f]{64}$/;
/** A fetch that receives nothing for this long is abandoned (a gateway that stopped answering). */
const STALL_MS = 30_000;
/** A fetch's temporary directory beside its cache entry: `<hash>.tmp-<pid>-<random>`. */
const TMP_RE = /^[0-9a-f]{64}\.tmp-(\d+)-[0-9a-f]+$/;
/** A temporary directory of another live process older than this is abandoned too (a shared cache). */
const STALE_TMP_MS = 60 * 60_000;

/** An adapter's files could not be had from the gateway, or were not the registered ones: nothing is kept. */
export class AdapterFetchError extends Error {
  override name = "AdapterFetchError";
  constructor(
    /** ADAPTER_HASH_MISMATCH, ADAPTER_TOO_LARGE, or the gateway's error code (NOT_A_VALIDATOR, …). */
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** How a lookup ended, for the `attribution_adapter_fetches_total` counter. */
export type AdapterFetchOutcome = "fetched" | "absent" | "refused" | "failed";

export interface AdapterSource {
  /** Start-up work on a local cache (stale temporary directories, its size); lookups wait for it. */
  prepare(): Promise<void>;
  /** The directory holding the adapter's two files, or null when the source does not have the adapter. */
  dirOf(contentHash: string): Promise<string | null>;
  /**
   * `fn` with the adapter's directory (`dirOf`), which stays on disk until `fn` settles: a local cache
   * does not evict it meanwhile. Read an adapter's files only inside it.
   */
  use<T>(contentHash: string, fn: (dir: string | null) => Promise<T>): Promise<T>;
  /** Forgets a copy whose files turned out not to hash to `contentHash` (a local cache only). */
  evict(contentHash: string): Promise<void>;
}

async function hasBothFiles(dir: string): Promise<boolean> {
  try {
    for (const f of ADAPTER_FILES) await access(join(dir, f));
    return true;
  } catch {
    return false;
  }
}

/** The size of an adapter directory's two files. */
async function filesBytes(dir: string): Promise<number> {
  let total = 0;
  for (const f of ADAPTER_FILES) total += (await stat(join(dir, f)).catch(() => null))?.size ?? 0;
  return total;
}

/** Whether a process with this id runs on this machine (EPERM: it runs, as another user). */
function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** The gateway's content-addressed store on a disk this process shares (read-only). */
export class DirAdapterSource implements AdapterSource {
  constructor(readonly root: string) {}

  async dirOf(contentHash: string): Promise<string | null> {
    if (!HASH_RE.test(contentHash)) return null;
    const dir = join(this.root, "adapters", contentHash);
    return (await hasBothFiles(dir)) ? dir : null;
  }

  async prepare(): Promise<void> {
    // the gateway's own store: nothing of ours to clean
  }

  async use<T>(contentHash: string, fn: (dir: string | null) => Promise<T>): Promise<T> {
    return fn(await this.dirOf(contentHash));
  }

  async evict(): Promise<void> {
    // the gateway's own files: never touched
  }
}

export interface GatewayAdapterSourceOptions {
  /** The gateway replicas' base URLs, tried in this order. */
  gatewayUrls: readonly string[];
  /** This process's cache root (`<root>/adapters/<hash>/`). */
  cacheRoot: string;
  /** The most bytes one adapter's two files may have. */
  maxBytes: number;
  /** The most bytes the cached adapters may have together; least recently used ones are evicted past it. */
  cacheBytes: number;
  /** The validator key that signs the requests (undefined: this process holds none). */
  signer: () => Promise<LocalAccount | undefined>;
  onOutcome?: (outcome: AdapterFetchOutcome, contentHash: string, err?: Error) => void;
}

/**
 * Fetches adapters from the gateway's GET /v1/adapter-files/{hash}/{file} into a local cache. Both files
 * stream into a temporary directory beside the cache entry while they are hashed and counted (past
 * `maxBytes` the fetch stops); only when SHA-256(SHA-256(config) || SHA-256(weights)) is the content hash
 * is the directory renamed into place, so a reader never sees a partial or unverified adapter. Concurrent
 * lookups of one hash share one fetch.
 *
 * The cache holds at most `cacheBytes` (ATTRIBUTION_ADAPTER_CACHE_BYTES): after a fetch, the least
 * recently used adapters are removed until the rest fits (never the one just fetched, nor one being
 * fetched, nor one being read through `use`: the cap may be exceeded until those readers are done);
 * an evicted adapter is fetched and checked again when next needed. Use order survives a
 * restart (a hit touches its directory's mtime; start-up orders the entries by it). Start-up also
 * removes temporary directories a killed fetch left (this process's pid from an earlier life, a pid
 * that no longer runs, or older than an hour). The cap counts the entries this process knows: the
 * ones on disk at start and what it fetched or found since.
 */
export class GatewayAdapterSource implements AdapterSource {
  readonly #inFlight = new Map<string, Promise<string | null>>();
  /** Cached adapters' sizes, least recently used first (a Map keeps insertion order). */
  readonly #entries = new Map<string, number>();
  /** Adapters being read (`use`), with how many readers: never evicted meanwhile. */
  readonly #pins = new Map<string, number>();
  #ready: Promise<void> | undefined;
  constructor(readonly options: GatewayAdapterSourceOptions) {}

  #root(): string {
    return join(this.options.cacheRoot, "adapters");
  }

  #dir(contentHash: string): string {
    return join(this.#root(), contentHash);
  }

  /** Removes what killed fetches left and reads the cache's entries (once; every lookup waits for it). */
  prepare(): Promise<void> {
    this.#ready ??= this.#scan();
    return this.#ready;
  }

  async dirOf(contentHash: string): Promise<string | null> {
    if (!HASH_RE.test(contentHash)) return null;
    await this.prepare();
    const dir = this.#dir(contentHash);
    if (await hasBothFiles(dir)) {
      await this.#used(contentHash);
      return dir;
    }
    let pending = this.#inFlight.get(contentHash);
    if (!pending) {
      pending = this.#fetch(contentHash, dir).finally(() => this.#inFlight.delete(contentHash));
      this.#inFlight.set(contentHash, pending);
    }
    return pending;
  }

  async use<T>(contentHash: string, fn: (dir: string | null) => Promise<T>): Promise<T> {
    // Pinned before the lookup: an eviction between the lookup and `fn` cannot take it either.
    this.#pins.set(contentHash, (this.#pins.get(contentHash) ?? 0) + 1);
    try {
      return await fn(await this.dirOf(contentHash));
    } finally {
      const n = this.#pins.get(contentHash)! - 1;
      if (n > 0) this.#pins.set(contentHash, n);
      else {
        this.#pins.delete(contentHash);
        // What was kept over the cap for this reader goes now.
        await this.#evictBeyondCap().catch(() => {});
      }
    }
  }

  async evict(contentHash: string): Promise<void> {
    if (!HASH_RE.test(contentHash)) return;
    this.#entries.delete(contentHash);
    await rm(this.#dir(contentHash), { recursive: true, force: true });
  }

  /** The bytes the cached adapters this process knows of hold together. */
  cachedBytes(): number {
    let total = 0;
    for (const bytes of this.#entries.values()) total += bytes;
    return total;
  }

  async #scan(): Promise<void> {
    const root = this.#root();
    const names = await readdir(root).catch(() => [] as string[]);
    const found: { hash: string; bytes: number; usedAt: number }[] = [];
    for (const name of names) {
      const path = join(root, name);
      const tmp = TMP_RE.exec(name);
      if (tmp) {
        const st = await stat(path).catch(() => null);
        const pid = Number(tmp[1]);
        if (pid === process.pid || !isRunning(pid) || !st || Date.now() - st.mtimeMs > STALE_TMP_MS) {
          await rm(path, { recursive: true, force: true });
        }
      } else if (HASH_RE.test(name) && (await hasBothFiles(path))) {
        const st = await stat(path);
        found.push({ hash: name, bytes: await filesBytes(path), usedAt: st.mtimeMs });
      }
    }
    found.sort((a, b) => a.usedAt - b.usedAt || (a.hash < b.hash ? -1 : 1));
    for (const f of found) this.#entries.set(f.hash, f.bytes);
    await this.#evictBeyondCap();
  }

  /** Marks an entry most recently used (in memory, and on disk for the next start). */
  async #used(contentHash: string): Promise<void> {
    const bytes = this.#entries.get(contentHash) ?? (await filesBytes(this.#dir(contentHash)));
    this.#entries.delete(contentHash);
    this.#entries.set(contentHash, bytes);
    const now = new Date();
    await utimes(this.#dir(contentHash), now, now).catch(() => {});
  }

  /** Least recently used first, until the entries fit the cap; never one being fetched or read, nor `keep`. */
  async #evictBeyondCap(keep?: string): Promise<void> {
    let total = this.cachedBytes();
    for (const [hash, bytes] of [...this.#entries]) {
      if (total <= this.options.cacheBytes) return;
      if (hash === keep || this.#inFlight.has(hash) || this.#pins.has(hash)) continue;
      await this.evict(hash);
      total -= bytes;
    }
  }

  /**
   * Each listed gateway replica in turn (ATTRIBUTION_ADAPTER_SOURCE may list several): an adapter's files
   * live on the replica it was uploaded to, so one replica's 404 is no evidence the adapter is absent.
   * Absent (null: spans only) when every replica says so; when none had the verified files and one
   * failed otherwise (refused, unreachable, altered files), that first failure is the error.
   */
  async #fetch(contentHash: string, dir: string): Promise<string | null> {
    const report = (outcome: AdapterFetchOutcome, err?: Error) =>
      this.options.onOutcome?.(outcome, contentHash, err);
    try {
      const account = await this.options.signer();
      if (!account) {
        throw new AdapterFetchError(
          "NO_VALIDATOR_KEY",
          "fetching adapters from the gateway takes a validator key (VALIDATOR_PRIVATE_KEYS)",
        );
      }
      let failure: Error | undefined;
      for (const gatewayUrl of this.options.gatewayUrls) {
        try {
          if (await this.#fetchFrom(gatewayUrl, account, contentHash, dir)) {
            report("fetched");
            return dir;
          }
        } catch (err) {
          failure ??= err as Error;
        }
      }
      if (failure) throw failure;
      report("absent");
      return null;
    } catch (err) {
      const e = err as Error;
      report(e instanceof AdapterFetchError && e.code.startsWith("ADAPTER_") ? "refused" : "failed", e);
      throw err;
    }
  }

  /** Both files from one gateway, checked, then renamed into `dir`; false when that gateway has no such adapter. */
  async #fetchFrom(
    gatewayUrl: string,
    account: LocalAccount,
    contentHash: string,
    dir: string,
  ): Promise<boolean> {
    const tmp = `${dir}.tmp-${process.pid}-${randomBytes(6).toString("hex")}`;
    try {
      await mkdir(tmp, { recursive: true });
      let budget = this.options.maxBytes;
      const digests: Buffer[] = [];
      for (const file of ADAPTER_FILES) {
        const got = await this.#fetchFile(gatewayUrl, account, contentHash, file, join(tmp, file), budget);
        if (!got) return false;
        budget -= got.bytes;
        digests.push(got.digest);
      }
      const actual = contentHashOfDigests(digests[0]!, digests[1]!);
      if (actual !== contentHash) {
        throw new AdapterFetchError(
          "ADAPTER_HASH_MISMATCH",
          `the files of ${gatewayUrl} for adapter ${contentHash} hash to ${actual}: refused, nothing kept`,
        );
      }
      try {
        await rename(tmp, dir);
      } catch (err) {
        // Another process (a validator sharing this cache) put the same verified files there first.
        if (!(await hasBothFiles(dir))) throw err;
      }
      await this.#used(contentHash);
      await this.#evictBeyondCap(contentHash);
      return true;
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }

  /** One file into `path`, hashed and counted; null on 404 (the gateway has no such adapter). */
  async #fetchFile(
    gatewayUrl: string,
    account: LocalAccount,
    contentHash: string,
    file: string,
    path: string,
    budget: number,
  ): Promise<{ digest: Buffer; bytes: number } | null> {
    const abort = new AbortController();
    let stall = setTimeout(
      () => abort.abort(new Error(`no answer from ${gatewayUrl} for ${STALL_MS} ms`)),
      STALL_MS,
    );
    const touch = () => {
      clearTimeout(stall);
      stall = setTimeout(
        () => abort.abort(new Error(`no bytes from ${gatewayUrl} for ${STALL_MS} ms`)),
        STALL_MS,
      );
    };
    const tooLarge = () =>
      new AdapterFetchError(
        "ADAPTER_TOO_LARGE",
        `adapter ${contentHash} is larger than ATTRIBUTION_ADAPTER_MAX_BYTES (${this.options.maxBytes} bytes): refused`,
      );
    const fh = await open(path, "wx");
    try {
      const res = await fetch(`${gatewayUrl}/v1/adapter-files/${contentHash}/${file}`, {
        headers: await adapterFetchHeaders(account, contentHash, gatewayUrl),
        signal: abort.signal,
      });
      if (res.status === 404) {
        await res.body?.cancel();
        return null;
      }
      if (res.status !== 200 || !res.body) {
        const body = (await res.json().catch(() => null)) as {
          error?: { code?: string; message?: string };
        } | null;
        throw new AdapterFetchError(
          body?.error?.code ?? `HTTP_${res.status}`,
          `the gateway refused adapter ${contentHash}'s ${file}: ${res.status} ${body?.error?.message ?? res.statusText}`,
        );
      }
      const declared = Number(res.headers.get("content-length"));
      if (Number.isFinite(declared) && declared > budget) {
        await res.body.cancel();
        throw tooLarge();
      }
      const sha = createHash("sha256");
      let bytes = 0;
      for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
        touch();
        bytes += chunk.byteLength;
        if (bytes > budget) {
          abort.abort();
          throw tooLarge();
        }
        sha.update(chunk);
        let off = 0;
        while (off < chunk.byteLength)
          off += (await fh.write(chunk, off, chunk.byteLength - off)).bytesWritten;
      }
      await fh.sync();
      return { digest: sha.digest(), bytes };
    } finally {
      clearTimeout(stall);
      await fh.close();
    }
  }
}
