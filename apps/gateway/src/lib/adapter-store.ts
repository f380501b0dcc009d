import { randomBytes } from "node:crypto";
import { access, link, mkdir, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { adapterContentHash, contentHashOfDigests, sha256 } from "@openledger/model-runtime";

// The definition lives in model-runtime (validators check stored adapters against it too).
export { adapterContentHash, contentHashOfDigests, sha256 };

export const ADAPTER_CONFIG_FILE = "adapter_config.json";
export const ADAPTER_WEIGHTS_FILE = "adapter_model.safetensors";

/** Content-addressed adapter files on disk: `<root>/adapters/<hash>/{adapter_config.json, adapter_model.safetensors}`. */
export class AdapterStore {
  constructor(readonly root: string) {}

  dirOf(contentHash: string): string {
    return join(this.root, "adapters", contentHash);
  }

  /** Writes both files under their content hash (atomic rename; an existing copy is kept). */
  put(configBytes: Uint8Array, weightBytes: Uint8Array): Promise<string> {
    return this.#put(adapterContentHash(configBytes, weightBytes), configBytes, (path) =>
      writeFile(path, weightBytes),
    );
  }

  /**
   * The same, with the weights hard-linked from an existing file whose SHA-256 is known
   * (bulk registration of adapters sharing weight files, e.g. the benchmark's 10,000).
   */
  putLinked(configBytes: Uint8Array, weightsFile: string, weightsDigest: Uint8Array): Promise<string> {
    return this.#put(contentHashOfDigests(sha256(configBytes), weightsDigest), configBytes, (path) =>
      link(weightsFile, path),
    );
  }

  /** Where an upload in progress writes its files (same file system as the store: renamed into it). */
  incomingDir(id: string): string {
    return join(this.root, "adapters", ".incoming", id);
  }

  /**
   * Moves a directory holding both files (an upload, already hashed as `hash`) into the store
   * (atomic rename; an existing copy is kept and the directory removed).
   */
  async adopt(dir: string, hash: string): Promise<string> {
    const dest = this.dirOf(hash);
    try {
      await access(join(dest, ADAPTER_WEIGHTS_FILE));
      await rm(dir, { recursive: true, force: true });
      return hash;
    } catch {
      // not stored yet
    }
    try {
      await rename(dir, dest);
    } catch {
      await rm(dir, { recursive: true, force: true });
    }
    return hash;
  }

  async #put(hash: string, configBytes: Uint8Array, writeWeights: (path: string) => Promise<void>) {
    const dir = this.dirOf(hash);
    try {
      await access(join(dir, ADAPTER_WEIGHTS_FILE));
      return hash;
    } catch {
      // not stored yet
    }
    await mkdir(join(this.root, "adapters"), { recursive: true });
    const tmp = `${dir}.tmp-${randomBytes(6).toString("hex")}`;
    await mkdir(tmp);
    await writeFile(join(tmp, ADAPTER_CONFIG_FILE), configBytes);
    await writeWeights(join(tmp, ADAPTER_WEIGHTS_FILE));
    try {
      await rename(tmp, dir);
    } catch {
      await rm(tmp, { recursive: true, force: true });
    }
    return hash;
  }
}
