import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { readTarball } from "./tarball.ts";

test("reads the files of tar and tar.gz archives made by tar(1), at any depth", async () => {
  const dir = await mkdtemp(join(tmpdir(), "gw-tar-"));
  try {
    const inner = join(dir, "src", "a-rather-long-directory-name-".repeat(4), "adapter");
    await mkdir(inner, { recursive: true });
    const weights = Buffer.alloc(70_000);
    for (let i = 0; i < weights.length; i++) weights[i] = (i * 31) & 0xff;
    await writeFile(join(inner, "adapter_config.json"), '{"r": 4}');
    await writeFile(join(inner, "adapter_model.safetensors"), weights);
    for (const [flags, file] of [
      ["-cf", "a.tar"],
      ["-czf", "a.tar.gz"],
    ] as const) {
      execFileSync("tar", [flags, join(dir, file), "-C", join(dir, "src"), "."]);
      const files = readTarball(await readFile(join(dir, file)), 1 << 20);
      assert.equal(files.get("adapter_config.json")?.toString(), '{"r": 4}');
      assert.deepEqual(files.get("adapter_model.safetensors"), weights);
    }
    const plain = await readFile(join(dir, "a.tar"));
    // Cut inside the 70 kB weights entry.
    assert.throws(() => readTarball(plain.subarray(0, Math.floor(plain.length / 2)), 1 << 20), /truncated/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
