import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, test } from "node:test";
import { BlobNotFoundError, FsBlobStore } from "./blob-store.ts";

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function store() {
  const dir = await mkdtemp(path.join(tmpdir(), "blobs-"));
  dirs.push(dir);
  return new FsBlobStore(dir);
}

test("blobs are addressed by the SHA-256 of their bytes; chunking does not matter", async () => {
  const s = await store();
  const bytes = Buffer.from("hello, attribution ".repeat(1000));
  const h1 = await s.put([bytes]);
  assert.equal(h1, createHash("sha256").update(bytes).digest("hex"));
  const h2 = await s.put([bytes.subarray(0, 7), bytes.subarray(7, 5000), bytes.subarray(5000)]);
  assert.equal(h2, h1);
  const got = await s.get(h1);
  assert.deepEqual(got, bytes);
  assert.equal(got.byteOffset % 8, 0, "8-aligned for zero-copy typed views");
  assert.equal(await s.verify(h1), true);
  assert.equal(await s.put([]), createHash("sha256").digest("hex"));
});

test("concurrent writers of the same content both succeed, and no temp files are left", async () => {
  const s = await store();
  const bytes = Buffer.alloc(1 << 20, 7);
  const hashes = await Promise.all(Array.from({ length: 4 }, () => s.put([bytes])));
  assert.equal(new Set(hashes).size, 1);
  assert.deepEqual(
    (await readdir(s.dir)).filter((f) => f.startsWith(".tmp")),
    [],
  );
});

test("missing blobs throw BlobNotFoundError; corrupted blobs fail verify; bad hashes are refused", async () => {
  const s = await store();
  const missing = "ab".repeat(32);
  await assert.rejects(s.get(missing), BlobNotFoundError);
  assert.equal(await s.has(missing), false);
  const h = await s.put([Buffer.from("original")]);
  await writeFile(s.pathOf(h), "tampered");
  assert.equal(await s.verify(h), false);
  await assert.rejects(s.get("../../etc/passwd"), RangeError);
});
