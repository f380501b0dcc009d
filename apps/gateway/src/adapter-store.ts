import { createHash, randomBytes } from "node:crypto";
import { access, mkdir, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";

export const ADAPTER_CONFIG_FILE = "adapter_config.json";
export const ADAPTER_WEIGHTS_FILE = "adapter_model.safetensors";

/**
 * Content hash of a PEFT adapter: sha256( sha256(adapter_config.json) || sha256(adapter_model.safetensors) ),
 * hex. Both files matter (the config carries alpha and the target modules), and hashing the
 * two digests keeps the definition independent of any archive format.
 */
export function adapterContentHash(configBytes: Uint8Array, weightBytes: Uint8Array): string {
  const a = createHash("sha256").update(configBytes).digest();
  const b = createHash("sha256").update(weightBytes).digest();
  return createHash("sha256").update(a).update(b).digest("hex");
}

/** Content-addressed adapter files on disk: `<root>/adapters/<hash>/{adapter_config.json, adapter_model.safetensors}`. */
export class AdapterStore {
  constructor(readonly root: string) {}

  dirOf(contentHash: string): string {
    return join(this.root, "adapters", contentHash);
  }

  /** Writes both files under their content hash (atomic rename; an existing copy is kept). */
  async put(configBytes: Uint8Array, weightBytes: Uint8Array): Promise<string> {
    const hash = adapterContentHash(configBytes, weightBytes);
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
    await writeFile(join(tmp, ADAPTER_WEIGHTS_FILE), weightBytes);
    try {
      await rename(tmp, dir);
    } catch {
      await rm(tmp, { recursive: true, force: true });
    }
    return hash;
  }
}
