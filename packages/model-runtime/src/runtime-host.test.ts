import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { generateRandomAdapter, generateRandomPeft, writePeftAdapter } from "./adapter.ts";
import { AdapterLoadPool } from "./adapter-pool.ts";
import { TINY_CONFIG } from "./config.ts";
import { ModelRuntimeError } from "./errors.ts";
import { generateBaseModel, writeBaseModelDir } from "./model.ts";
import { ModelRuntime, type StepRuntime } from "./runtime.ts";
import { WorkerRuntime } from "./runtime-host.ts";
import { argmax } from "./sampler.ts";

let dir: string;
let local: ModelRuntime;
let remote: WorkerRuntime;
const adapters = [
  generateRandomAdapter(TINY_CONFIG, { rank: 8, seed: 21 }),
  generateRandomAdapter(TINY_CONFIG, { rank: 4, seed: 22 }),
];

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "runtime-host-test-"));
  await writeBaseModelDir(join(dir, "model"), generateBaseModel(TINY_CONFIG, 7));
  local = await ModelRuntime.create(generateBaseModel(TINY_CONFIG, 7), {
    slots: 4,
    rankBuckets: [8],
    intraOpThreads: 1,
  });
  remote = await WorkerRuntime.create(
    { dir: join(dir, "model") },
    { slots: 4, rankBuckets: [8], intraOpThreads: 1 },
  );
  adapters.forEach((a, i) => {
    local.loadAdapter(i + 1, a);
    remote.loadAdapter(i + 1, a);
  });
});

after(async () => {
  await local?.dispose();
  await remote?.dispose();
  await rm(dir, { recursive: true, force: true });
});

/** Greedy decode of three rows (base + two adapters) batched together, 12 steps. */
async function greedy(rt: StepRuntime): Promise<number[][]> {
  const out: number[][] = [[], [], []];
  let rows = [
    { seqId: "a", tokens: [72, 101, 108, 108, 111], slot: 0 },
    { seqId: "b", tokens: [1, 2, 3], slot: 1 },
    { seqId: "c", tokens: [200, 17, 5, 9], slot: 2 },
  ];
  for (let s = 0; s < 12; s++) {
    const logits = await rt.step(rows);
    rows = rows.map((r, i) => {
      const t = argmax(logits[i]!);
      out[i]!.push(t);
      return { ...r, tokens: [t] };
    });
  }
  for (const r of rows) rt.release(r.seqId);
  return out;
}

test("a runtime on its own thread gives the same greedy tokens as one on this thread (base and LoRA rows batched)", async () => {
  const expected = await greedy(local);
  assert.deepEqual(await greedy(remote), expected);
  assert.equal(remote.hasSequence("a"), false);
  assert.ok(
    expected[1]!.some((t, i) => t !== expected[0]![i]),
    "adapters change the output",
  );
});

test("steps run off this thread: a step completes while this thread spins without yielding", async () => {
  const before = remote.completedSteps;
  const pending = remote.step([{ seqId: "spin", tokens: [5, 6, 7, 8], slot: 1 }]);
  // Never yields to the event loop: an in-thread runtime could not make progress here.
  let spins = 0;
  while (remote.completedSteps === before && spins < 2e10) spins++;
  assert.equal(remote.completedSteps, before + 1, "the step did not complete while this thread was busy");
  const [logits] = await pending;
  assert.equal(logits!.length, TINY_CONFIG.vocabSize);
  remote.release("spin");
});

test("errors keep their codes across the thread boundary; the runtime keeps serving", async () => {
  await assert.rejects(
    remote.step([{ seqId: "x", tokens: [TINY_CONFIG.vocabSize + 5], slot: 0 }]),
    (e: unknown) => e instanceof ModelRuntimeError && e.code === "SEQUENCE_INVALID",
  );
  await assert.rejects(
    remote.step([{ seqId: "y", tokens: [1], slot: 3 }]),
    (e: unknown) => e instanceof ModelRuntimeError && e.code === "SLOT_OUT_OF_RANGE",
  );
  assert.throws(
    () => remote.loadAdapter(9, adapters[0]!),
    (e: unknown) => e instanceof ModelRuntimeError && e.code === "SLOT_OUT_OF_RANGE",
  );
  const [l] = await remote.step([{ seqId: "z", tokens: [1, 2], slot: 2 }]);
  assert.equal(l!.length, TINY_CONFIG.vocabSize);
  remote.release("z");
});

test("adapters laid out in shared memory by the load pool reach the runtime thread and replace a slot", async () => {
  const adapterDir = join(dir, "shared-adapter");
  await writePeftAdapter(adapterDir, generateRandomPeft(TINY_CONFIG, { rank: 8, seed: 23 }));
  const pool = new AdapterLoadPool(TINY_CONFIG, remote.slotLayout, {
    threads: 1,
    shared: true,
    inlineBelowBytes: 0,
  });
  try {
    const prepared = await pool.load(adapterDir);
    assert.ok(prepared.buffer instanceof SharedArrayBuffer);
    remote.loadAdapter(3, prepared);
    local.loadAdapter(3, prepared);
    const rows = [{ seqId: "s", tokens: [9, 8, 7], slot: 3 }];
    const [a] = await local.step(rows);
    const [b] = await remote.step(rows);
    assert.deepEqual(b, a);
    local.release("s");
    remote.release("s");
  } finally {
    await pool.close();
  }
});
