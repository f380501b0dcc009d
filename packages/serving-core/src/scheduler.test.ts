import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { ServingError } from "./errors.ts";
import type { CompletionResult, SchedulerEvent } from "./scheduler.ts";
import { DeferredLoader, flush, ImmediateLoader, makeStack, prompt } from "./test-helpers.ts";

function isCode(code: string) {
  return (e: unknown) => e instanceof ServingError && e.code === code;
}

function finishedOf(events: readonly SchedulerEvent[]): CompletionResult[] {
  return events.flatMap((e) => (e.type === "finished" ? [e.result] : []));
}

test("limits: typed errors for prompt, output, context length, bad input and queue size", () => {
  const { scheduler } = makeStack({
    scheduler: { maxPromptTokens: 10, maxNewTokens: 8, maxContextTokens: 14, maxQueuedPerAccount: 2 },
  });
  const base = { account: "acct", adapterId: null, maxNewTokens: 4 };
  assert.throws(
    () => scheduler.submit({ ...base, id: "1", promptTokens: prompt(11) }),
    isCode("prompt_too_long"),
  );
  assert.throws(
    () => scheduler.submit({ ...base, id: "2", promptTokens: prompt(2), maxNewTokens: 9 }),
    isCode("max_tokens_too_large"),
  );
  assert.throws(
    () => scheduler.submit({ ...base, id: "3", promptTokens: prompt(10), maxNewTokens: 5 }),
    isCode("context_length_exceeded"),
  );
  assert.throws(() => scheduler.submit({ ...base, id: "4", promptTokens: [] }), isCode("invalid_request"));
  assert.throws(
    () => scheduler.submit({ ...base, id: "5", promptTokens: prompt(2), maxNewTokens: 0 }),
    isCode("invalid_request"),
  );
  scheduler.submit({ ...base, id: "6", promptTokens: prompt(2) });
  assert.throws(
    () => scheduler.submit({ ...base, id: "6", promptTokens: prompt(2) }),
    isCode("invalid_request"),
  );
  scheduler.submit({ ...base, id: "7", promptTokens: prompt(2) });
  assert.throws(() => scheduler.submit({ ...base, id: "8", promptTokens: prompt(2) }), isCode("queue_full"));
  scheduler.submit({ ...base, account: "other", id: "9", promptTokens: prompt(2) });
  assert.equal(scheduler.stats().rejected, 7);
  assert.equal(scheduler.stats().waiting, 3);
});

test("rate limits: request and token buckets, exact retry-after, refund of unused output tokens", () => {
  const { scheduler, clock, step } = makeStack({
    scheduler: {
      rateLimits: (account) =>
        account === "limited"
          ? { requests: { capacity: 2, refillPerMinute: 60 }, tokens: { capacity: 40, refillPerMinute: 600 } }
          : undefined,
    },
  });
  const req = (id: string, n = 4, maxNewTokens = 8) => ({
    id,
    account: "limited",
    adapterId: null,
    promptTokens: prompt(n),
    maxNewTokens,
  });
  scheduler.submit(req("r1")); // 12 tokens
  scheduler.submit(req("r2")); // 24 tokens, 2 requests
  let err: unknown;
  try {
    scheduler.submit(req("r3"));
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof ServingError && err.code === "rate_limited");
  assert.equal(err.httpStatus, 429);
  assert.equal(err.retryAfterMs, 1000, "one request refills in 60000/60 ms");
  // Unlimited accounts are unaffected.
  scheduler.submit({ ...req("u1"), account: "free" });
  clock.advance(1000);
  // Token bucket: 40 - 24 + 10 (1 s at 600/min) = 26 available; 4 + 30 = 34 needed -> wait 800 ms.
  assert.throws(
    () => scheduler.submit(req("r4", 4, 30)),
    (e: unknown) => {
      return e instanceof ServingError && e.code === "rate_limited" && e.retryAfterMs === 800;
    },
  );
  // A request bigger than the bucket can never pass: no retry-after.
  assert.throws(
    () => scheduler.submit(req("r5", 10, 32)),
    (e: unknown) => {
      return e instanceof ServingError && e.code === "rate_limited" && e.retryAfterMs === undefined;
    },
  );
  // Finishing early refunds the reserved-but-unused output tokens.
  scheduler.cancel("r1");
  scheduler.cancel("r2");
  step();
  scheduler.submit(req("r6", 4, 30)); // would have needed to wait without the refund
});

/** Step until `done()` or `limit` steps; loads complete between steps. Returns steps run. */
async function runSteps(
  step: () => { res: { events: SchedulerEvent[] } },
  done: () => boolean,
  limit: number,
) {
  let n = 0;
  while (!done() && n < limit) {
    step();
    n += 1;
    await flush();
  }
  return n;
}

test("fairness: a tenant flooding 1,000 requests cannot delay another tenant's single request", async () => {
  const maxNewTokens = 16;
  const { scheduler, step } = makeStack({
    scheduler: { maxRunningSequences: 8, maxBatchTokens: 64, maxNewTokens },
  });
  for (let i = 0; i < 1000; i++) {
    scheduler.submit({
      id: `a${i}`,
      account: "flood",
      adapterId: "hot",
      promptTokens: prompt(8, i),
      maxNewTokens,
    });
  }
  await runSteps(step, () => false, 40); // the flood is well under way
  let firstToken = -1;
  let steps = 0;
  scheduler.submit({
    id: "b",
    account: "victim",
    adapterId: "cold",
    promptTokens: prompt(8),
    maxNewTokens: 4,
  });
  while (firstToken < 0 && steps < 5000) {
    const { res } = step();
    steps += 1;
    if (res.events.some((e) => e.type === "token" && e.id === "b")) firstToken = steps;
    await flush();
  }
  // Bound: the adapter load (1-2 steps) + one running sequence finishing (<= maxNewTokens
  // steps) + its prefill. FIFO would take about 1000 * 16 / 8 = 2,000 steps.
  assert.ok(
    firstToken > 0 && firstToken <= maxNewTokens + 4,
    `victim's first token after ${firstToken} steps`,
  );
  assert.ok(scheduler.stats().waiting > 900, "the flood is still queued: fairness, not an empty queue");
});

test("fairness: one hot adapter cannot starve another adapter of the same account", async () => {
  const maxNewTokens = 12;
  const { scheduler, step } = makeStack({
    scheduler: { maxRunningSequences: 4, maxBatchTokens: 32, maxNewTokens },
  });
  for (let i = 0; i < 1000; i++) {
    scheduler.submit({
      id: `h${i}`,
      account: "acct",
      adapterId: "hot",
      promptTokens: prompt(4, i),
      maxNewTokens,
    });
  }
  await runSteps(step, () => false, 30);
  scheduler.submit({
    id: "rare",
    account: "acct",
    adapterId: "rare",
    promptTokens: prompt(4),
    maxNewTokens: 2,
  });
  let steps = 0;
  let first = -1;
  while (first < 0 && steps < 5000) {
    const { res } = step();
    steps += 1;
    if (res.events.some((e) => e.type === "token" && e.id === "rare")) first = steps;
    await flush();
  }
  assert.ok(first > 0 && first <= maxNewTokens + 4, `rare adapter's first token after ${first} steps`);
});

test("a cold adapter never stalls rows of warm adapters", async () => {
  const loader = new DeferredLoader();
  const { scheduler, step, cache } = makeStack({ loader, scheduler: { maxRunningSequences: 4 } });
  scheduler.submit({ id: "w0", account: "a", adapterId: "warm", promptTokens: prompt(4), maxNewTokens: 30 });
  step();
  loader.complete("warm");
  await flush();
  scheduler.submit({ id: "c0", account: "b", adapterId: "cold", promptTokens: prompt(4), maxNewTokens: 3 });
  scheduler.submit({ id: "w1", account: "a", adapterId: "warm", promptTokens: prompt(5), maxNewTokens: 30 });
  for (let i = 0; i < 10; i++) {
    const { plan } = step();
    const ids = [...plan.batch.prefill, ...plan.batch.decode].map((r) => r.seqId);
    assert.ok(ids.includes("w0"), `warm row missing at step ${i}`);
    if (i > 0) assert.ok(ids.includes("w1"));
    assert.ok(!ids.includes("c0"), "not admitted before its adapter is in a slot");
    await flush();
  }
  assert.deepEqual(loader.pendingIds(), ["cold"], "loading in the background, single-flight");
  loader.complete("cold");
  await flush();
  const { plan } = step();
  assert.ok(plan.batch.prefill.some((r) => r.seqId === "c0" && r.adapterId === "cold"));
  assert.equal(cache.metrics().ram.misses, 2);
});

test("a cold adapter's load starts at submit (not a step later) while the queue is short", () => {
  const loader = new DeferredLoader();
  const { scheduler } = makeStack({ loader, scheduler: { prefetchDepth: 2, maxRunningSequences: 2 } });
  scheduler.submit({ id: "c0", account: "a", adapterId: "cold-0", promptTokens: prompt(4), maxNewTokens: 2 });
  assert.deepEqual(loader.calls, ["cold-0"], "no schedule() has run yet");
  scheduler.submit({ id: "c1", account: "b", adapterId: "cold-1", promptTokens: prompt(4), maxNewTokens: 2 });
  // A third waiting request could be behind prefetchDepth adapters in fair order, and not
  // fit in the running batch: it waits for the step's prefetch, which sees the whole queue.
  scheduler.submit({ id: "c2", account: "c", adapterId: "cold-2", promptTokens: prompt(4), maxNewTokens: 2 });
  assert.deepEqual(loader.calls, ["cold-0", "cold-1"]);
  // When every waiting request fits in the running batch, each will be admitted as soon as its
  // adapter is resident: a burst starts all its loads at submit, not prefetchDepth of them.
  const roomy = makeStack({
    loader: new DeferredLoader(),
    maxConcurrentLoads: 8,
    scheduler: { prefetchDepth: 2 },
  });
  for (let i = 0; i < 5; i++)
    roomy.scheduler.submit({
      id: `b${i}`,
      account: `acct${i}`,
      adapterId: `burst-${i}`,
      promptTokens: prompt(4),
      maxNewTokens: 2,
    });
  assert.deepEqual((roomy.loader as DeferredLoader).calls, [
    "burst-0",
    "burst-1",
    "burst-2",
    "burst-3",
    "burst-4",
  ]);
  const none = makeStack({ loader: new DeferredLoader(), scheduler: { prefetchDepth: 0 } });
  none.scheduler.submit({
    id: "x",
    account: "a",
    adapterId: "cold",
    promptTokens: prompt(4),
    maxNewTokens: 2,
  });
  assert.deepEqual((none.loader as DeferredLoader).calls, [], "prefetchDepth 0 turns prefetch off");
});

test("timings say where a request's adapter was on arrival and count its waits in steps", async () => {
  const loader = new DeferredLoader();
  const { scheduler, step } = makeStack({ loader });
  const results = new Map<string, CompletionResult>();
  const run = () => {
    for (const r of finishedOf(step().res.events)) results.set(r.id, r);
  };
  scheduler.submit({ id: "b", account: "a", adapterId: null, promptTokens: prompt(4), maxNewTokens: 1 });
  scheduler.submit({ id: "c", account: "a", adapterId: "x", promptTokens: prompt(4), maxNewTokens: 1 });
  run(); // step 1: the base request runs, x is loading
  run(); // step 2: still loading
  loader.complete("x");
  await flush();
  run(); // step 3: x written into a slot, c admitted and prefilled
  scheduler.submit({ id: "w", account: "a", adapterId: "x", promptTokens: prompt(4), maxNewTokens: 1 });
  run(); // step 4
  const t = (id: string) => results.get(id)!.timings;
  assert.deepEqual(
    [t("b").adapterTier, t("b").queuedStep, t("b").admittedStep, t("b").firstTokenStep],
    ["base", 0, 1, 1],
  );
  assert.deepEqual(
    [t("c").adapterTier, t("c").queuedStep, t("c").admittedStep, t("c").firstTokenStep],
    ["cold", 0, 3, 3],
  );
  assert.deepEqual(
    [t("w").adapterTier, t("w").queuedStep, t("w").admittedStep, t("w").firstTokenStep],
    ["slot", 3, 4, 4],
  );
});

test("a request whose adapter loads during a prefill step is admitted at the next step, in either prefill mode", async () => {
  for (const prefillMode of ["mixed", "separate"] as const) {
    const loader = new DeferredLoader();
    const { scheduler, step } = makeStack({ loader, scheduler: { prefillMode, costModel: "padded" } });
    const base = (id: string, maxNewTokens = 30) =>
      scheduler.submit({ id, account: "a", adapterId: null, promptTokens: prompt(4), maxNewTokens });
    base("d0");
    step();
    step(); // d0 decoding
    scheduler.submit({ id: "c", account: "b", adapterId: "x", promptTokens: prompt(4), maxNewTokens: 2 });
    base("d1"); // another arrival: in separate mode the next step is a prefill step for it
    const { plan } = step();
    assert.ok(!plan.batch.rows.some((r) => r.seqId === "c"), "not admitted while x loads");
    loader.complete("x"); // the load finishes during that step
    await flush();
    let steps = 0;
    for (;;) {
      steps += 1;
      if (step().plan.batch.rows.some((r) => r.seqId === "c")) break;
      assert.ok(steps < 10, "admitted within a bounded number of steps");
    }
    // separate: the step after a prefill step decodes (so decodes are never starved); the
    // request that prefill step passed over for its load rides along with the decode rows
    // instead of waiting for the next prefill step (2 steps after its load landed)
    assert.equal(steps, 1, prefillMode);
  }
});

/** A separate-mode stack over a loader the test completes, and a submit of 4-token prompts for account "a". */
function separateModeStack() {
  const loader = new DeferredLoader();
  const { scheduler, step } = makeStack({
    loader,
    scheduler: { prefillMode: "separate", costModel: "padded" },
  });
  const submit = (id: string, adapterId: string | null, maxNewTokens = 30) =>
    scheduler.submit({ id, account: "a", adapterId, promptTokens: prompt(4), maxNewTokens });
  return { loader, step, submit };
}

test("separate mode: only requests held back by their adapter's load ride a decode step", async () => {
  const { loader, step, submit } = separateModeStack();
  submit("d0", null);
  step(); // prefill d0
  step(); // d0 decodes
  submit("c", "x"); // cold: loading
  submit("d1", null);
  const p1 = step().plan; // prefill step: d1 admitted, c passed over for its load
  assert.deepEqual(
    p1.batch.rows.map((r) => r.seqId),
    ["d1"],
  );
  loader.complete("x"); // lands during that prefill step
  await flush();
  submit("w", null); // a warm arrival during the prefill step
  const p2 = step().plan;
  assert.deepEqual(p2.batch.decode.map((r) => r.seqId).sort(), ["d0", "d1"], "the decode rows decode");
  assert.deepEqual(
    p2.batch.prefill.map((r) => r.seqId),
    ["c"],
    "c rides; w (not held by a load) waits for the next prefill step",
  );
  const p3 = step().plan;
  assert.deepEqual(
    p3.batch.rows.map((r) => r.seqId),
    ["w"],
    "then a prefill step for w",
  );
});

test("separate mode: the rest of a wave rides the decode step of the wave's first rows", async () => {
  const { loader, step, submit } = separateModeStack();
  // An idle engine: the wave's first arrival starts a prefill step on its own...
  submit("w0", null);
  assert.deepEqual(
    step().plan.batch.rows.map((r) => r.seqId),
    ["w0"],
  );
  // ...the rest of the wave arrives during it, one of them on an adapter still loading.
  submit("w1", null);
  submit("w2", null);
  submit("c", "x");
  const p2 = step().plan;
  assert.deepEqual(
    p2.batch.decode.map((r) => r.seqId),
    ["w0"],
    "the first row decodes",
  );
  assert.deepEqual(
    p2.batch.prefill.map((r) => r.seqId),
    ["w1", "w2"],
    "the ready arrivals ride beside it instead of waiting a decode step for it",
  );
  loader.complete("x");
  await flush();
  const p3 = step().plan;
  assert.deepEqual(
    p3.batch.rows.map((r) => r.seqId),
    ["c"],
    "the load landed: a prefill step for c (the decode rows decoded in the step before)",
  );
  // The running batch now holds sequences past their first token: arrivals wait for a prefill
  // step again, and the decode rows decode at least every other step.
  const p4 = step().plan;
  assert.deepEqual(p4.batch.decode.map((r) => r.seqId).sort(), ["c", "w0", "w1", "w2"]);
  submit("late", null);
  assert.deepEqual(
    step().plan.batch.rows.map((r) => r.seqId),
    ["late"],
  );
  submit("later", null);
  const p6 = step().plan;
  assert.deepEqual(p6.batch.prefill, [], "later does not ride: the batch is not one fresh wave");
  assert.equal(p6.batch.decode.length, 5);
  assert.deepEqual(
    step().plan.batch.rows.map((r) => r.seqId),
    ["later"],
  );
});

test("prefetch counts only cold adapters: resident ones ahead in fair order do not hold back the loads behind them", async () => {
  const loader = new DeferredLoader();
  const { scheduler, step, cache } = makeStack({
    loader,
    scheduler: { prefetchDepth: 2, maxRunningSequences: 1 },
  });
  scheduler.submit({ id: "r0", account: "a", adapterId: null, promptTokens: prompt(4), maxNewTokens: 30 });
  step(); // r0 holds the only running place: nothing else is admitted below
  for (const id of ["w1", "w2"]) {
    cache.prefetch(id);
    loader.complete(id);
  }
  await flush();
  const req = (id: string, adapterId: string, priority: number) =>
    scheduler.submit({ id, account: "a", adapterId, promptTokens: prompt(4), maxNewTokens: 2, priority });
  req("q1", "w1", 1); // in RAM, first in the account's order (priority)
  req("q2", "w2", 1);
  req("q3", "c1", 0); // cold, behind them; no load at submit (more than prefetchDepth wait)
  req("q4", "c2", 0);
  assert.deepEqual(loader.calls, ["w1", "w2"]);
  step();
  assert.deepEqual(loader.calls, ["w1", "w2", "c1", "c2"], "the step's prefetch reached the cold adapters");
});

test("a failed adapter load fails the waiting requests with a typed error; later requests retry", async () => {
  const loader = new ImmediateLoader();
  loader.failing.add("broken");
  const { scheduler, step } = makeStack({ loader });
  scheduler.submit({ id: "x1", account: "a", adapterId: "broken", promptTokens: prompt(3), maxNewTokens: 2 });
  scheduler.submit({ id: "x2", account: "b", adapterId: "broken", promptTokens: prompt(3), maxNewTokens: 2 });
  scheduler.submit({ id: "ok", account: "a", adapterId: null, promptTokens: prompt(3), maxNewTokens: 2 });
  const results: CompletionResult[] = [];
  for (let i = 0; i < 5; i++) {
    const { plan, res } = step();
    results.push(...finishedOf(plan.events), ...finishedOf(res.events));
    await flush();
  }
  const failed = results.filter((r) => r.reason === "error");
  assert.deepEqual(failed.map((r) => r.id).sort(), ["x1", "x2"]);
  assert.ok(failed.every((r) => r.error?.code === "adapter_load_failed" && r.error.adapterId === "broken"));
  assert.ok(results.some((r) => r.id === "ok" && r.reason === "length"));
  assert.equal(loader.calls.filter((c) => c === "broken").length, 1, "one load for both waiters");
  // Fixed on disk: the next request loads it again and succeeds.
  loader.failing.clear();
  scheduler.submit({ id: "x3", account: "a", adapterId: "broken", promptTokens: prompt(3), maxNewTokens: 2 });
  const done: CompletionResult[] = [];
  for (let i = 0; i < 6; i++) {
    const { plan, res } = step();
    done.push(...finishedOf(plan.events), ...finishedOf(res.events));
    await flush();
  }
  assert.equal(done.find((r) => r.id === "x3")?.reason, "length");
});

test("cancellation frees the queue place, the running place, the slot pin and the KV cache", async () => {
  const { scheduler, step, cache, model } = makeStack({ numSlots: 2, scheduler: { maxRunningSequences: 2 } });
  scheduler.submit({ id: "r1", account: "a", adapterId: "x", promptTokens: prompt(4), maxNewTokens: 30 });
  scheduler.submit({ id: "r2", account: "a", adapterId: "x", promptTokens: prompt(4), maxNewTokens: 30 });
  step();
  await flush();
  step();
  scheduler.submit({ id: "w", account: "b", adapterId: null, promptTokens: prompt(4), maxNewTokens: 30 });
  assert.equal(cache.slots.find("x")?.pins, 2);
  assert.equal(scheduler.stats().running, 2);
  scheduler.cancel("w"); // waiting
  scheduler.cancel("r1"); // running
  const { plan } = step();
  const ids = [...plan.batch.prefill, ...plan.batch.decode].map((r) => r.seqId);
  assert.deepEqual(ids, ["r2"]);
  assert.deepEqual(plan.release, ["r1"]);
  assert.deepEqual(
    finishedOf(plan.events).map((r) => [r.id, r.reason]),
    [
      ["w", "cancelled"],
      ["r1", "cancelled"],
    ],
  );
  assert.equal(cache.slots.find("x")?.pins, 1);
  assert.equal(model.kv.has("r1"), false);
  assert.equal(scheduler.stats().waiting, 0);
  assert.equal(scheduler.cancel("r1"), false, "already finished");
  scheduler.cancel("r2");
  step();
  assert.equal(cache.slots.find("x")?.pins, 0, "slot evictable again");
  assert.equal(scheduler.hasWork(), false);
});

test("chunked prefill keeps every step within the token budget and gives the same output", async () => {
  const run = async (chunkedPrefill: boolean, maxBatchTokens: number) => {
    const { scheduler, step } = makeStack({
      scheduler: {
        chunkedPrefill,
        maxBatchTokens,
        maxRunningSequences: 4,
        maxPromptTokens: 60,
        maxNewTokens: 8,
      },
    });
    for (let i = 0; i < 6; i++) {
      scheduler.submit({
        id: `q${i}`,
        account: `acct${i % 2}`,
        adapterId: i % 3 === 0 ? null : `ad${i % 3}`,
        promptTokens: prompt(20 + i * 7, i),
        maxNewTokens: 8,
      });
    }
    const out = new Map<string, number[]>();
    let maxTokens = 0;
    while (scheduler.hasWork()) {
      const { plan, res } = step();
      const tokens = [...plan.batch.prefill, ...plan.batch.decode].reduce((n, r) => n + r.tokens.length, 0);
      maxTokens = Math.max(maxTokens, tokens);
      for (const r of finishedOf(res.events)) out.set(r.id, r.outputTokens);
      await flush();
    }
    return { out, maxTokens };
  };
  const chunked = await run(true, 16);
  const whole = await run(false, 200);
  assert.ok(chunked.maxTokens <= 16);
  assert.ok(whole.maxTokens > 16);
  assert.deepEqual(chunked.out, whole.out);
  assert.equal(chunked.out.size, 6);
});

test("a per-step prefill budget (maxPrefillTokens) bounds every step's prompt tokens, decode rows aside; outputs unchanged", async () => {
  const run = async (maxPrefillTokens: number | undefined, costModel: "tokens" | "padded") => {
    const { scheduler, step } = makeStack({
      scheduler: {
        maxBatchTokens: 64,
        ...(maxPrefillTokens === undefined ? {} : { maxPrefillTokens }),
        maxRunningSequences: 8,
        maxPromptTokens: 40,
        maxNewTokens: 6,
        costModel,
      },
    });
    // One long prompt, then a burst of short ones a step later (beside its decode rows).
    scheduler.submit({
      id: "long",
      account: "a",
      adapterId: "ad1",
      promptTokens: prompt(30, 1),
      maxNewTokens: 6,
    });
    const steps: { prefill: number[]; decode: number }[] = [];
    const out = new Map<string, number[]>();
    let submitted = false;
    while (scheduler.hasWork() || !submitted) {
      const { plan, res } = step();
      steps.push({
        prefill: plan.batch.prefill.map((r) => r.tokens.length),
        decode: plan.batch.decode.length,
      });
      for (const r of finishedOf(res.events)) out.set(r.id, r.outputTokens);
      if (!submitted) {
        submitted = true;
        for (let i = 0; i < 5; i++) {
          scheduler.submit({
            id: `s${i}`,
            account: `b${i % 2}`,
            adapterId: i % 2 === 0 ? null : "ad2",
            promptTokens: prompt(3, 10 + i),
            maxNewTokens: 6,
          });
        }
      }
      await flush();
    }
    return { steps, out };
  };
  const free = await run(undefined, "tokens");
  const tokens = await run(8, "tokens");
  const padded = await run(6, "padded");
  const cost = (p: number[], pad: boolean) =>
    pad ? p.length * Math.max(0, ...p) : p.reduce((x, y) => x + y, 0);
  // Without the budget the long prompt goes in one step and the burst in one step.
  assert.deepEqual(
    free.steps.flatMap((s) => s.prefill.filter((n) => n > 3)),
    [30],
  );
  assert.ok(free.steps.some((s) => s.prefill.length === 6));
  // With it: chunks of at most 8 (30 = 8 + 8 + 8 + 6), never more than 8 prompt tokens a step,
  // and decode rows still run beside them.
  assert.deepEqual(
    tokens.steps.flatMap((s) => s.prefill.filter((n) => n > 3)),
    [8, 8, 8, 6],
  );
  for (const s of tokens.steps) assert.ok(cost(s.prefill, false) <= 8, `prefill ${s.prefill}`);
  assert.ok(tokens.steps.some((s) => s.prefill.length > 0 && s.decode > 0));
  // Padded cost: rows x longest <= 6, so the burst of 3-token prompts goes two rows a step.
  for (const s of padded.steps) assert.ok(cost(s.prefill, true) <= 6, `prefill ${s.prefill}`);
  assert.ok(padded.steps.filter((s) => s.prefill.length === 2).length >= 2);
  assert.deepEqual(tokens.out, free.out);
  assert.deepEqual(padded.out, free.out);
  assert.equal(free.out.size, 6);
  assert.throws(
    () => makeStack({ scheduler: { maxPrefillTokens: 0 } }),
    (e: unknown) => e instanceof RangeError,
  );
});

test("KV budget: preemption by recomputation respects the budget and does not change outputs", async () => {
  const run = async (maxKvTokens: number | undefined) => {
    const { scheduler, step } = makeStack({
      scheduler: {
        maxRunningSequences: 6,
        maxBatchTokens: 64,
        maxPromptTokens: 16,
        maxNewTokens: 24,
        ...(maxKvTokens === undefined ? {} : { maxKvTokens }),
      },
    });
    for (let i = 0; i < 8; i++) {
      scheduler.submit({
        id: `k${i}`,
        account: `acct${i % 3}`,
        adapterId: `ad${i % 2}`,
        promptTokens: prompt(10, i),
        maxNewTokens: 24,
      });
    }
    const out = new Map<string, number[]>();
    let preempted = 0;
    while (scheduler.hasWork()) {
      const { res } = step();
      assert.ok(maxKvTokens === undefined || scheduler.stats().kvTokens <= maxKvTokens + 6);
      for (const r of finishedOf(res.events)) {
        out.set(r.id, r.outputTokens);
        preempted += r.preemptions;
      }
      await flush();
    }
    return { out, preempted };
  };
  const tight = await run(60);
  const free = await run(undefined);
  assert.ok(tight.preempted > 0, "the tight budget forced preemptions");
  assert.equal(free.preempted, 0);
  assert.deepEqual(tight.out, free.out);
});

test("slot draining: when every slot is pinned, a waiting adapter still gets a slot within a bounded time", async () => {
  // One usable slot, many running sequences of one adapter: without draining the slot
  // would stay pinned as long as the flood lasts.
  const maxNewTokens = 10;
  const { scheduler, step } = makeStack({
    numSlots: 2,
    scheduler: { maxRunningSequences: 4, maxBatchTokens: 32, maxNewTokens },
  });
  for (let i = 0; i < 200; i++) {
    scheduler.submit({
      id: `f${i}`,
      account: "flood",
      adapterId: "a",
      promptTokens: prompt(4, i),
      maxNewTokens,
    });
  }
  await runSteps(step, () => false, 20);
  scheduler.submit({ id: "v", account: "victim", adapterId: "b", promptTokens: prompt(4), maxNewTokens: 2 });
  let steps = 0;
  let first = -1;
  while (first < 0 && steps < 2000) {
    const { res } = step();
    steps += 1;
    if (res.events.some((e) => e.type === "token" && e.id === "v")) first = steps;
    await flush();
  }
  assert.ok(first > 0 && first <= maxNewTokens + 4, `victim waited ${first} steps`);
  assert.ok(scheduler.stats().drains >= 1);
});

test("10,000 registered adapters, Zipf-spread requests: RAM stays within budget and everything finishes", async () => {
  const adapterBytes = 1000;
  const budget = 64 * adapterBytes;
  const { scheduler, step, cache } = makeStack({
    numSlots: 17,
    ramBudgetBytes: budget,
    maxConcurrentLoads: 4,
    loader: new ImmediateLoader(() => adapterBytes),
    scheduler: { maxRunningSequences: 16, maxBatchTokens: 64, maxNewTokens: 4, prefetchDepth: 16 },
  });
  // Deterministic Zipf(1.1) over 10,000 adapters via inverse CDF on a fixed LCG.
  const n = 10_000;
  const cdf: number[] = [];
  let acc = 0;
  for (let k = 1; k <= n; k++) {
    acc += 1 / k ** 1.1;
    cdf.push(acc);
  }
  let seed = 12345;
  const rand = () => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed / 2 ** 32;
  };
  const pick = () => {
    const u = rand() * acc;
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((cdf[mid] as number) < u) lo = mid + 1;
      else hi = mid;
    }
    return `adapter-${lo}`;
  };
  let finished = 0;
  let submitted = 0;
  let peak = 0;
  const total = 1500;
  while (finished < total) {
    while (submitted < total && submitted - finished < 64) {
      scheduler.submit({
        id: `z${submitted}`,
        account: `acct${submitted % 10}`,
        adapterId: pick(),
        promptTokens: prompt(3, submitted),
        maxNewTokens: 4,
      });
      submitted += 1;
    }
    const { res } = step();
    finished += finishedOf(res.events).length;
    const m = cache.metrics().ram;
    peak = Math.max(peak, m.bytesInUse);
    await flush();
  }
  assert.ok(peak <= budget, `RAM peak ${peak} > budget ${budget}`);
  const m = cache.metrics();
  assert.ok(m.ram.evictions > 0 && m.slots.evictions > 0, "tiers were exercised");
  assert.ok(m.slots.hits > 0 && m.ram.hits > 0);
  assert.equal(scheduler.stats().finished.length, total);
});

test("account weights: a weight-3 tenant gets about 3x the tokens of a weight-1 tenant under contention", () => {
  const { scheduler, step } = makeStack({
    scheduler: { maxRunningSequences: 4, maxBatchTokens: 32, accountWeight: (a) => (a === "gold" ? 3 : 1) },
  });
  for (let i = 0; i < 400; i++) {
    for (const account of ["gold", "free"]) {
      scheduler.submit({
        id: `${account}${i}`,
        account,
        adapterId: null,
        promptTokens: prompt(4, i),
        maxNewTokens: 8,
      });
    }
  }
  const served = new Map<string, number>();
  for (let s = 0; s < 600; s++) {
    for (const e of step().res.events) {
      if (e.type === "token") {
        const account = e.id.startsWith("gold") ? "gold" : "free";
        served.set(account, (served.get(account) ?? 0) + 1);
      }
    }
  }
  assert.ok(scheduler.isBacklogged("gold") && scheduler.isBacklogged("free"), "both stayed backlogged");
  const ratio = (served.get("gold") ?? 0) / (served.get("free") ?? 1);
  assert.ok(ratio > 2.6 && ratio < 3.4, `gold/free token ratio ${ratio.toFixed(2)}`);
});

test("priority orders an account's own requests, across its adapters, but never across accounts", async () => {
  const { scheduler, step } = makeStack({ scheduler: { maxRunningSequences: 1, maxBatchTokens: 16 } });
  scheduler.submit({ id: "low", account: "a", adapterId: null, promptTokens: prompt(2), maxNewTokens: 1 });
  scheduler.submit({ id: "other", account: "b", adapterId: null, promptTokens: prompt(2), maxNewTokens: 1 });
  scheduler.submit({
    id: "high",
    account: "a",
    adapterId: "x",
    promptTokens: prompt(2),
    maxNewTokens: 1,
    priority: 5,
  });
  const order: string[] = [];
  for (let i = 0; i < 12 && scheduler.hasWork(); i++) {
    const { res } = step();
    for (const r of finishedOf(res.events)) order.push(r.id);
    await flush();
  }
  // "high" waits for its adapter (step 1 runs "low"? no: a's first pick is "high", cold, so
  // "low" runs), then accounts alternate: b, then a's "high".
  assert.deepEqual(order, ["low", "other", "high"]);
  const { scheduler: s2, step: step2 } = makeStack({
    scheduler: { maxRunningSequences: 1, maxBatchTokens: 16 },
  });
  s2.submit({ id: "low", account: "a", adapterId: null, promptTokens: prompt(2), maxNewTokens: 1 });
  s2.submit({
    id: "high",
    account: "a",
    adapterId: null,
    promptTokens: prompt(2),
    maxNewTokens: 1,
    priority: 1,
  });
  const order2: string[] = [];
  while (s2.hasWork()) for (const r of finishedOf(step2().res.events)) order2.push(r.id);
  assert.deepEqual(order2, ["high", "low"]);
});

test("fairness state stays bounded: idle accounts are forgotten", () => {
  const { scheduler, step } = makeStack({ scheduler: { maxRunningSequences: 8 } });
  for (let i = 0; i < 500; i++) {
    scheduler.submit({
      id: `r${i}`,
      account: `acct${i}`,
      adapterId: null,
      promptTokens: prompt(2, i),
      maxNewTokens: 2,
    });
  }
  while (scheduler.hasWork()) step();
  step(); // an idle step sweeps
  assert.ok(scheduler.stats().trackedAccounts <= 8, `${scheduler.stats().trackedAccounts} accounts kept`);
  assert.equal(scheduler.stats().finished.length, 500);
});

interface Arrival {
  step: number;
  account: number;
  adapter: number; // 0 = base model, 5 = always fails to load
  promptLen: number;
  maxNew: number;
  priority: number;
  cancelAfter: number | null;
}

const arrivalArb: fc.Arbitrary<Arrival> = fc.record({
  step: fc.nat(30),
  account: fc.nat(3),
  adapter: fc.nat(5),
  promptLen: fc.integer({ min: 1, max: 14 }),
  maxNew: fc.integer({ min: 1, max: 8 }),
  priority: fc.nat(2),
  cancelAfter: fc.option(fc.nat(12), { freq: 4 }),
});

const configArb = fc.record({
  numSlots: fc.integer({ min: 2, max: 5 }),
  maxRunning: fc.integer({ min: 1, max: 6 }),
  extraBudget: fc.nat(16),
  chunked: fc.boolean(),
  prefillBudget: fc.option(fc.integer({ min: 1, max: 12 }), { nil: undefined }),
  kv: fc.option(fc.integer({ min: 24, max: 60 }), { nil: undefined }),
  ramAdapters: fc.integer({ min: 4, max: 8 }),
  padded: fc.boolean(),
  separate: fc.boolean(),
  prefetchDepth: fc.nat(3),
  maxConcurrentLoads: fc.integer({ min: 1, max: 3 }),
});

type ScenarioConfig = typeof configArb extends fc.Arbitrary<infer T> ? T : never;

/** Runs one scenario; returns a log that must be identical when replayed. */
async function simulate(config: ScenarioConfig, arrivals: Arrival[]) {
  const loader = new ImmediateLoader(() => 100);
  loader.failing.add("ad5");
  const maxBatchTokens = config.chunked ? config.maxRunning + config.extraBudget : 22 + config.extraBudget;
  const { scheduler, step, cache, clock } = makeStack({
    numSlots: config.numSlots,
    ramBudgetBytes: config.ramAdapters * 100,
    maxConcurrentLoads: config.maxConcurrentLoads,
    loader,
    scheduler: {
      maxRunningSequences: config.maxRunning,
      maxBatchTokens,
      chunkedPrefill: config.chunked,
      ...(config.chunked && config.prefillBudget !== undefined
        ? { maxPrefillTokens: config.prefillBudget }
        : {}),
      costModel: config.padded ? "padded" : "tokens",
      prefillMode: config.separate ? "separate" : "mixed",
      prefetchDepth: config.prefetchDepth,
      maxPromptTokens: 14,
      maxNewTokens: 8,
      ...(config.kv === undefined ? {} : { maxKvTokens: config.kv }),
    },
  });
  const log: string[] = [];
  const accepted = new Set<string>();
  const results = new Map<string, CompletionResult>();
  const emitted = new Map<string, number>();
  const cancelAt = new Map<number, string[]>();
  const awaitingDecode = new Map<string, number>(); // id -> step of its last token
  let s = 0;
  const byStep = [...arrivals.entries()].sort((x, y) => x[1].step - y[1].step || x[0] - y[0]);
  let next = 0;
  while (s < 600 && (next < byStep.length || scheduler.hasWork())) {
    while (next < byStep.length && (byStep[next]?.[1].step ?? 0) <= s) {
      const [i, a] = byStep[next] as [number, Arrival];
      next += 1;
      const id = `r${i}`;
      scheduler.submit({
        id,
        account: `acct${a.account}`,
        adapterId: a.adapter === 0 ? null : `ad${a.adapter}`,
        promptTokens: prompt(a.promptLen, i),
        maxNewTokens: a.maxNew,
        priority: a.priority,
      });
      accepted.add(id);
      if (a.cancelAfter !== null)
        cancelAt.set(s + a.cancelAfter, [...(cancelAt.get(s + a.cancelAfter) ?? []), id]);
    }
    for (const id of cancelAt.get(s) ?? []) scheduler.cancel(id);
    const { plan, res } = step();
    s += 1;
    // Budget and batch invariants.
    const rows = plan.batch.rows;
    assert.equal(rows.length, plan.batch.prefill.length + plan.batch.decode.length);
    const tokens = rows.reduce((n, r) => n + r.tokens.length, 0);
    const cost = config.padded ? rows.length * Math.max(0, ...rows.map((r) => r.tokens.length)) : tokens;
    assert.ok(cost <= maxBatchTokens, `step cost ${cost} > ${maxBatchTokens}`);
    if (config.chunked && config.prefillBudget !== undefined) {
      const p = plan.batch.prefill.map((r) => r.tokens.length);
      const prefillCost = config.padded ? p.length * Math.max(0, ...p) : p.reduce((x, y) => x + y, 0);
      assert.ok(prefillCost <= config.prefillBudget, `prefill cost ${prefillCost} > ${config.prefillBudget}`);
    }
    if (config.separate) {
      // Only first chunks ride along with decode rows (load-held requests, or a fresh wave's rest).
      if (plan.batch.decode.length > 0)
        for (const r of plan.batch.prefill) assert.equal(r.position, 0, "prefill chunk in a decode step");
    }
    assert.ok(rows.length <= config.maxRunning);
    if (!config.chunked) {
      for (const r of plan.batch.prefill) assert.equal(r.sample, true, "no partial prefill without chunking");
    }
    const stats = scheduler.stats();
    if (config.kv !== undefined && stats.running > 1)
      assert.ok(stats.kvTokens <= config.kv + config.maxRunning);
    // Slot pins == running sequences on the slot; slots hold the right adapters.
    const running = scheduler.runningSequences();
    // Decode rows are never starved: next step in mixed mode, within two in separate mode.
    for (const r of rows) awaitingDecode.delete(r.seqId);
    for (const [id, since] of awaitingDecode) {
      if (!running.some((r) => r.id === id)) awaitingDecode.delete(id);
      else
        assert.ok(
          s + 1 - since <= (config.separate ? 2 : 1),
          `${id} waited ${s + 1 - since} steps to decode`,
        );
    }
    // Rows come in admission order (stable for the runtime's resident KV batch).
    const order = running.map((r) => r.id).filter((id) => rows.some((r) => r.seqId === id));
    assert.deepEqual(
      rows.map((r) => r.seqId).filter((id) => order.includes(id)),
      order,
    );
    for (const slot of cache.slots.all()) {
      if (slot.slot === 0) continue;
      assert.equal(
        slot.pins,
        running.filter((r) => r.slot === slot.slot).length + (slot.status === "writing" ? 1 : 0),
      );
    }
    for (const r of running)
      if (r.adapterId !== null) assert.equal(cache.slots.find(r.adapterId)?.slot, r.slot);
    const ram = cache.metrics().ram;
    if (ram.bytesInUse > ram.budgetBytes) assert.equal(ram.bytesInUse, ram.pinnedBytes);
    for (const e of [...plan.events, ...res.events]) {
      if (e.type === "token") {
        emitted.set(e.id, (emitted.get(e.id) ?? 0) + 1);
        awaitingDecode.set(e.id, s);
        log.push(`${s}:${e.id}:${e.token}`);
      } else {
        assert.ok(!results.has(e.id), `${e.id} finished twice`);
        awaitingDecode.delete(e.id);
        results.set(e.id, e.result);
        log.push(
          `${s}:${e.id}:${e.result.reason}:${e.result.error?.code ?? ""}:${e.result.timings.finishedAt}`,
        );
      }
    }
    log.push(`${s}:${rows.map((r) => `${r.seqId}/${r.slot}/${r.tokens.length}`).join(",")}@${clock.now()}`);
    await flush();
  }
  // Every accepted request finishes exactly once, with consistent usage.
  assert.equal(scheduler.hasWork(), false, "work left after 600 steps");
  assert.equal(results.size, accepted.size);
  for (const [id, r] of results) {
    assert.equal(r.completionTokens, emitted.get(id) ?? 0);
    assert.equal(r.outputTokens.length, r.completionTokens);
    const a = arrivals[Number(id.slice(1))] as Arrival;
    if (a.adapter === 5) assert.ok(r.reason === "error" || r.reason === "cancelled");
    if (r.reason === "length") assert.equal(r.completionTokens, a.maxNew);
    if (r.reason === "error") assert.equal(r.error?.code, "adapter_load_failed");
    if (r.reason === "cancelled") assert.notEqual(a.cancelAfter, null);
  }
  assert.equal(cache.slots.pinnedCount(), 0, "no pin left behind");
  return log;
}

test("property: budgets, pins, termination of every request, and determinism on replay", async () => {
  await fc.assert(
    fc.asyncProperty(
      configArb,
      fc.array(arrivalArb, { minLength: 1, maxLength: 25 }),
      async (config, arrivals) => {
        const first = await simulate(config, arrivals);
        const second = await simulate(config, arrivals);
        assert.deepEqual(second, first);
      },
    ),
    { numRuns: 60 },
  );
});

test("property: fair share — two backlogged tenants' counters never drift apart by more than a bound", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 1, max: 6 }),
      fc.integer({ min: 1, max: 40 }),
      fc.integer({ min: 1, max: 6 }),
      async (maxRunning, floodSize, lateStart) => {
        const maxNew = 6;
        const maxPrompt = 8;
        const { scheduler, step } = makeStack({
          scheduler: {
            maxRunningSequences: maxRunning,
            maxBatchTokens: 32,
            maxNewTokens: maxNew,
            maxPromptTokens: maxPrompt,
          },
        });
        for (let i = 0; i < floodSize * 5; i++) {
          scheduler.submit({
            id: `a${i}`,
            account: "A",
            adapterId: null,
            promptTokens: prompt(1 + (i % maxPrompt), i),
            maxNewTokens: 1 + (i % maxNew),
          });
        }
        for (let s = 0; s < lateStart; s++) step();
        for (let i = 0; i < floodSize; i++) {
          scheduler.submit({
            id: `b${i}`,
            account: "B",
            adapterId: null,
            promptTokens: prompt(3, i),
            maxNewTokens: maxNew,
          });
        }
        // VTC bound: one admission (prompt) plus what the running batch can add before the
        // next admission (every running row may generate up to maxNew tokens).
        const bound = 2 * (maxPrompt * 1 + maxRunning * maxNew * 2);
        while (scheduler.isBacklogged("A") && scheduler.isBacklogged("B")) {
          step();
          const d = Math.abs(scheduler.counterOf("A") - scheduler.counterOf("B"));
          assert.ok(d <= bound, `counters drifted by ${d} > ${bound}`);
        }
      },
    ),
    { numRuns: 60 },
  );
});
