import assert from "node:assert/strict";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { parsePeftAdapter } from "./adapter.ts";
import { TINY_BOS, TINY_CONFIG, TINY_EOS } from "./config.ts";
import { generateBaseModel } from "./model.ts";
import { ModelRuntime } from "./runtime.ts";
import { Trainer, type TrainerOptions, trainingConfigHash } from "./train.ts";
import { batchFromRows, PackedDataset } from "./train-data.ts";

const model = generateBaseModel(TINY_CONFIG, 3);
const enc = (s: string) => [...new TextEncoder().encode(s)];
const TEXTS = [
  "Call me Ishmael. Some years ago, never mind how long precisely.",
  "It is a way I have of driving off the spleen and regulating the circulation.",
  "Whenever I find myself growing grim about the mouth.",
  "There now is your insular city of the Manhattoes, belted round by wharves.",
];
const docs = TEXTS.map((t, i) => ({ tokens: enc(t), source: `c${i % 2}` }));
const OPTIONS: TrainerOptions = {
  mode: "lora",
  lora: { rank: 4, alpha: 8, targetModules: ["q_proj", "k_proj", "v_proj", "o_proj"] },
  batch: 2,
  seq: 16,
  optimizer: { lr: 3e-2, warmupSteps: 2, schedule: "cosine", totalSteps: 40, weightDecay: 0.01 },
  seed: 5,
  intraOpThreads: 2,
};
const dirs: string[] = [];
const disposables: { dispose(): Promise<void> }[] = [];
after(async () => {
  for (const d of disposables) await d.dispose();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function trainer(options: TrainerOptions = OPTIONS): Promise<Trainer> {
  const t = await Trainer.create(model, options);
  disposables.push(t);
  return t;
}

test("the data order is a seeded permutation per epoch, a pure function of (seed, sample)", () => {
  const a = new PackedDataset(docs, { seq: 16, separator: TINY_EOS, seed: 1 });
  const b = new PackedDataset(docs, { seq: 16, separator: TINY_EOS, seed: 1 });
  const c = new PackedDataset(docs, { seq: 16, separator: TINY_EOS, seed: 2 });
  const order = (d: PackedDataset) => Array.from({ length: 3 * d.windows }, (_, i) => d.sampleWindow(i));
  assert.deepEqual(order(a), order(b));
  assert.notDeepEqual(order(a), order(c));
  // every epoch visits every window once
  for (let e = 0; e < 3; e++) {
    const epoch = order(a).slice(e * a.windows, (e + 1) * a.windows);
    assert.deepEqual(
      [...epoch].sort((x, y) => x - y),
      Array.from({ length: a.windows }, (_, i) => i),
    );
  }
  // label tokens are counted per source and sum to the batch's tokens
  const batch = a.batchOf(
    Array.from({ length: a.windows }, (_, i) => i),
    a.windows,
  );
  const total = TEXTS.reduce((s, t) => s + enc(t).length + 1, 0) - 1; // the first token is never a label
  assert.equal(batch.tokens, total);
  assert.equal(
    [...batch.tokensBySource.values()].reduce((s, n) => s + n, 0),
    total,
  );
});

test("LoRA training lowers the loss of the trained text (AdamW, clipping, warm-up + cosine)", async () => {
  const t = await trainer();
  const data = new PackedDataset(docs, { seq: 16, separator: TINY_EOS, seed: 1 });
  const evalBatch = data.batchOf([0, 1], 2);
  const before = (await t.evaluate(evalBatch)).loss;
  for (let s = 0; s < 40; s++) {
    const r = await t.trainStep(data.batchAt(s, 2));
    assert.ok(r.gradNorm > 0 && Number.isFinite(r.loss));
  }
  const afterLoss = (await t.evaluate(evalBatch)).loss;
  console.log(`tiny LoRA: loss ${before.toFixed(3)} -> ${afterLoss.toFixed(3)} after 40 steps`);
  assert.ok(afterLoss < before * 0.7, `loss ${before} -> ${afterLoss}`);
  assert.equal(t.lrAt(0), 1.5e-2, "warm-up");
  assert.ok(Math.abs(t.lrAt(40) - 0.1 * 3e-2) < 1e-12, "cosine ends at 10% of lr");
});

test("resume from a checkpoint gives bit-identical parameters to an uninterrupted run", async () => {
  const data = new PackedDataset(docs, { seq: 16, separator: TINY_EOS, seed: 9 });
  const straight = await trainer();
  for (let s = 0; s < 8; s++) await straight.trainStep(data.batchAt(s, 2));

  const dir = await mkdtemp(join(tmpdir(), "ckpt-"));
  dirs.push(dir);
  const first = await trainer();
  for (let s = 0; s < 5; s++) await first.trainStep(data.batchAt(s, 2));
  await first.saveCheckpoint(join(dir, "ckpt"));
  await first.trainStep(data.batchAt(5, 2)); // progress after the checkpoint is lost in the "crash"

  const resumed = await trainer();
  assert.equal(await resumed.loadCheckpoint(join(dir, "none")), false);
  assert.equal(await resumed.loadCheckpoint(join(dir, "ckpt")), true);
  assert.equal(resumed.step, 5);
  for (let s = resumed.step; s < 8; s++) await resumed.trainStep(data.batchAt(s, 2));
  for (const p of straight.params) {
    assert.deepEqual(resumed.values.get(p.name), straight.values.get(p.name), p.name);
  }
  // a checkpoint of another configuration is refused
  const other = await trainer({ ...OPTIONS, seed: 6 });
  await assert.rejects(other.loadCheckpoint(join(dir, "ckpt")), /different training configuration/);
  assert.notEqual(trainingConfigHash(OPTIONS), trainingConfigHash({ ...OPTIONS, seed: 6 }));
});

test("a checkpoint being replaced is never missing or half-read: readers see the old one or the new one", async () => {
  const data = new PackedDataset(docs, { seq: 16, separator: TINY_EOS, seed: 9 });
  const dir = await mkdtemp(join(tmpdir(), "ckpt-race-"));
  dirs.push(dir);
  const ckpt = join(dir, "ckpt");
  const writer = await trainer();
  await writer.trainStep(data.batchAt(0, 2));
  await writer.saveCheckpoint(ckpt);
  // A writer killed mid-save leaves a half-written directory: it is not what a reader loads.
  await mkdir(join(ckpt, "ckpt-99-1-1"));
  await writeFile(join(ckpt, "ckpt-99-1-1", "trainer.json"), "{");
  const reader = await trainer();
  assert.equal(await reader.loadCheckpoint(ckpt), true);
  assert.equal(reader.step, 1);
  // The writer replaces its checkpoint again and again (as an orphaned trainer of a crashed run
  // may while the resuming run reads it); every read finds a complete one. Replacing the directory
  // by rm-then-rename failed this (a read between the two found none and started from step 0).
  const saved = new Set([1]);
  let writing = true;
  const writes = (async () => {
    for (let i = 0; i < 40; i++) {
      await writer.saveCheckpoint(ckpt);
      saved.add(writer.step);
    }
    writing = false;
  })();
  let reads = 0;
  while (writing) {
    assert.equal(await reader.loadCheckpoint(ckpt), true, `read ${reads} found no checkpoint`);
    assert.ok(saved.has(reader.step));
    reads++;
  }
  await writes;
  assert.ok(reads > 0);
  // Older checkpoint directories, the half-written one included, are gone.
  assert.deepEqual((await readdir(ckpt)).filter((e) => e.startsWith("ckpt-")).length, 1);

  // A checkpoint in the layout before the LATEST pointer (files directly in the directory) loads.
  const legacy = join(dir, "legacy");
  await mkdir(legacy);
  const latest = (await readFile(join(ckpt, "LATEST"), "utf8")).trim();
  for (const f of ["trainer.json", "trainer.safetensors"]) {
    await writeFile(join(legacy, f), await readFile(join(ckpt, latest, f)));
  }
  const old = await trainer();
  assert.equal(await old.loadCheckpoint(legacy), true);
  assert.equal(old.step, 1);
});

test("per-example LoRA gradients sum to the batch gradient and equal each example's own", async () => {
  const opts = { ...OPTIONS, perExampleGrads: true };
  const t = await trainer(opts);
  for (const p of t.params) if (p.name.includes("lora_B")) t.values.get(p.name)!.fill(0.05);
  const rowA = [TINY_BOS, ...enc("whale ahoy")];
  const rowB = [TINY_BOS, ...enc("a white one")];
  const both = batchFromRows([rowA, rowB], 2, 16);
  const { grads, exampleGrads } = await t.gradients(both);
  // the batch loss is the mean over both rows' tokens; one row alone is the mean over its own
  const solo = await t.gradients(batchFromRows([rowA], 2, 16));
  const nA = rowA.length - 1;
  const nAll = rowA.length + rowB.length - 2;
  let maxErr = 0;
  for (const p of t.params) {
    const g = grads.get(p.name)!;
    const ex = exampleGrads.get(p.name)!;
    assert.equal(ex.length, 2 * g.length);
    for (let i = 0; i < g.length; i++) {
      maxErr = Math.max(maxErr, Math.abs(ex[i]! + ex[g.length + i]! - g[i]!));
      // example 0's gradient under the batch's weights = its solo gradient scaled by nA / nAll
      maxErr = Math.max(maxErr, Math.abs(ex[i]! - (solo.grads.get(p.name)![i]! * nA) / nAll));
    }
  }
  assert.ok(maxErr < 1e-5, `max abs error ${maxErr}`);
});

test("the trained adapter, exported as PEFT, gives the runtime's served logits the trainer's loss", async () => {
  const t = await trainer();
  const data = new PackedDataset(docs, { seq: 16, separator: TINY_EOS, seed: 1 });
  for (let s = 0; s < 10; s++) await t.trainStep(data.batchAt(s, 2));
  const files = t.toPeft("tiny");
  const adapter = parsePeftAdapter(TINY_CONFIG, files.adapterConfig, files.safetensors);
  const rt = await ModelRuntime.create(model, { slots: 2, rankBuckets: [4], intraOpThreads: 1 });
  disposables.push(rt);
  rt.loadAdapter(1, adapter);
  const row = [TINY_BOS, ...enc("Call me Ishmael.")];
  const { nll } = await t.evaluate(batchFromRows([row], 2, 16));
  // the served model's next-token NLL at each position equals the training graph's
  let maxErr = 0;
  for (let i = 1; i < row.length; i++) {
    const [logits] = await rt.step([{ seqId: `s${i}`, tokens: row.slice(0, i), slot: 1 }]);
    rt.release(`s${i}`);
    let max = Number.NEGATIVE_INFINITY;
    for (const v of logits!) max = Math.max(max, v);
    let sum = 0;
    for (const v of logits!) sum += Math.exp(v - max);
    const servedNll = max + Math.log(sum) - logits![row[i]!]!;
    maxErr = Math.max(maxErr, Math.abs(servedNll - nll[i - 1]!));
  }
  assert.ok(maxErr < 1e-3, `max nll difference ${maxErr}`);
});

test("tokensBySourceOfRun counts what the run's batches train on", () => {
  const d = new PackedDataset(docs, { seq: 16, separator: TINY_EOS, seed: 4 });
  const steps = 7;
  const batch = 3;
  const expected = new Map<string, number>();
  for (let s = 0; s < steps; s++) {
    for (const [k, n] of d.batchAt(s, batch).tokensBySource) expected.set(k, (expected.get(k) ?? 0) + n);
  }
  const got = d.tokensBySourceOfRun(steps * batch);
  assert.deepEqual(new Map([...got].sort()), new Map([...expected].sort()));
});
