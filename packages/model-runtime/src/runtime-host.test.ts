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
import { argmax, Sampler, type SamplingParams } from "./sampler.ts";

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

/** Three rows (base + two adapters) with their prompts; the third row's sequence is `third`. */
const promptRows = (third: string) => [
  { seqId: "a", tokens: [72, 101, 108, 108, 111], slot: 0 },
  { seqId: "b", tokens: [1, 2, 3], slot: 1 },
  { seqId: third, tokens: [200, 17, 5, 9], slot: 2 },
];

/** Greedy decode of three rows (base + two adapters) batched together, 12 steps. */
async function greedy(rt: StepRuntime): Promise<number[][]> {
  const out: number[][] = [[], [], []];
  let rows = promptRows("c");
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

/**
 * Decode where the runtime samples (`stepSample`): greedy row a, seeded temperature rows b and c
 * (c with top-p); row "p" is a prompt fed in two chunks, its first chunk not sampled.
 */
async function sampledOnRuntime(rt: StepRuntime, params: SamplingParams[]): Promise<number[][]> {
  const out: number[][] = [[], [], []];
  const first = await rt.stepSample([{ seqId: "p", tokens: [3, 4], slot: 0 }]);
  assert.deepEqual([...first], [-1], "a row without `sample` draws nothing");
  let rows = promptRows("p");
  for (let s = 0; s < 12; s++) {
    const tokens = await rt.stepSample(rows.map((r, i) => ({ ...r, sample: params[i]! })));
    rows = rows.map((r, i) => {
      out[i]!.push(tokens[i]!);
      return { ...r, tokens: [tokens[i]!] };
    });
  }
  for (const r of rows) rt.release(r.seqId);
  return out;
}

/** The same decode sampled on this thread, from `step`'s logits, one `Sampler` per request. */
async function sampledHere(rt: StepRuntime, params: SamplingParams[]): Promise<number[][]> {
  const out: number[][] = [[], [], []];
  const samplers = params.map((p) => new Sampler(p));
  await rt.step([{ seqId: "p", tokens: [3, 4], slot: 0 }]);
  let rows = promptRows("p");
  for (let s = 0; s < 12; s++) {
    const logits = await rt.step(rows);
    rows = rows.map((r, i) => {
      const t = samplers[i]!.sample(logits[i]!);
      out[i]!.push(t);
      return { ...r, tokens: [t] };
    });
  }
  for (const r of rows) rt.release(r.seqId);
  return out;
}

test("sampling on the runtime's thread draws the same tokens as sampling here (greedy, seeded temperature, top-p)", async () => {
  const params: SamplingParams[] = [
    { temperature: 0 },
    { temperature: 1.3, seed: 11 },
    { temperature: 0.9, topP: 0.8, seed: "req-7" },
  ];
  const expected = await sampledHere(local, params);
  assert.deepEqual(await sampledOnRuntime(remote, params), expected, "worker thread");
  assert.deepEqual(await sampledOnRuntime(local, params), expected, "this thread");
  assert.ok(
    expected[1]!.some((t, i) => t !== expected[0]![i]),
    "temperature rows differ from the greedy row",
  );
  // A released sequence's sampler is gone: the same request again draws the same tokens (its
  // PRNG restarts from the seed) rather than continuing the old stream.
  assert.deepEqual(await sampledOnRuntime(remote, params), expected, "after release, the seed starts over");
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
