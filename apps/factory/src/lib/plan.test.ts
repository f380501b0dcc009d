// The factory's default warm-up, as the trainer receives it (pure: no model is loaded).
import assert from "node:assert/strict";
import { test } from "node:test";
import { type ResolvedHyperparameters, trainerOptions } from "./plan.ts";

const H: ResolvedHyperparameters = {
  n_epochs: 1,
  batch_size: 4,
  learning_rate_multiplier: 1,
  lora_rank: 8,
  lora_alpha: 16,
  seq_len: 128,
  max_steps: null,
  warmup_steps: null,
  weight_decay: 0,
};
const warmup = (steps: number, h = H) => trainerOptions(h, steps, 1, 1).optimizer.warmupSteps;

test("the default warm-up is a real one (>= 2 steps, <= 10 % of the run) or none, and 5 % from 40 steps on", () => {
  for (let steps = 1; steps <= 1_000; steps++) {
    const w = warmup(steps)!;
    // 1 step would be lr * 1/1 at step 0: no warm-up, only a cosine shifted by one step.
    assert.ok(w === 0 || (w >= 2 && w <= steps * 0.1), `${steps} steps: ${w} warm-up steps`);
    if (steps >= 40) assert.equal(w, Math.floor(steps * 0.05), `${steps} steps: 5 % as before`);
  }
  assert.equal(warmup(19), 0, "2 steps would be over 10 % of the run: none");
  assert.equal(warmup(20), 2);
  assert.equal(warmup(39), 2);
  assert.equal(warmup(400), 20, "the demo's 400-step run is unchanged");
  assert.equal(warmup(30, { ...H, warmup_steps: 1 }), 1, "a job's own warmup_steps is kept");
  assert.equal(warmup(400, { ...H, warmup_steps: 0 }), 0);
});
