// RenewingCache: one load per key at a time, a value past half its life renewed in the background
// while it serves, none served past its time, an older slower load never replacing a newer value.
import assert from "node:assert/strict";
import { test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { RenewingCache } from "./renewing-cache.ts";

/** A cache whose loads are counted and each take `delayMs`; the value is the load's number. */
function counting(ttlMs: number, delayMs = 5, keep?: (v: number) => boolean) {
  let loads = 0;
  const cache = new RenewingCache<number>({
    ttlMs: () => ttlMs,
    load: async () => {
      const n = ++loads;
      await sleep(delayMs);
      return n;
    },
    ...(keep ? { keep } : {}),
  });
  return { cache, loads: () => loads };
}

test("concurrent gets of a key share one load; other keys load their own", async () => {
  const { cache, loads } = counting(60_000);
  const got = await Promise.all([...Array.from({ length: 10 }, () => cache.get("a")), cache.get("b")]);
  assert.deepEqual(got, [...Array(10).fill(1), 2]);
  assert.equal(loads(), 2);
  assert.equal(await cache.get("a"), 1);
  assert.equal(loads(), 2);
});

test("past half its life a value still serves and one renewal starts; none serves past its time", async () => {
  const ttl = 200;
  const { cache, loads } = counting(ttl);
  assert.equal(await cache.get("k"), 1);
  await sleep(ttl / 2 + 10);
  assert.deepEqual(await Promise.all([cache.get("k"), cache.get("k")]), [1, 1]);
  await sleep(30);
  assert.equal(loads(), 2);
  assert.equal(await cache.get("k"), 2);
  // Left alone past its time: the next get waits for a new load.
  await sleep(ttl + 10);
  assert.equal(await cache.get("k"), 3);
});

test("renew loads only a value past half its life with no load in flight", async () => {
  const ttl = 200;
  const { cache, loads } = counting(ttl);
  cache.renew("k");
  cache.renew("k");
  await sleep(20);
  assert.equal(loads(), 1);
  cache.renew("k");
  assert.equal(loads(), 1);
  await sleep(ttl / 2);
  cache.renew("k");
  await sleep(20);
  assert.equal(loads(), 2);
});

test("a value not kept is not cached; with no time every get loads", async () => {
  const dropped = counting(60_000, 1, () => false);
  await dropped.cache.get("k");
  await dropped.cache.get("k");
  assert.equal(dropped.loads(), 2);
  const none = counting(0);
  await Promise.all([none.cache.get("k"), none.cache.get("k")]);
  assert.equal(none.loads(), 2);
});

test("a slower load that began earlier does not replace a newer value", async () => {
  let n = 0;
  const cache = new RenewingCache<number>({
    ttlMs: () => 60_000,
    load: async () => {
      const mine = ++n;
      await sleep(mine === 1 ? 60 : 5);
      return mine;
    },
  });
  const slow = cache.loadAlone("k");
  await sleep(5);
  assert.equal(await cache.loadAlone("k"), 2);
  assert.equal(await slow, 1);
  assert.equal(cache.peek("k")?.value, 2);
});
