import assert from "node:assert/strict";
import { test } from "node:test";
import { AdapterCache, type SlotWriter } from "./adapter-cache.ts";
import type { ServingError } from "./errors.ts";
import { DeferredLoader, type FakeWeights, flush } from "./test-helpers.ts";

class RecordingWriter implements SlotWriter<FakeWeights> {
  readonly writes: string[] = [];
  readonly contents = new Map<number, string>();
  failFor = new Set<string>();
  writeSlot(slot: number, adapterId: string, weights: FakeWeights): void {
    assert.equal(weights.adapterId, adapterId);
    if (this.failFor.has(adapterId)) throw new Error("rank 64 exceeds slot rank 16");
    this.writes.push(`${slot}:${adapterId}`);
    this.contents.set(slot, adapterId);
  }
}

function setup(numSlots = 3, budget = 1000, holdRamWhileSlotted = false) {
  const loader = new DeferredLoader(() => 100);
  const writer = new RecordingWriter();
  const cache = new AdapterCache<FakeWeights>({
    loader,
    slotWriter: writer,
    ramBudgetBytes: budget,
    numSlots,
    holdRamWhileSlotted,
  });
  const failed: string[] = [];
  let changes = 0;
  cache.addListener({
    onChange: () => {
      changes += 1;
    },
    onAdapterFailed: (id: string, e: ServingError) => failed.push(`${id}:${e.code}`),
  });
  return { loader, writer, cache, failed, changes: () => changes };
}

test("disk -> RAM -> slot: just-in-time load, then a slot write, then slot hits", async () => {
  const { loader, writer, cache, changes } = setup();
  assert.deepEqual(cache.lookup(null), { status: "ready", slot: 0 });
  assert.deepEqual(cache.lookup("a"), { status: "loading" });
  assert.deepEqual(cache.lookup("a"), { status: "loading" });
  assert.deepEqual(loader.calls, ["a"], "single-flight across lookups");
  loader.complete("a");
  await flush();
  assert.ok(changes() >= 1, "load completion wakes the engine");
  assert.deepEqual(cache.lookup("a"), { status: "ready", slot: 1 });
  assert.deepEqual(cache.lookup("a"), { status: "ready", slot: 1 });
  assert.deepEqual(writer.writes, ["1:a"]);
  const m = cache.metrics();
  assert.equal(m.slots.misses, 1);
  assert.equal(m.slots.hits, 1);
  assert.equal(m.ram.misses, 1);
  assert.equal(m.ram.hits, 1);
  assert.equal(m.ram.pinnedBytes, 0, "the slot holds a copy: the RAM entry stays evictable");
});

test("holdRamWhileSlotted: a slotted adapter's RAM entry stays pinned until its slot is taken", async () => {
  const { loader, cache } = setup(2, 1000, true);
  for (const id of ["a", "b"]) {
    cache.lookup(id);
    loader.complete(id);
    await flush();
  }
  assert.equal(cache.lookup("a").status, "ready");
  assert.equal(cache.metrics().ram.pinnedBytes, 100);
  assert.equal(cache.lookup("b").status, "ready"); // evicts "a" from the only slot
  assert.equal(cache.metrics().ram.pinnedBytes, 100);
  assert.ok(cache.ram.acquire("a") !== undefined, "still in RAM, now evictable");
  cache.ram.release("a");
  assert.equal(cache.metrics().ram.pinnedBytes, 100);
});

test("slot LRU eviction unpins the evicted adapter in RAM; pinned slots are skipped", async () => {
  const { loader, cache } = setup(3, 1000, true);
  for (const id of ["a", "b", "c"]) {
    cache.lookup(id);
    loader.complete(id);
    await flush();
  }
  const a = cache.lookup("a");
  const b = cache.lookup("b");
  assert.equal(a.status, "ready");
  assert.equal(b.status, "ready");
  if (a.status !== "ready") return;
  cache.pinSlot(a.slot); // a running sequence uses "a"
  const c = cache.lookup("c");
  assert.deepEqual(c, { status: "ready", slot: 2 }, "b (unpinned) was evicted, not a");
  assert.equal(cache.metrics().ram.pinnedBytes, 200);
  cache.pinSlot(2);
  assert.deepEqual(cache.lookup("b"), { status: "no_slot" });
  cache.unpinSlot(a.slot);
  assert.deepEqual(cache.lookup("b"), { status: "ready", slot: 1 });
});

test("a failed slot write frees the slot, reports a typed error, and can be retried", async () => {
  const { loader, writer, cache, failed } = setup(2);
  cache.lookup("a");
  loader.complete("a");
  await flush();
  writer.failFor.add("a");
  assert.deepEqual(cache.lookup("a"), { status: "loading" });
  assert.deepEqual(failed, ["a:adapter_load_failed"]);
  assert.equal(cache.slots.find("a"), undefined);
  assert.equal(cache.metrics().ram.pinnedBytes, 0);
  writer.failFor.clear();
  assert.deepEqual(cache.lookup("a"), { status: "ready", slot: 1 });
});

test("asynchronous slot writes: not usable until the write resolves", async () => {
  const loader = new DeferredLoader(() => 100);
  let finish!: () => void;
  const writer: SlotWriter<FakeWeights> = {
    writeSlot: () =>
      new Promise<void>((resolve) => {
        finish = resolve;
      }),
  };
  const cache = new AdapterCache<FakeWeights>({
    loader,
    slotWriter: writer,
    ramBudgetBytes: 1000,
    numSlots: 2,
  });
  cache.lookup("a");
  loader.complete("a");
  await flush();
  assert.deepEqual(cache.lookup("a"), { status: "loading" });
  assert.deepEqual(cache.lookup("a"), { status: "loading" });
  finish();
  await flush();
  assert.deepEqual(cache.lookup("a"), { status: "ready", slot: 1 });
});

test("a disk load failure reaches the listener and leaves nothing cached", async () => {
  const { loader, cache, failed } = setup();
  cache.lookup("x");
  loader.fail("x");
  await flush();
  assert.deepEqual(failed, ["x:adapter_load_failed"]);
  assert.deepEqual(cache.lookup("x"), { status: "loading" });
  assert.deepEqual(loader.calls, ["x", "x"]);
});

test("hot set and warm-up: slotted then RAM adapters, most recent first; warm loads go one at a time, after live loads, and stop before evicting", async () => {
  // maxConcurrentLoads 2 (default), budget of 5 adapters.
  const { loader, cache } = setup(3, 500);
  for (const id of ["a", "b", "c"]) cache.ram.request(id);
  for (const id of ["a", "b"]) loader.complete(id);
  await flush();
  loader.complete("c");
  await flush();
  assert.equal(cache.lookup("b").status, "ready"); // b into a slot
  assert.deepEqual(cache.hotSet(), ["b", "c", "a"]);

  // A restart: a fresh cache warms the saved set.
  const fresh = setup(3, 500);
  const done = fresh.cache.warm(["x1", "x2", "x3", "x4", "x5", "x6", "x7"]);
  await flush();
  assert.deepEqual(fresh.loader.pendingIds(), ["x1"], "one warm load at a time");
  // A live request's load takes the free permit at once; its demand load goes before the next warm one.
  fresh.cache.ram.request("live");
  fresh.cache.ram.request("live2");
  await flush();
  assert.deepEqual(fresh.loader.pendingIds(), ["x1", "live"]);
  fresh.loader.complete("x1");
  await flush();
  assert.deepEqual(fresh.loader.pendingIds(), ["live", "live2"], "queued demand before the next warm load");
  fresh.loader.complete("live");
  fresh.loader.complete("live2");
  await flush();
  for (const id of ["x2", "x3"]) {
    assert.deepEqual(fresh.loader.pendingIds(), [id]);
    fresh.loader.complete(id);
    await flush();
  }
  // 5 adapters of 100 bytes fill the budget of 500: warming stops rather than evict.
  assert.deepEqual(await done, { loaded: 3, failed: 0 });
  assert.equal(fresh.cache.metrics().ram.evictions, 0);
  assert.deepEqual(fresh.loader.calls, ["x1", "live", "live2", "x2", "x3"]);
});

test("warm-up: an adapter that fails to load is skipped; a request for a queued warm load upgrades it", async () => {
  const { loader, cache, failed } = setup(3, 1000);
  const done = cache.warm(["gone", "w2"]);
  await flush();
  loader.fail("gone");
  await flush();
  assert.deepEqual(loader.pendingIds(), ["w2"]);
  assert.equal(cache.lookup("w2").status, "loading"); // joins the warm load (single-flight)
  loader.complete("w2");
  assert.deepEqual(await done, { loaded: 1, failed: 1 });
  assert.deepEqual(failed, ["gone:adapter_load_failed"]);
  // A warm entry still queued behind a running warm load is promoted by a demand request.
  const second = setup(3, 1000);
  void second.cache.ram.warm("q1");
  void second.cache.ram.warm("q2");
  await flush();
  assert.deepEqual(second.loader.pendingIds(), ["q1"]);
  second.cache.ram.request("q2");
  await flush();
  assert.deepEqual(second.loader.pendingIds(), ["q1", "q2"]);
});
