import assert from "node:assert/strict";
import { test } from "node:test";
import { generateRandomAdapter } from "./adapter.ts";
import { TINY_CONFIG } from "./config.ts";
import {
  AnswerGradientGraph,
  answerGradientShape,
  answerLoraGradient,
  exampleLoraGradients,
  loraGradientBlocks,
  loraSpecOf,
} from "./lora-gradients.ts";
import { generateBaseModel } from "./model.ts";

const model = generateBaseModel(TINY_CONFIG, 5);
const adapter = generateRandomAdapter(TINY_CONFIG, { rank: 2, seed: "grads", strength: 0.2 });
const bytes = (s: string) => [256, ...new TextEncoder().encode(s)];

test("per-row LoRA gradients: the batched per-example outputs equal each row's own gradient, bit for bit on a rerun", async () => {
  const docs = [bytes("the union is strong"), bytes("a short row"), bytes("x".repeat(50))];
  const seq = 24; // the third row is split into three windows
  const a = await exampleLoraGradients(model, adapter, docs, { seq, batch: 2 });
  const spec = loraSpecOf(adapter);
  assert.deepEqual(a.blocks, loraGradientBlocks(model, spec));
  const dim = a.blocks.reduce((s, b) => s + b, 0);
  assert.equal(a.values.length, docs.length * dim);
  // The same definition through the other path (one row, plain batch gradient).
  for (const i of [0, 1]) {
    const d = docs[i]!;
    const w = new Float32Array(d.length - 1).fill(1 / (d.length - 1));
    const g = await answerLoraGradient(model, adapter, d, w);
    let maxDiff = 0;
    let maxAbs = 0;
    for (let u = 0; u < dim; u++) {
      maxDiff = Math.max(maxDiff, Math.abs(g[u]! - a.values[i * dim + u]!));
      maxAbs = Math.max(maxAbs, Math.abs(g[u]!));
    }
    assert.ok(maxAbs > 0, "gradient is not zero");
    assert.ok(maxDiff <= 1e-5 * maxAbs, `row ${i}: ${maxDiff} vs max ${maxAbs}`);
  }
  const again = await exampleLoraGradients(model, adapter, docs, { seq, batch: 2 });
  assert.deepEqual(again.values, a.values);
});

test("answer gradient: tokens with weight 0 contribute nothing", async () => {
  const d = bytes("prompt then answer");
  const w = new Float32Array(d.length - 1);
  const none = await answerLoraGradient(model, adapter, d, w);
  assert.ok(none.every((v) => v === 0));
  w[w.length - 1] = 1;
  const last = await answerLoraGradient(model, adapter, d, w);
  assert.ok(last.some((v) => v !== 0));
});

test("a kept answer graph gives the same bits as a graph built per answer, for answers of its shape; dispose waits for runs", async () => {
  const a = bytes("first answer context");
  const b = bytes("another one, same shape");
  const { seq } = answerGradientShape(model.config, a.length);
  assert.equal(answerGradientShape(model.config, b.length).seq, seq);
  const graph = await AnswerGradientGraph.create(model, adapter, seq);
  const wa = new Float32Array(a.length - 1).fill(0.1);
  const wb = new Float32Array(b.length - 1).fill(0.2);
  const [ga, gb] = await Promise.all([graph.gradient(a, wa), graph.gradient(b, wb)]);
  assert.deepEqual(ga, await answerLoraGradient(model, adapter, a, wa));
  assert.deepEqual(gb, await answerLoraGradient(model, adapter, b, wb));
  const long = bytes("x".repeat(80));
  await assert.rejects(graph.gradient(long, new Float32Array(long.length - 1)), /runs 32 tokens/);
  const running = graph.gradient(a, wa);
  await graph.dispose();
  assert.deepEqual(await running, ga);
  await assert.rejects(graph.gradient(a, wa), /disposed/);
});
