import assert from "node:assert/strict";
import { after, test } from "node:test";
import { AppError } from "@openledger/errors";
import { type ConnectionOptions, Queue } from "bullmq";
import { completedInferenceIds, INFERENCE_BATCH_MAX, JOBS, jobsOfQueue, QUEUES } from "./catalog.ts";
import { CompletedBatcher } from "./completions.ts";
import { producerConnection } from "./connection.ts";
import { listFailed, queueDepth, redriveFailed } from "./inspect.ts";
import { Producer } from "./producer.ts";
import { deletePrefix, TEST_REDIS_URL, uniquePrefix } from "./testing.ts";
import { WorkerSet, WorkerSetupError } from "./worker.ts";

const prefixes: string[] = [];
const closers: (() => Promise<void>)[] = [];
after(async () => {
  for (const close of closers.reverse()) await close();
  for (const p of prefixes) await deletePrefix(p);
});

function setup(label: string, overrides?: ConstructorParameters<typeof Producer>[0]["overrides"]) {
  const prefix = uniquePrefix(label);
  prefixes.push(prefix);
  const producer = new Producer({ redisUrl: TEST_REDIS_URL, prefix, overrides });
  closers.push(() => producer.close());
  return { prefix, producer };
}

const silent = { info() {}, warn() {}, error() {} };
const ID = "3f1d2a8e-1b2c-4d5e-8f90-a1b2c3d4e5f6";

test("every job belongs to a known queue and every queue has jobs", () => {
  for (const [name, spec] of Object.entries(JOBS)) {
    assert.ok(QUEUES.includes(spec.queue), `${name} has unknown queue ${spec.queue}`);
    assert.match(name, /^[a-z]+\.[a-z]+$/);
  }
  for (const q of QUEUES) assert.ok(jobsOfQueue(q).length > 0, `queue ${q} has no jobs`);
});

test("an invalid payload is rejected at enqueue with a clear error, and nothing is enqueued", async () => {
  const { producer } = setup("invalid");
  await assert.rejects(
    producer.enqueue("inference.completed", { inferenceId: "not-a-uuid" }),
    (err: unknown) => {
      assert.ok(err instanceof AppError);
      assert.equal(err.code, "VALIDATION_FAILED");
      assert.equal(err.status, 400);
      assert.match(err.message, /invalid payload for job inference.completed: inferenceId: /);
      return true;
    },
  );
  await assert.rejects(
    // @ts-expect-error: a missing field must be caught at run time as well
    producer.enqueue("datanet.validate", {}),
    /invalid payload for job datanet.validate: contributionId/,
  );
  const counts = await queueDepth(producer.queue("settlement"));
  assert.equal(counts.waiting, 0);
  const counts2 = await queueDepth(producer.queue("datanets"));
  assert.equal(counts2.waiting, 0);
});

test("enqueueing the same job twice is idempotent (id derived from the payload)", async () => {
  const { producer } = setup("idem");
  const a = await producer.enqueue("inference.completed", { inferenceId: ID });
  const b = await producer.enqueue("inference.completed", { inferenceId: ID });
  assert.equal(a.id, b.id);
  assert.equal(a.id, `inference.completed.${ID}`);
  const counts = await queueDepth(producer.queue("settlement"));
  assert.equal(counts.waiting, 1);
});

test("a worker refuses to start when a consumed job has no handler, or a job gets two", async () => {
  const { prefix } = setup("refuse");
  const set = new WorkerSet({ redisUrl: TEST_REDIS_URL, prefix, queues: ["attribution"], logger: silent });
  set.handle("attribution.index", async () => {});
  await assert.rejects(set.start(), (err: unknown) => {
    assert.ok(err instanceof WorkerSetupError);
    assert.match(err.message, /no handler for job\(s\) attribution.score/);
    return true;
  });
  assert.throws(() => set.handle("attribution.index", async () => {}), /already has a handler/);
  assert.throws(() => set.handle("inference.completed", async () => {}), /does not consume/);
});

test("a handled job runs once with its validated payload and reports progress", async () => {
  const { prefix, producer } = setup("run");
  const seen: unknown[] = [];
  const set = new WorkerSet({ redisUrl: TEST_REDIS_URL, prefix, queues: ["settlement"], logger: silent });
  let resolveDone: () => void;
  const done = new Promise<void>((r) => {
    resolveDone = r;
  });
  set.handle("inference.completed", async (payload, ctx) => {
    await ctx.progress(50);
    seen.push({ payload, attempt: ctx.attempt });
    resolveDone();
    return "ok";
  });
  closers.push(() => set.close());
  await set.start();
  await producer.enqueue("inference.completed", { inferenceId: ID });
  await done;
  assert.deepEqual(seen, [{ payload: { inferenceId: ID }, attempt: 1 }]);
});

test("a worker that throws is retried with backoff and ends in the failed set, visible and re-drivable", async () => {
  const { prefix, producer } = setup("retry", { "inference.completed": { attempts: 3, backoffMs: 100 } });
  const attempts: { attempt: number; at: number }[] = [];
  let failures = 3;
  const set = new WorkerSet({ redisUrl: TEST_REDIS_URL, prefix, queues: ["settlement"], logger: silent });
  set.handle("inference.completed", async (_p, ctx) => {
    attempts.push({ attempt: ctx.attempt, at: Date.now() });
    if (failures-- > 0) throw new Error("ledger unavailable");
    return "recovered";
  });
  closers.push(() => set.close());
  await set.start();
  const queue = producer.queue("settlement");
  await producer.enqueue("inference.completed", { inferenceId: ID });
  let failed: Awaited<ReturnType<typeof listFailed>> = [];
  for (let i = 0; i < 200 && failed.length === 0; i++) {
    await new Promise((r) => setTimeout(r, 50));
    failed = await listFailed(queue);
  }
  assert.equal(failed.length, 1, "the job must end in the failed set");
  assert.equal(failed[0]!.attemptsMade, 3);
  assert.equal(failed[0]!.failedReason, "ledger unavailable");
  assert.deepEqual(failed[0]!.data, { inferenceId: ID });
  assert.deepEqual(
    attempts.map((a) => a.attempt),
    [1, 2, 3],
  );
  // Exponential backoff: the second gap is at least the doubled base delay (no upper bound asserted).
  assert.ok(attempts[1]!.at - attempts[0]!.at >= 100, "first retry waits for the backoff");
  assert.ok(attempts[2]!.at - attempts[1]!.at >= 200, "second retry waits twice as long");
  // Re-drive after the cause is fixed: the job completes and leaves the failed set.
  await redriveFailed(queue);
  let counts = await queueDepth(queue);
  for (let i = 0; i < 200 && counts.completed !== 1; i++) {
    await new Promise((r) => setTimeout(r, 50));
    counts = await queueDepth(queue);
  }
  assert.equal(counts.completed, 1);
  assert.equal(counts.failed, 0);
});

test("workers validate payloads again: a malformed job fails once, without retries", async () => {
  const { prefix } = setup("poison");
  const raw = new Queue("settlement", {
    connection: producerConnection(TEST_REDIS_URL) as ConnectionOptions,
    prefix,
  });
  closers.push(() => raw.close());
  let ran = 0;
  const set = new WorkerSet({ redisUrl: TEST_REDIS_URL, prefix, queues: ["settlement"], logger: silent });
  set.handle("inference.completed", async () => {
    ran++;
  });
  closers.push(() => set.close());
  await set.start();
  await raw.add(
    "inference.completed",
    { inferenceId: 42 },
    { attempts: 5, backoff: { type: "fixed", delay: 10 } },
  );
  let failed: Awaited<ReturnType<typeof listFailed>> = [];
  for (let i = 0; i < 200 && failed.length === 0; i++) {
    await new Promise((r) => setTimeout(r, 25));
    failed = await listFailed(raw);
  }
  assert.equal(failed.length, 1);
  assert.equal(failed[0]!.attemptsMade, 1, "an invalid payload is not retried");
  assert.match(failed[0]!.failedReason, /invalid payload for job inference.completed: inferenceId/);
  assert.equal(ran, 0);
});

test("a job that exceeds its timeout fails the attempt and sees its signal aborted", async () => {
  const { prefix, producer } = setup("timeout", { "inference.completed": { attempts: 1, timeoutMs: 100 } });
  let aborted = false;
  const set = new WorkerSet({
    redisUrl: TEST_REDIS_URL,
    prefix,
    queues: ["settlement"],
    logger: silent,
    overrides: { "inference.completed": { timeoutMs: 100 } },
  });
  set.handle("inference.completed", (_p, ctx) => {
    return new Promise((resolve) => {
      ctx.signal.addEventListener("abort", () => {
        aborted = true;
        resolve(undefined);
      });
    });
  });
  closers.push(() => set.close());
  await set.start();
  await producer.enqueue("inference.completed", { inferenceId: ID });
  let failed: Awaited<ReturnType<typeof listFailed>> = [];
  for (let i = 0; i < 200 && failed.length === 0; i++) {
    await new Promise((r) => setTimeout(r, 25));
    failed = await listFailed(producer.queue("settlement"));
  }
  assert.equal(failed.length, 1);
  assert.match(failed[0]!.failedReason, /exceeded its 100 ms timeout/);
  assert.equal(aborted, true);
});

const ID2 = "4a2b3c4d-5e6f-4a1b-9c2d-3e4f5a6b7c8d";
const ID3 = "5b3c4d5e-6f7a-4b2c-8d3e-4f5a6b7c8d9e";

test("inference.completed has a batch form: exactly one of inferenceId / inferenceIds, each a uuid", async () => {
  const { producer } = setup("batch-form");
  const batch = await producer.enqueue("inference.completed", { inferenceIds: [ID, ID2] });
  assert.match(batch.id, /^inference\.completed\.batch-[0-9a-f]{32}$/);
  const bad: [unknown, RegExp][] = [
    [{ inferenceId: ID, inferenceIds: [ID2] }, /exactly one of inferenceId, inferenceIds/],
    [{}, /exactly one of inferenceId, inferenceIds/],
    [{ inferenceIds: [] }, /inferenceIds: /],
    [{ inferenceIds: [ID, "nope"] }, /inferenceIds\.1: /],
    [{ inferenceIds: Array.from({ length: INFERENCE_BATCH_MAX + 1 }, () => ID) }, /inferenceIds: /],
  ];
  for (const [payload, why] of bad) {
    await assert.rejects(
      producer.enqueue("inference.completed", payload as never),
      (err: unknown) => err instanceof AppError && err.code === "VALIDATION_FAILED" && why.test(err.message),
      JSON.stringify(payload).slice(0, 80),
    );
  }
  assert.equal((await queueDepth(producer.queue("settlement"))).waiting, 1, "only the valid batch");
  assert.deepEqual(completedInferenceIds({ inferenceId: ID }), [ID]);
  assert.deepEqual(completedInferenceIds({ inferenceIds: [ID2, ID] }), [ID2, ID]);
});

test("the same batch sent twice (ids in any order, repeated) is one job", async () => {
  const { producer } = setup("batch-idem");
  const a = await producer.enqueue("inference.completed", { inferenceIds: [ID, ID2, ID3] });
  const b = await producer.enqueue("inference.completed", { inferenceIds: [ID3, ID, ID2, ID] });
  const c = await producer.enqueue("inference.completed", { inferenceIds: [ID, ID2] });
  assert.equal(a.id, b.id);
  assert.notEqual(a.id, c.id);
  assert.equal((await queueDepth(producer.queue("settlement"))).waiting, 2);
});

test("CompletedBatcher: alone an id goes at once as its own job; ids arriving meanwhile leave as one batch", async () => {
  const { producer } = setup("coalesce");
  const batcher = new CompletedBatcher(producer);
  const ids = Array.from({ length: 50 }, () => crypto.randomUUID());
  // The first submission starts a send at once; the rest (and a repeat) wait for it and go together.
  await Promise.all([...ids, ids[3]!].map((id) => batcher.submit(id)));
  const queue = producer.queue("settlement");
  const jobs = await queue.getJobs(["waiting"]);
  assert.equal(jobs.length, 2);
  const single = jobs.find((j) => j.id === `inference.completed.${ids[0]}`);
  assert.deepEqual(single?.data, { inferenceId: ids[0] });
  const batch = jobs.find((j) => j !== single);
  assert.deepEqual([...(batch?.data.inferenceIds ?? [])].sort(), ids.slice(1).sort());
  // Idle again: the next id is alone once more.
  const late = crypto.randomUUID();
  await batcher.submit(late);
  assert.ok(await queue.getJob(`inference.completed.${late}`));
  // Batches never exceed their bound.
  const small = new CompletedBatcher(producer, 4);
  const more: string[] = Array.from({ length: 10 }, () => crypto.randomUUID());
  await Promise.all(more.map((id) => small.submit(id)));
  const sizes = (await queue.getJobs(["waiting"]))
    .map((j) => completedInferenceIds(j.data))
    .filter((list) => list.some((id) => more.includes(id)))
    .map((list) => list.length)
    .sort();
  assert.deepEqual(sizes, [1, 1, 4, 4]);
  assert.throws(() => new CompletedBatcher(producer, 0), RangeError);
});

test("CompletedBatcher: when an enqueue fails, every waiter of that send is rejected, later sends go on", async () => {
  // The producer's own failure path is tested above; here only the batcher's fan-out of it.
  let calls = 0;
  const failing = {
    enqueue: async () => {
      calls++;
      if (calls <= 2) throw new Error("Redis refused");
      return { id: "x", name: "inference.completed" as const, queue: "settlement" as const };
    },
  };
  const batcher = new CompletedBatcher(failing);
  const results = await Promise.allSettled([ID, ID2, ID3].map((id) => batcher.submit(id)));
  assert.deepEqual(
    results.map((r) => r.status),
    ["rejected", "rejected", "rejected"],
  );
  assert.equal(calls, 2, "one send for the first id, one for the two that waited");
  await batcher.submit(ID);
  assert.equal(calls, 3);
});
