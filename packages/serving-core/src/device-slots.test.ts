import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { BASE_SLOT, DeviceSlotTable } from "./device-slots.ts";

test("slot 0 is reserved; free slots are handed out lowest first, then LRU eviction", () => {
  const t = new DeviceSlotTable(3);
  const a = t.reserve("a");
  const b = t.reserve("b");
  assert.deepEqual([a?.slot, b?.slot], [1, 2]);
  t.markReady(1);
  t.markReady(2);
  t.touch(1); // "b" (slot 2) is now the least recently used
  const c = t.reserve("c");
  assert.deepEqual(c, { slot: 2, evicted: "b" });
  assert.equal(t.find("b"), undefined);
  assert.equal(t.evictions, 1);
});

test("a pinned slot is never evicted; reserve fails when every slot is pinned or being written", () => {
  const t = new DeviceSlotTable(3);
  t.reserve("a");
  t.markReady(1);
  t.pin(1);
  t.reserve("b"); // still writing: pinned by the write
  assert.equal(t.reserve("c"), undefined);
  t.markReady(2);
  assert.deepEqual(t.reserve("c"), { slot: 2, evicted: "b" });
  assert.equal(t.find("a")?.slot, 1);
});

test("draining stops new use of one pinned slot until it empties", () => {
  const t = new DeviceSlotTable(2);
  t.reserve("a");
  t.markReady(1);
  t.pin(1);
  assert.equal(t.startDraining(), 1);
  assert.equal(t.startDraining(), undefined, "only one slot drains at a time");
  assert.equal(t.find("a")?.draining, true);
  t.unpin(1);
  assert.equal(t.find("a")?.draining, false);
  assert.deepEqual(t.reserve("b"), { slot: 1, evicted: "a" });
});

type SlotOp =
  | { kind: "reserve"; id: number }
  | { kind: "ready"; pick: number }
  | { kind: "abort"; pick: number }
  | { kind: "pin"; id: number }
  | { kind: "unpin"; pick: number };

test("property: pinned/writing slots keep their adapter; slot 0 is never assigned; mapping stays consistent", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 2, max: 6 }),
      fc.array(
        fc.oneof(
          fc.record({ kind: fc.constant("reserve" as const), id: fc.nat(9) }),
          fc.record({ kind: fc.constant("ready" as const), pick: fc.nat() }),
          fc.record({ kind: fc.constant("abort" as const), pick: fc.nat() }),
          fc.record({ kind: fc.constant("pin" as const), id: fc.nat(9) }),
          fc.record({ kind: fc.constant("unpin" as const), pick: fc.nat() }),
        ) as fc.Arbitrary<SlotOp>,
        { maxLength: 100 },
      ),
      (numSlots, ops) => {
        const t = new DeviceSlotTable(numSlots);
        const writing: number[] = [];
        const pins: number[] = []; // slot per outstanding sequence pin
        for (const op of ops) {
          const before = t.all().map((s) => ({ ...s }));
          if (op.kind === "reserve") {
            const id = `a${op.id}`;
            if (t.find(id) !== undefined) continue;
            const r = t.reserve(id);
            const evictable = before.filter(
              (s) => s.slot !== BASE_SLOT && (s.status === "empty" || s.pins === 0),
            );
            assert.equal(r === undefined, evictable.length === 0);
            if (r !== undefined) {
              assert.notEqual(r.slot, BASE_SLOT);
              const prev = before[r.slot];
              assert.ok(prev !== undefined && prev.pins === 0, "took a pinned slot");
              if (r.evicted !== undefined) {
                assert.equal(
                  before.some((s) => s.status === "empty" && s.slot !== BASE_SLOT),
                  false,
                  "evicted while a free slot existed",
                );
              }
              writing.push(r.slot);
            }
          } else if (op.kind === "ready" || op.kind === "abort") {
            const i = op.pick % Math.max(1, writing.length);
            const slot = writing[i];
            if (slot === undefined) continue;
            writing.splice(i, 1);
            if (op.kind === "ready") t.markReady(slot);
            else t.abort(slot);
          } else if (op.kind === "pin") {
            const s = t.find(`a${op.id}`);
            if (s === undefined || s.status !== "ready") continue;
            t.pin(s.slot);
            pins.push(s.slot);
          } else {
            const i = op.pick % Math.max(1, pins.length);
            const slot = pins[i];
            if (slot === undefined) continue;
            pins.splice(i, 1);
            t.unpin(slot);
          }
          // Invariants.
          const now = t.all();
          assert.equal(now[BASE_SLOT]?.adapterId, null);
          for (const s of before) {
            if (s.slot !== BASE_SLOT && s.pins > 0 && op.kind !== "abort") {
              assert.equal(now[s.slot]?.adapterId, s.adapterId, "a pinned slot changed adapter");
            }
          }
          for (const s of now) {
            if (s.adapterId !== null) assert.equal(t.find(s.adapterId)?.slot, s.slot);
            const expectedPins = pins.filter((p) => p === s.slot).length + (writing.includes(s.slot) ? 1 : 0);
            if (s.slot !== BASE_SLOT) assert.equal(s.pins, expectedPins);
          }
        }
      },
    ),
    { numRuns: 300 },
  );
});
