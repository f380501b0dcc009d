import assert from "node:assert/strict";
import { after, test } from "node:test";
import {
  finiteDifferenceCheck,
  GRAD_CHECK_BATCH,
  GRAD_CHECK_CONFIG,
  gradCheckModel,
  loraGradCheck,
  referenceLoss,
} from "./grad-check.ts";
import type { BaseModel } from "./model.ts";
import { Trainer } from "./train.ts";

// The check itself (model, batch, finite differences against the f64 reference) is in
// grad-check.ts, shared with bench/factory.ts.

const trainers: Trainer[] = [];
after(async () => {
  for (const t of trainers) await t.dispose();
});

test("LoRA (every projection, GQA): loss equals the reference, gradients match finite differences", async () => {
  const r = await loraGradCheck(6);
  assert.ok(
    Math.abs(r.loss - r.referenceLoss) < 1e-4 * Math.abs(r.referenceLoss),
    `loss ${r.loss} vs reference ${r.referenceLoss}`,
  );
  assert.deepEqual(r.zeroTensors, [], "every LoRA factor gets a gradient");
  console.log(
    `LoRA grad check: ${r.checked} coordinates, max relative error ${r.maxRelErr.toExponential(2)}`,
  );
  assert.ok(r.checked >= 2 * 7 * 2 * 6 - 4, `checked ${r.checked}`);
  assert.ok(r.maxRelErr < 1e-3, `max relative error ${r.maxRelErr}`);
});

test("all weights of a small model: gradients of every tensor match finite differences", async () => {
  const model = gradCheckModel();
  const trainer = await Trainer.create(model, {
    mode: "full",
    batch: GRAD_CHECK_BATCH.batch,
    seq: GRAD_CHECK_BATCH.seq,
    optimizer: { lr: 1e-3 },
    seed: 1,
    intraOpThreads: 1,
  });
  trainers.push(trainer);
  const { loss, grads } = await trainer.gradients(GRAD_CHECK_BATCH);
  const current: BaseModel = {
    config: GRAD_CHECK_CONFIG,
    weights: new Map(
      trainer.params.map((p) => [p.name, { shape: p.shape, data: trainer.values.get(p.name)! }]),
    ),
  };
  const ref = referenceLoss(current);
  assert.ok(Math.abs(loss - ref) < 1e-4 * Math.abs(ref), `loss ${loss} vs reference ${ref}`);
  assert.equal(grads.size, trainer.params.length);
  const { maxRelErr, checked, zeroTensors } = finiteDifferenceCheck(
    grads,
    trainer.values,
    () => referenceLoss(current),
    4,
  );
  assert.deepEqual(zeroTensors, [], "every tensor gets a gradient");
  console.log(`full grad check: ${checked} coordinates, max relative error ${maxRelErr.toExponential(2)}`);
  assert.ok(maxRelErr < 1e-3, `max relative error ${maxRelErr}`);
});
