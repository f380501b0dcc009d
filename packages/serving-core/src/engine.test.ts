import assert from "node:assert/strict";
import { test } from "node:test";
import { Engine, type StepStats } from "./engine.ts";
import { ServingError } from "./errors.ts";
import type { CompletionResult, InferenceRequest, SchedulerOptions } from "./scheduler.ts";
import {
  DeferredLoader,
  type FakeWeights,
  flush,
  ImmediateLoader,
  makeStack,
  prompt,
} from "./test-helpers.ts";

function makeEngine(o: Parameters<typeof makeStack>[0] = {}) {
  const stack = makeStack(o);
  const steps: StepStats[] = [];
  const finished: CompletionResult[] = [];
  const engine = new Engine<unknown, FakeWeights>({
    scheduler: stack.scheduler,
    cache: stack.cache,
    executor: stack.model,
    clock: stack.clock,
    onStep: (s) => steps.push(s),
    onFinished: (r) => finished.push(r),
  });
  return { ...stack, engine, steps, finished };
}

async function collect(it: AsyncIterable<number>): Promise<number[]> {
  const out: number[] = [];
  for await (const t of it) out.push(t);
  return out;
}

test("streams tokens through iterators and callbacks, with timings and usage", async () => {
  const { engine, steps } = makeEngine();
  const seen: string[] = [];
  const h1 = engine.submit(
    { id: "a", account: "acct", adapterId: "ad1", promptTokens: prompt(5), maxNewTokens: 6 },
    { onToken: (t, i) => seen.push(`${i}:${t}`) },
  );
  const h2 = engine.submit({
    id: "b",
    account: "acct",
    adapterId: null,
    promptTokens: prompt(3),
    maxNewTokens: 4,
  });
  const [t1, t2, t1again] = await Promise.all([collect(h1), collect(h2), collect(h1), engine.runUntilIdle()]);
  assert.deepEqual(t1again, t1, "a handle can be iterated twice");
  const r1 = await h1.result;
  const r2 = await h2.result;
  assert.deepEqual(t1, r1.outputTokens);
  assert.deepEqual(t2, r2.outputTokens);
  assert.deepEqual(
    seen,
    t1.map((t, i) => `${i}:${t}`),
  );
  assert.equal(r1.reason, "length");
  assert.equal(r1.completionTokens, 6);
  assert.equal(r1.promptTokens, 5);
  const t = r1.timings;
  assert.ok(t.admittedAt !== undefined && t.firstTokenAt !== undefined && t.finishedAt !== undefined);
  assert.ok(t.queuedAt <= t.admittedAt && t.admittedAt < t.firstTokenAt && t.firstTokenAt < t.finishedAt);
  assert.ok(steps.length >= 6);
  assert.ok(steps.every((s) => s.tokens <= 64 && s.durationMs > 0));
  const m = engine.metrics();
  assert.equal(m.totals.steps, steps.length);
  assert.equal(m.totals.sampled, 6 + 4);
  assert.equal(m.scheduler.finished.length, 2);
});

test("outputs are identical whether a request runs alone or batched with other adapters", async () => {
  const request = (i: number): InferenceRequest => ({
    id: `q${i}`,
    account: `acct${i % 3}`,
    adapterId: i % 4 === 0 ? null : `ad${i % 5}`,
    promptTokens: prompt(5 + ((i * 7) % 23), i),
    maxNewTokens: 4 + (i % 9),
  });
  const alone = new Map<string, number[]>();
  for (let i = 0; i < 12; i++) {
    const { engine } = makeEngine();
    const h = engine.submit(request(i));
    await engine.runUntilIdle();
    alone.set(h.id, (await h.result).outputTokens);
  }
  // Batched, with a small token budget (chunked prefill), few slots and a tight KV budget
  // (preemption by recomputation) so the plumbing is exercised, under each batching policy.
  const policies: Partial<SchedulerOptions>[] = [
    {},
    { costModel: "padded" },
    { costModel: "padded", prefillMode: "separate" },
    { chunkedPrefill: false, maxBatchTokens: 56 },
  ];
  for (const policy of policies) {
    const { engine, steps } = makeEngine({
      numSlots: 3,
      scheduler: {
        maxBatchTokens: 12,
        maxRunningSequences: 6,
        maxPromptTokens: 40,
        maxNewTokens: 16,
        maxKvTokens: 60,
        ...policy,
      },
    });
    const handles = Array.from({ length: 12 }, (_, i) => engine.submit(request(i)));
    await engine.runUntilIdle();
    let preemptions = 0;
    for (const h of handles) {
      const r = await h.result;
      preemptions += r.preemptions;
      assert.deepEqual(
        r.outputTokens,
        alone.get(h.id),
        `${h.id} differs when batched (${JSON.stringify(policy)})`,
      );
    }
    assert.ok(
      steps.some((s) => s.distinctAdapters >= 2),
      "rows of several adapters shared a step",
    );
    assert.ok(preemptions > 0, `no preemption under ${JSON.stringify(policy)}`);
  }
});

test("stop tokens end a sequence with reason stop; stop() ends it from outside", async () => {
  const { engine } = makeEngine();
  const free = engine.submit({
    id: "free",
    account: "a",
    adapterId: null,
    promptTokens: prompt(4),
    maxNewTokens: 10,
  });
  await engine.runUntilIdle();
  const tokens = (await free.result).outputTokens;
  const stopAt = tokens[3] as number;
  const firstStop = tokens.indexOf(stopAt);
  const h = engine.submit({
    id: "s",
    account: "a",
    adapterId: null,
    promptTokens: prompt(4),
    maxNewTokens: 10,
    stopTokenIds: [stopAt],
  });
  const h2 = engine.submit({
    id: "ext",
    account: "a",
    adapterId: null,
    promptTokens: prompt(6),
    maxNewTokens: 30,
  });
  let n = 0;
  const consumer = (async () => {
    for await (const _ of h2) {
      n += 1;
      if (n === 2) engine.stop("ext");
    }
  })();
  await engine.runUntilIdle();
  await consumer;
  const r = await h.result;
  assert.equal(r.reason, "stop");
  assert.deepEqual(r.outputTokens, tokens.slice(0, firstStop), "the stop token is not part of the output");
  const r2 = await h2.result;
  assert.equal(r2.reason, "stop");
  assert.ok(r2.completionTokens < 30);
});

test("cancel while streaming: the iterator ends, the result says cancelled, the KV cache is released", async () => {
  const { engine, model } = makeEngine();
  const h = engine.submit({
    id: "c",
    account: "a",
    adapterId: "ad",
    promptTokens: prompt(4),
    maxNewTokens: 32,
  });
  const got: number[] = [];
  const consumer = (async () => {
    for await (const t of h) {
      got.push(t);
      if (got.length === 3) h.cancel();
    }
  })();
  await engine.runUntilIdle();
  await consumer;
  const r = await h.result;
  assert.equal(r.reason, "cancelled");
  assert.ok(r.completionTokens >= 3 && r.completionTokens < 32);
  assert.ok(model.released.includes("c"));
  assert.equal(engine.metrics().cache.slots.pinned, 0);
});

test("an executor failure fails the rows of that step with executor_failed; the engine keeps serving", async () => {
  const { engine, model } = makeEngine();
  const h = engine.submit({
    id: "x",
    account: "a",
    adapterId: null,
    promptTokens: prompt(4),
    maxNewTokens: 5,
  });
  model.failNextStep = true;
  const iterated = collect(h).then(
    () => "no error",
    (e: unknown) => (e instanceof ServingError ? e.code : "other"),
  );
  await engine.runUntilIdle();
  const r = await h.result;
  assert.equal(r.reason, "error");
  assert.equal(r.error?.code, "executor_failed");
  assert.equal(await iterated, "executor_failed", "the iterator throws the typed error");
  const ok = engine.submit({
    id: "y",
    account: "a",
    adapterId: null,
    promptTokens: prompt(4),
    maxNewTokens: 5,
  });
  await engine.runUntilIdle();
  assert.equal((await ok.result).reason, "length");
});

test("an executor answer missing a sampled token fails that step's requests instead of hanging them", async () => {
  const stack = makeStack();
  let broken = false;
  const engine = new Engine<unknown, FakeWeights>({
    scheduler: stack.scheduler,
    cache: stack.cache,
    clock: stack.clock,
    executor: {
      step: (batch) => {
        const out = stack.model.step(batch);
        // Two sequences finish together on their first sampled token; drop one answer.
        if (!broken && out.size === 2) {
          broken = true;
          out.delete([...out.keys()][1] as string);
        }
        return out;
      },
      release: (ids) => stack.model.release(ids),
    },
  });
  const a = engine.submit({
    id: "a",
    account: "x",
    adapterId: null,
    promptTokens: prompt(3),
    maxNewTokens: 1,
  });
  const b = engine.submit({
    id: "b",
    account: "y",
    adapterId: null,
    promptTokens: prompt(3),
    maxNewTokens: 1,
  });
  await engine.runUntilIdle();
  const [ra, rb] = await Promise.all([a.result, b.result]);
  assert.equal(broken, true);
  assert.deepEqual([ra.error?.code, rb.error?.code], ["executor_failed", "executor_failed"]);
  assert.equal(stack.cache.metrics().slots.pinned, 0);
  assert.equal(stack.model.kv.size, 0, "KV caches released");
});

test("background loop: sleeps while adapters load (no busy steps), wakes on load; close fails the rest", async () => {
  const loader = new DeferredLoader();
  const { engine, steps } = makeEngine({ loader });
  engine.start();
  const h = engine.submit({
    id: "cold",
    account: "a",
    adapterId: "cold",
    promptTokens: prompt(4),
    maxNewTokens: 3,
  });
  for (let i = 0; i < 5; i++) await flush();
  assert.equal(steps.length, 0, "no step ran while the only request waits for its adapter");
  loader.complete("cold");
  const r = await h.result;
  assert.equal(r.reason, "length");
  const stuck = engine.submit({
    id: "stuck",
    account: "a",
    adapterId: "never",
    promptTokens: prompt(4),
    maxNewTokens: 3,
  });
  await flush();
  await engine.close();
  const rs = await stuck.result;
  assert.equal(rs.reason, "error");
  assert.equal(rs.error?.code, "shutting_down");
  assert.throws(
    () =>
      engine.submit({ id: "late", account: "a", adapterId: null, promptTokens: prompt(1), maxNewTokens: 1 }),
    (e: unknown) => e instanceof ServingError && e.code === "shutting_down",
  );
});

test("close() while runUntilIdle() waits on a load: one loop, and the request ends with shutting_down", async () => {
  const { engine } = makeEngine({ loader: new DeferredLoader() });
  const h = engine.submit({
    id: "w",
    account: "a",
    adapterId: "never",
    promptTokens: prompt(2),
    maxNewTokens: 2,
  });
  const idle = engine.runUntilIdle();
  await flush();
  assert.throws(() => engine.start(), /already running/);
  await engine.close();
  await idle;
  assert.equal((await h.result).error?.code, "shutting_down");
});

test("determinism: the same inputs give the same tokens, step stats and timings", async () => {
  const run = async () => {
    const options: Partial<SchedulerOptions> = {
      maxBatchTokens: 20,
      maxRunningSequences: 5,
      maxKvTokens: 96,
    };
    const { engine, steps, finished } = makeEngine({
      numSlots: 4,
      loader: new ImmediateLoader(),
      scheduler: options,
    });
    for (let i = 0; i < 30; i++) {
      engine.submit({
        id: `d${i}`,
        account: `acct${i % 4}`,
        adapterId: i % 3 === 0 ? null : `ad${i % 7}`,
        promptTokens: prompt(3 + (i % 11), i),
        maxNewTokens: 2 + (i % 6),
        priority: i % 2,
      });
    }
    await engine.runUntilIdle();
    return { steps, finished, metrics: engine.metrics() };
  };
  const a = await run();
  const b = await run();
  assert.equal(a.finished.length, 30);
  assert.deepEqual(b.steps, a.steps);
  assert.deepEqual(
    b.finished.map((r) => ({ ...r, error: r.error?.code })),
    a.finished.map((r) => ({ ...r, error: r.error?.code })),
  );
  assert.deepEqual(b.metrics, a.metrics);
});
