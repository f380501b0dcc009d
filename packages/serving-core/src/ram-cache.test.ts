import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { ServingError } from "./errors.ts";
import { AdapterRamCache } from "./ram-cache.ts";
import { DeferredLoader, type FakeWeights, flush } from "./test-helpers.ts";

const sizeOf = (id: string) => 100 + (Number(id.slice(1)) % 7) * 50;

test("single-flight: concurrent requests for a cold adapter trigger one load", async () => {
  const loader = new DeferredLoader();
  const cache = new AdapterRamCache<FakeWeights>({ loader, budgetBytes: 1000 });
  const a = cache.load("a1");
  const b = cache.load("a1");
  cache.request("a1", "prefetch");
  assert.deepEqual(loader.calls, ["a1"]);
  loader.complete("a1");
  const [wa, wb] = await Promise.all([a, b]);
  assert.equal(wa, wb);
  assert.equal(cache.isReady("a1"), true);
  assert.equal(cache.stats().misses, 1);
  assert.equal(cache.stats().loads, 1);
});

test("a failed load surfaces a typed error to every waiter and does not poison the cache", async () => {
  const loader = new DeferredLoader();
  const cache = new AdapterRamCache<FakeWeights>({ loader, budgetBytes: 1000 });
  const failures: string[] = [];
  cache.addListener({ onLoadFailed: (id, e) => failures.push(`${id}:${e.code}`) });
  const a = cache.load("a1");
  const b = cache.load("a1");
  loader.fail("a1");
  for (const p of [a, b]) {
    await assert.rejects(p, (e: unknown) => e instanceof ServingError && e.code === "adapter_load_failed");
  }
  assert.deepEqual(failures, ["a1:adapter_load_failed"]);
  assert.equal(cache.isReady("a1"), false);
  assert.equal(cache.isLoading("a1"), false);
  // Retried, not a cached failure.
  const c = cache.load("a1");
  assert.deepEqual(loader.calls, ["a1", "a1"]);
  loader.complete("a1");
  assert.equal((await c).adapterId, "a1");
  assert.equal(cache.stats().loadFailures, 1);
});

test("an adapter larger than the whole budget is refused with adapter_too_large", async () => {
  const loader = new DeferredLoader(() => 5000);
  const cache = new AdapterRamCache<FakeWeights>({ loader, budgetBytes: 1000 });
  const p = cache.load("big");
  loader.complete("big");
  await assert.rejects(p, (e: unknown) => e instanceof ServingError && e.code === "adapter_too_large");
  assert.equal(cache.stats().bytesInUse, 0);
});

test("LRU order: the least recently used unpinned entry is evicted first", async () => {
  const loader = new DeferredLoader(() => 100);
  const cache = new AdapterRamCache<FakeWeights>({ loader, budgetBytes: 300, maxConcurrentLoads: 4 });
  for (const id of ["a", "b", "c"]) {
    cache.request(id);
    loader.complete(id);
    await flush();
  }
  // Touch "a" (acquire + release makes it the most recent).
  cache.acquire("a");
  cache.release("a");
  cache.request("d");
  loader.complete("d");
  await flush();
  assert.equal(cache.isReady("b"), false, "b was the least recently used");
  assert.deepEqual(
    ["a", "c", "d"].map((id) => cache.isReady(id)),
    [true, true, true],
  );
  assert.equal(cache.stats().evictions, 1);
  assert.equal(cache.stats().bytesInUse, 300);
});

test("demand loads start before queued prefetches; loads never exceed the concurrency limit", async () => {
  const loader = new DeferredLoader();
  const cache = new AdapterRamCache<FakeWeights>({ loader, budgetBytes: 10_000, maxConcurrentLoads: 1 });
  cache.request("p1", "prefetch");
  cache.request("p2", "prefetch");
  cache.request("d1", "demand");
  assert.deepEqual(loader.calls, ["p1"]);
  loader.complete("p1");
  await flush();
  assert.deepEqual(loader.calls, ["p1", "d1"]);
  cache.retainPrefetches(new Set());
  loader.complete("d1");
  await flush();
  assert.deepEqual(loader.calls, ["p1", "d1"], "dropped prefetch p2 was never loaded");
  assert.equal(loader.maxConcurrent, 1);
});

type Op =
  | { kind: "request"; id: number; prefetch: boolean }
  | { kind: "complete"; pick: number }
  | { kind: "fail"; pick: number }
  | { kind: "acquire"; id: number }
  | { kind: "release"; pick: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constant("request" as const), id: fc.nat(15), prefetch: fc.boolean() }),
  fc.record({ kind: fc.constant("complete" as const), pick: fc.nat() }),
  fc.record({ kind: fc.constant("fail" as const), pick: fc.nat() }),
  fc.record({ kind: fc.constant("acquire" as const), id: fc.nat(15) }),
  fc.record({ kind: fc.constant("release" as const), pick: fc.nat() }),
);

test("property: byte budget, exact accounting, pinning and single-flight hold under any interleaving", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(opArb, { minLength: 1, maxLength: 80 }),
      fc.integer({ min: 200, max: 1500 }),
      fc.integer({ min: 1, max: 3 }),
      async (ops, budget, maxConcurrentLoads) => {
        const loader = new DeferredLoader(sizeOf);
        const cache = new AdapterRamCache<FakeWeights>({ loader, budgetBytes: budget, maxConcurrentLoads });
        const held: string[] = []; // one element per outstanding pin
        for (const op of ops) {
          if (op.kind === "request") cache.request(`a${op.id}`, op.prefetch ? "prefetch" : "demand");
          else if (op.kind === "complete" || op.kind === "fail") {
            const pending = loader.pendingIds();
            const id = pending[op.pick % Math.max(1, pending.length)];
            if (id === undefined) continue;
            if (op.kind === "complete") loader.complete(id);
            else loader.fail(id);
            await flush();
          } else if (op.kind === "acquire") {
            const id = `a${op.id}`;
            if (cache.acquire(id) !== undefined) held.push(id);
          } else {
            const i = op.pick % Math.max(1, held.length);
            const id = held[i];
            if (id === undefined) continue;
            held.splice(i, 1);
            cache.release(id);
          }
          const stats = cache.stats();
          // Pinned entries are never evicted.
          for (const id of held) assert.equal(cache.isReady(id), true, `pinned ${id} was evicted`);
          const pinnedIds = new Set(held);
          let pinnedBytes = 0;
          for (const id of pinnedIds) pinnedBytes += sizeOf(id);
          assert.equal(stats.pinnedBytes, pinnedBytes, "pinned bytes are exact");
          // Exact accounting: bytes in use = sum of sizes of the ready entries.
          let readyBytes = 0;
          for (let i = 0; i <= 15; i++) if (cache.isReady(`a${i}`)) readyBytes += sizeOf(`a${i}`);
          assert.equal(stats.bytesInUse, readyBytes);
          // The budget is exceeded only by pinned bytes.
          if (stats.bytesInUse > budget) assert.equal(stats.bytesInUse, stats.pinnedBytes);
          assert.ok(loader.concurrent <= maxConcurrentLoads);
        }
        // Every load started was for an id that was neither ready nor loading (single-flight
        // is also asserted inside DeferredLoader.load).
        assert.equal(loader.calls.length, cache.stats().misses - droppedPrefetches(cache, loader));
      },
    ),
    { numRuns: 150 },
  );
});

// No prefetch is dropped in the property above (retainPrefetches is not called), so every
// miss either started a load or is still queued.
function droppedPrefetches(cache: AdapterRamCache<FakeWeights>, _loader: DeferredLoader): number {
  return cache.stats().queued;
}

test("10,000 registered adapters streamed through a small budget keep RAM bounded", async () => {
  const loader = new DeferredLoader(() => 1000);
  const budget = 50_000;
  const cache = new AdapterRamCache<FakeWeights>({ loader, budgetBytes: budget, maxConcurrentLoads: 4 });
  let peak = 0;
  for (let i = 0; i < 10_000; i++) {
    const id = `adapter-${(i * 7919) % 10_000}`;
    cache.request(id);
    if (i % 8 === 7) {
      while (loader.pendingIds().length > 0) {
        for (const p of loader.pendingIds()) loader.complete(p);
        await flush();
        peak = Math.max(peak, cache.stats().bytesInUse);
      }
    }
  }
  assert.ok(peak <= budget, `peak ${peak} > budget ${budget}`);
  assert.equal(cache.stats().entries, 50);
  assert.equal(cache.stats().loads, 10_000);
});
