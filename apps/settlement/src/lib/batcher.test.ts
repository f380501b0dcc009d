import assert from "node:assert/strict";
import { test } from "node:test";
import { GroupCommit } from "./batcher.ts";

test("group commit: one result per caller, concurrent submissions share batches, errors reach every caller", async () => {
  const batches: string[][] = [];
  const g = new GroupCommit<string, string>(
    3,
    async (keys) => {
      batches.push(keys);
      await new Promise((r) => setTimeout(r, 5));
      if (keys.includes("bad")) throw new Error("boom");
      return new Map(keys.map((k) => [k, `ok:${k}`]));
    },
    1,
  );
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
  const g = new GroupCommit<number, number>(2, async (keys) => {
    running++;
    started++;
    maxRunning = Math.max(maxRunning, running);
    await gate;
    running--;
    return new Map(keys.map((k) => [k, k * 2]));
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
