import assert from "node:assert/strict";
import { test } from "node:test";
import { argmax, Sampler, StopCondition } from "./sampler.ts";

test("greedy is argmax with ties to the lowest index", () => {
  assert.equal(argmax([1, 3, 3, 2]), 1);
  assert.equal(new Sampler().sample(Float32Array.of(0, 5, 1)), 1);
});

test("seeded sampling is reproducible and follows the softmax", () => {
  const logits = Float32Array.of(2, 1, 0, -1);
  const draw = (seed: number) => {
    const s = new Sampler({ temperature: 1, seed });
    return Array.from({ length: 4000 }, () => s.sample(logits));
  };
  const a = draw(7);
  assert.deepEqual(a, draw(7));
  assert.notDeepEqual(a, draw(8));
  const z = [...logits].reduce((acc, l) => acc + Math.exp(l), 0);
  for (let k = 0; k < 4; k++) {
    const freq = a.filter((x) => x === k).length / a.length;
    assert.ok(Math.abs(freq - Math.exp(logits[k]!) / z) < 0.03, `token ${k}: ${freq}`);
  }
});

test("top-p keeps only the nucleus", () => {
  // probabilities ~ [0.64, 0.24, 0.09, 0.03]: top-p 0.7 keeps the first two tokens only
  const s = new Sampler({ temperature: 1, topP: 0.7, seed: 1 });
  const seen = new Set(Array.from({ length: 2000 }, () => s.sample(Float32Array.of(2, 1, 0, -1))));
  assert.deepEqual([...seen].sort(), [0, 1]);
  const tiny = new Sampler({ temperature: 1, topP: 0.01, seed: 1 });
  assert.equal(tiny.sample(Float32Array.of(0, 3, 1)), 1);
});

test("stop conditions: EOS, stop strings (cut from the text), max tokens, stream hold-back", () => {
  const stop = new StopCondition({ maxTokens: 5, stop: ["END", "\n\n"], eosTokenIds: [9] });
  assert.deepEqual(stop.check(9, 1, "abc"), { done: true, reason: "eos", text: "abc" });
  assert.deepEqual(stop.check(1, 2, "abc EN"), { done: false });
  assert.deepEqual(stop.check(1, 3, "abc END more"), { done: true, reason: "stop", text: "abc " });
  assert.deepEqual(stop.check(1, 5, "abcde"), { done: true, reason: "length", text: "abcde" });
  assert.equal(stop.streamableLength("abc EN"), 4);
  assert.equal(stop.streamableLength("abc\n"), 3);
  assert.equal(stop.streamableLength("abc"), 3);
});
