import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { generateRandomPeft, loadPeftAdapter, writePeftAdapter } from "./adapter.ts";
import { generate, loadModel } from "./generate.ts";
import { writeBaseModelDir } from "./model.ts";
import { ModelRuntime } from "./runtime.ts";

test("end to end: model dir + PEFT dir -> runtime slot -> seeded generation with stop conditions", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), "mr-e2e-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const tiny = await loadModel({ tiny: true, seed: 5 });
  await writeBaseModelDir(join(dir, "base"), tiny.model);
  await writePeftAdapter(
    join(dir, "adapter"),
    generateRandomPeft(tiny.model.config, { rank: 8, seed: "e2e" }),
  );
  const { model, tokenizer } = await loadModel({ dir: join(dir, "base") });
  const rt = await ModelRuntime.create(model, { slots: 2, intraOpThreads: 2 });
  t.after(() => rt.dispose());
  rt.loadAdapter(1, await loadPeftAdapter(model.config, join(dir, "adapter")));
  const prompt = tokenizer.encode(tokenizer.applyChatTemplate([{ role: "user", content: "hi" }]));
  const run = (slot: number, seed: number) =>
    generate(rt, tokenizer, {
      prompt,
      slot,
      sampling: { temperature: 0.8, topP: 0.9, seed },
      stop: { maxTokens: 16 },
    });
  const a = await run(1, 1);
  assert.deepEqual(await run(1, 1), a, "same seed, same completion");
  assert.ok(a.tokens.length <= 16);
  const base = await generate(rt, tokenizer, { prompt, slot: 0, stop: { maxTokens: 16 } });
  const lora = await generate(rt, tokenizer, { prompt, slot: 1, stop: { maxTokens: 16 } });
  assert.notDeepEqual(base.tokens, lora.tokens, "the adapter changes the greedy completion");
  // a stop string taken from the greedy output ends generation there and is cut off
  const stopAt = lora.text.slice(3, 5);
  if (stopAt.length === 2) {
    const cut = await generate(rt, tokenizer, { prompt, slot: 1, stop: { maxTokens: 16, stop: [stopAt] } });
    assert.equal(cut.finishReason, "stop");
    assert.equal(cut.text, lora.text.slice(0, lora.text.indexOf(stopAt)));
  }
  assert.equal(rt.activeSequences, 0);
});
