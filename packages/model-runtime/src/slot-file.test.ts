import assert from "node:assert/strict";
import { copyFile, link, mkdir, mkdtemp, readdir, rm, truncate, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import {
  adapterContentHash,
  generateRandomPeft,
  type PeftAdapterConfig,
  type PeftFiles,
  parsePeftAdapter,
} from "./adapter.ts";
import { AdapterLoadPool } from "./adapter-pool.ts";
import { TINY_CONFIG } from "./config.ts";
import { loadSlotAdapter, slotFileName } from "./slot-file.ts";
import { type PreparedAdapter, prepareSlotAdapter, type SlotLayout } from "./slots.ts";

const LAYOUT: SlotLayout = { targetModules: ["q_proj", "k_proj", "v_proj", "o_proj"], rankBuckets: [8, 16] };
const NAME = slotFileName(TINY_CONFIG, LAYOUT);
let root: string;

before(async () => {
  root = await mkdtemp(join(tmpdir(), "slot-file-"));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

/** Writes the adapter as the gateway's store does: in a directory named by its content hash. */
async function stored(files: PeftFiles, config: Partial<PeftAdapterConfig> = {}) {
  const configBytes = Buffer.from(JSON.stringify({ ...files.adapterConfig, ...config }));
  const dir = join(root, adapterContentHash(configBytes, files.safetensors));
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, "adapter_config.json"), configBytes);
  await writeFile(join(dir, "adapter_model.safetensors"), files.safetensors);
  return dir;
}

/** The slot layout decoded straight from the PEFT files (the path without slot files). */
function direct(files: PeftFiles, config: Partial<PeftAdapterConfig> = {}): PreparedAdapter {
  const decoded = parsePeftAdapter(TINY_CONFIG, { ...files.adapterConfig, ...config }, files.safetensors);
  return prepareSlotAdapter(TINY_CONFIG, LAYOUT, decoded);
}

function sameBits(x: PreparedAdapter, y: PreparedAdapter): boolean {
  return x.bucket === y.bucket && x.rank === y.rank && Buffer.from(x.buffer).equals(Buffer.from(y.buffer));
}

test("the first load writes the slot file; later loads read it, to the same bits as decoding", async () => {
  for (const [seed, options] of [
    ["plain", { rank: 6, alpha: 12 }],
    ["rslora", { rank: 16, alpha: 7, useRslora: true }],
    ["two-modules", { rank: 3, alpha: 5, targetModules: ["q_proj", "v_proj"] as const }],
  ] as const) {
    const files = generateRandomPeft(TINY_CONFIG, {
      seed,
      ...options,
      targetModules: "targetModules" in options ? [...options.targetModules] : undefined,
    });
    const dir = await stored(files);
    const first = await loadSlotAdapter(TINY_CONFIG, LAYOUT, dir);
    assert.equal(first.source, "peft", seed);
    assert.ok((await readdir(dir)).includes(NAME), `${seed}: slot file written`);
    const second = await loadSlotAdapter(TINY_CONFIG, LAYOUT, dir, { shared: true });
    assert.equal(second.source, "slot-file", seed);
    assert.ok(second.adapter.buffer instanceof SharedArrayBuffer);
    const want = direct(files);
    assert.ok(sameBits(first.adapter, want), `${seed}: first load`);
    assert.ok(sameBits(second.adapter, want), `${seed}: slot-file load`);
  }
});

test("adapters sharing a weights file share its slot file, each with its own scale", async () => {
  const files = generateRandomPeft(TINY_CONFIG, { rank: 8, alpha: 16, seed: "shared" });
  const a = await stored(files);
  const b = await stored(files, { lora_alpha: 16.5, alpha_pattern: { "layers.1.self_attn.o_proj": 3 } });
  assert.equal((await loadSlotAdapter(TINY_CONFIG, LAYOUT, a)).source, "peft");
  await link(join(a, NAME), join(b, NAME)); // what the gateway bench does for its 10,000 adapters
  const fromShared = await loadSlotAdapter(TINY_CONFIG, LAYOUT, b);
  assert.equal(fromShared.source, "slot-file");
  assert.ok(
    sameBits(
      fromShared.adapter,
      direct(files, { lora_alpha: 16.5, alpha_pattern: { "layers.1.self_attn.o_proj": 3 } }),
    ),
  );
  assert.ok(!sameBits(fromShared.adapter, direct(files)), "not adapter a's scale");
});

test("a slot file is used only with the adapter it was made from, whole, in a content-addressed directory", async () => {
  const one = generateRandomPeft(TINY_CONFIG, { rank: 4, seed: "one" });
  const two = generateRandomPeft(TINY_CONFIG, { rank: 4, seed: "two" });
  const dirOne = await stored(one);
  const dirTwo = await stored(two);
  await loadSlotAdapter(TINY_CONFIG, LAYOUT, dirOne);
  // Another adapter's slot file (same layout, same shapes) in this directory: not this adapter's.
  await copyFile(join(dirOne, NAME), join(dirTwo, NAME));
  const foreign = await loadSlotAdapter(TINY_CONFIG, LAYOUT, dirTwo, { writeSlotFile: false });
  assert.equal(foreign.source, "peft");
  assert.ok(sameBits(foreign.adapter, direct(two)));
  // A truncated one (a crash mid-copy, a full disk): ignored, decoded again and rewritten.
  await truncate(join(dirOne, NAME), 1000);
  const cut = await loadSlotAdapter(TINY_CONFIG, LAYOUT, dirOne);
  assert.equal(cut.source, "peft");
  assert.equal((await loadSlotAdapter(TINY_CONFIG, LAYOUT, dirOne)).source, "slot-file", "rewritten");
  // Outside a content-addressed directory nothing says the PEFT files are the ones the slot file
  // was made from (an upload being received): always decoded.
  const plain = join(root, "incoming");
  await mkdir(plain);
  await writeFile(join(plain, "adapter_config.json"), JSON.stringify(one.adapterConfig));
  await writeFile(join(plain, "adapter_model.safetensors"), one.safetensors);
  assert.equal((await loadSlotAdapter(TINY_CONFIG, LAYOUT, plain)).source, "peft");
  await writeFile(join(plain, "adapter_model.safetensors"), two.safetensors);
  const replaced = await loadSlotAdapter(TINY_CONFIG, LAYOUT, plain);
  assert.equal(replaced.source, "peft");
  assert.ok(sameBits(replaced.adapter, direct(two)));
});

test("another layout (rank buckets, target modules) has its own slot file", async () => {
  const files = generateRandomPeft(TINY_CONFIG, { rank: 6, seed: "layouts" });
  const dir = await stored(files);
  await loadSlotAdapter(TINY_CONFIG, LAYOUT, dir);
  const other: SlotLayout = { targetModules: ["q_proj", "k_proj", "v_proj", "o_proj"], rankBuckets: [16] };
  assert.notEqual(slotFileName(TINY_CONFIG, other), NAME);
  const wide = await loadSlotAdapter(TINY_CONFIG, other, dir);
  assert.equal(wide.source, "peft");
  assert.equal(wide.adapter.bucket, 16);
  assert.equal((await loadSlotAdapter(TINY_CONFIG, other, dir)).source, "slot-file");
  assert.equal((await loadSlotAdapter(TINY_CONFIG, LAYOUT, dir)).source, "slot-file", "both kept");
});

test("the load pool reads slot files on its worker threads and counts them", async () => {
  const files = generateRandomPeft(TINY_CONFIG, { rank: 8, seed: "pool" });
  const dir = await stored(files);
  const pool = new AdapterLoadPool(TINY_CONFIG, LAYOUT, { threads: 1, inlineBelowBytes: 0, shared: true });
  try {
    const first = await pool.load(dir);
    const second = await pool.load(dir);
    assert.deepEqual([pool.peftLoads, pool.slotFileLoads, pool.offThreadLoads], [1, 1, 2]);
    assert.ok(sameBits(first, second));
    assert.ok(sameBits(second, direct(files)));
  } finally {
    await pool.close();
  }
});
