import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { generateRandomPeft, parsePeftAdapter, writePeftAdapter } from "./adapter.ts";
import { AdapterLoadPool } from "./adapter-pool.ts";
import { TINY_BOS, TINY_CONFIG } from "./config.ts";
import { ModelRuntimeError } from "./errors.ts";
import { generateBaseModel } from "./model.ts";
import { ModelRuntime } from "./runtime.ts";
import { prepareSlotAdapter } from "./slots.ts";

const model = generateBaseModel(TINY_CONFIG, 1);
const LAYOUT = { targetModules: ["q_proj", "k_proj", "v_proj", "o_proj"] as const, rankBuckets: [8, 16] };
const prompt = [TINY_BOS, ...new TextEncoder().encode("pool")];
let dir: string;
let rt: ModelRuntime;
let pool: AdapterLoadPool;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "adapter-pool-"));
  rt = await ModelRuntime.create(model, {
    slots: 4,
    rankBuckets: LAYOUT.rankBuckets,
    targetModules: [...LAYOUT.targetModules],
    intraOpThreads: 1,
  });
  // inlineBelowBytes 0: every load goes to the worker (tiny adapters would decode inline).
  pool = new AdapterLoadPool(model.config, rt.slotLayout, { threads: 1, inlineBelowBytes: 0 });
});
after(async () => {
  await pool.close();
  await rt.dispose();
  await rm(dir, { recursive: true, force: true });
});

test("a pool load equals the in-thread decode, bit for bit, and serves the same logits", async () => {
  const files = generateRandomPeft(TINY_CONFIG, { rank: 6, seed: "pool-eq" });
  await writePeftAdapter(join(dir, "eq"), files);
  const prepared = await pool.load(join(dir, "eq"));
  assert.equal(pool.offThreadLoads, 1, "decoded on a worker thread");
  const decoded = parsePeftAdapter(TINY_CONFIG, files.adapterConfig, files.safetensors);
  const local = prepareSlotAdapter(TINY_CONFIG, rt.slotLayout, decoded);
  assert.equal(prepared.bucket, 8, "rank 6 goes to the rank-8 bucket");
  assert.equal(prepared.byteLength, rt.slots.slotBytes(8));
  assert.ok(Buffer.from(prepared.buffer).equals(Buffer.from(local.buffer)));

  rt.loadAdapter(1, prepared);
  // copied once into the slot's stack entry: the slot's views hold the same values
  assert.deepEqual(
    rt.slots.get(1)!.a.map((v) => [...v]),
    prepared.a.map((v) => [...v]),
  );
  assert.deepEqual(
    rt.slots.get(1)!.b.map((v) => [...v]),
    prepared.b.map((v) => [...v]),
  );
  rt.loadAdapter(2, decoded);
  const [x, y] = await rt.step([
    { seqId: "p", tokens: prompt, slot: 1 },
    { seqId: "l", tokens: prompt, slot: 2 },
  ]);
  assert.deepEqual([...x!], [...y!]);
  rt.release("p");
  rt.release("l");
});

test("small adapters decode on the calling thread, to the same bytes as the worker", async () => {
  const files = generateRandomPeft(TINY_CONFIG, { rank: 16, seed: "pool-inline" });
  await writePeftAdapter(join(dir, "inline"), files);
  const inline = new AdapterLoadPool(model.config, rt.slotLayout, { threads: 1 });
  try {
    const small = await inline.load(join(dir, "inline"));
    assert.deepEqual([inline.inlineLoads, inline.offThreadLoads], [1, 0], "a 65 KB file stays inline");
    const viaWorker = await pool.load(join(dir, "inline"));
    assert.ok(Buffer.from(small.buffer).equals(Buffer.from(viaWorker.buffer)));
    await writeFile(join(dir, "inline", "adapter_model.safetensors"), Buffer.from("garbage"));
    await assert.rejects(
      inline.load(join(dir, "inline")),
      (e: unknown) => e instanceof ModelRuntimeError && e.code === "SAFETENSORS_INVALID",
    );
  } finally {
    await inline.close();
  }
});

test("a corrupt or unfit adapter is a ModelRuntimeError with its code; the pool keeps working", async () => {
  const good = generateRandomPeft(TINY_CONFIG, { rank: 4, seed: "pool-good" });
  await writePeftAdapter(join(dir, "corrupt"), good);
  await writeFile(join(dir, "corrupt", "adapter_model.safetensors"), Buffer.from("not a safetensors file"));
  await assert.rejects(
    pool.load(join(dir, "corrupt")),
    (e: unknown) => e instanceof ModelRuntimeError && e.code === "SAFETENSORS_INVALID",
  );
  await writePeftAdapter(join(dir, "too-big"), generateRandomPeft(TINY_CONFIG, { rank: 32, seed: 1 }));
  await assert.rejects(
    pool.load(join(dir, "too-big")),
    (e: unknown) =>
      e instanceof ModelRuntimeError && e.code === "ADAPTER_RANK_TOO_LARGE" && /rank 32/.test(e.message),
  );
  await assert.rejects(
    pool.load(join(dir, "missing")),
    (e: unknown) => e instanceof ModelRuntimeError && e.code === "ADAPTER_CONFIG_INVALID",
  );
  await writePeftAdapter(join(dir, "good"), good);
  const ok = await pool.load(join(dir, "good"));
  assert.equal(ok.rank, 4);
});

test("steps keep running while a load is in progress", async () => {
  // The adapter's weights are a FIFO: the load cannot finish before the test writes
  // into it, whatever the machine's speed, so "steps ran during the load" is not a race.
  const files = generateRandomPeft(TINY_CONFIG, { rank: 8, seed: "pool-fifo" });
  const adir = join(dir, "fifo");
  await writePeftAdapter(adir, files);
  const weights = join(adir, "adapter_model.safetensors");
  await rm(weights);
  execFileSync("mkfifo", [weights]);
  let loaded = false;
  const loading = pool.load(adir).then((p) => {
    loaded = true;
    return p;
  });
  let steps = 0;
  let [logits] = await rt.step([{ seqId: "busy", tokens: prompt, slot: 0 }]);
  for (let i = 0; i < 8; i++) {
    [logits] = await rt.step([{ seqId: "busy", tokens: [i + 1], slot: 0 }]);
    steps += 1;
  }
  assert.ok(logits!.length > 0);
  assert.equal(steps, 8);
  assert.equal(loaded, false, "the load is still waiting for its file");
  await writeFile(weights, files.safetensors);
  const prepared = await loading;
  assert.equal(prepared.rank, 8);
  rt.release("busy");
});

test("a process using the pool exits once the pool is closed", async () => {
  // A worker thread left running would keep the gateway process alive after shutdown.
  const script = `
    import { AdapterLoadPool, TINY_CONFIG } from ${JSON.stringify(new URL("./index.ts", import.meta.url).href)};
    const pool = new AdapterLoadPool(TINY_CONFIG, { targetModules: ["q_proj"], rankBuckets: [8] }, { threads: 2 });
    await pool.warmUp();
    await pool.close();
    console.log("closed");
  `;
  const file = join(dir, "exit-check.mts");
  await writeFile(file, script);
  const child = spawn(process.execPath, ["--import", "tsx", file], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  let out = "";
  child.stdout.on("data", (d: Buffer) => {
    out += d.toString();
  });
  const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
  assert.equal(code, 0);
  assert.equal(out.trim(), "closed");
});
