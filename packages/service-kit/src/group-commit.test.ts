// GroupCommit: one batch at a time (or `parallel`), submissions made meanwhile go together in the
// next, one result per caller, the latest value per key, errors reaching every caller.
import assert from "node:assert/strict";
import { test } from "node:test";
import { GroupCommit } from "./group-commit.ts";

test("group commit: one result per caller, concurrent submissions share batches, errors reach every caller", async () => {
  const batches: string[][] = [];
  const g = new GroupCommit<string, string, string>({
    keyOf: (k) => k,
    run: async (keys) => {
      batches.push(keys);
      await new Promise((r) => setTimeout(r, 5));
      if (keys.includes("bad")) throw new Error("boom");
      return new Map(keys.map((k) => [k, `ok:${k}`]));
    },
    maxBatch: 3,
    gatherTurn: true,
  });
  const keys = ["a", "b", "c", "d", "e", "a"];
  const results = await Promise.all(keys.map((k) => g.submit(k)));
  assert.deepEqual(
    results,
    keys.map((k) => `ok:${k}`),
  );
  // 5 distinct keys, at most 3 per batch, one writer: two batches, the duplicate "a" rides along once
  assert.deepEqual(batches, [
    ["a", "b", "c"],
    ["d", "e"],
  ]);
  await assert.rejects(Promise.all([g.submit("bad"), g.submit("x")]), /boom/);
  assert.equal(await g.submit("y"), "ok:y", "recovers after a failed batch");
});

test("group commit: with two writers, a second batch starts while the first is running", async () => {
  // No timers: the writers block on a gate the test opens, so the overlap is certain.
  let running = 0;
  let maxRunning = 0;
  let started = 0;
  let open!: () => void;
  const gate = new Promise<void>((resolve) => {
    open = resolve;
  });
  const g = new GroupCommit<number, number, number>({
    keyOf: (k) => k,
    run: async (keys) => {
      running++;
      started++;
      maxRunning = Math.max(maxRunning, running);
      await gate;
      running--;
      return new Map(keys.map((k) => [k, k * 2]));
    },
    maxBatch: 2,
    parallel: 2,
    gatherTurn: true,
  });
  const until = async (what: string, ok: () => boolean) => {
    for (let i = 0; i < 10_000 && !ok(); i++) await new Promise((r) => setImmediate(r));
    assert.ok(ok(), what);
  };
  const first = g.submit(1);
  await until("the first batch is in flight", () => started === 1);
  const rest = Promise.all([2, 3, 4].map((k) => g.submit(k)));
  await until("a second writer starts while the first is still running", () => started === 2);
  assert.equal(maxRunning, 2);
  open();
  assert.deepEqual([await first, ...(await rest)], [2, 4, 6, 8]);
});

test("group commit without results: the first write goes at once, later ones together with the latest value per key", async () => {
  const batches: { id: string; v: number }[][] = [];
  let open!: () => void;
  let gate = new Promise<void>((resolve) => {
    open = resolve;
  });
  const g = new GroupCommit<string, { id: string; v: number }>({
    keyOf: (p) => p.id,
    run: async (batch) => {
      batches.push(batch);
      await gate;
    },
  });
  assert.ok(g.idle);
  const first = g.submit({ id: "a", v: 1 });
  assert.deepEqual(batches, [[{ id: "a", v: 1 }]], "written at once, not on the next turn");
  assert.ok(!g.idle);
  const later = [g.submit({ id: "a", v: 2 }), g.submit({ id: "b", v: 1 }), g.submit({ id: "a", v: 3 })];
  const firstGate = open;
  gate = new Promise<void>((resolve) => {
    open = resolve;
  });
  firstGate();
  await first;
  open();
  assert.deepEqual(await Promise.all(later), [undefined, undefined, undefined]);
  assert.deepEqual(batches[1], [
    { id: "a", v: 3 },
    { id: "b", v: 1 },
  ]);
  assert.equal(batches.length, 2);
  assert.ok(g.idle);
});
