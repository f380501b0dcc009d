import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { ServingError } from "./errors.ts";
import { AccountRateLimiter, TokenBucket } from "./rate-limit.ts";

test("property: retry-after is exact — one millisecond earlier is too early, at it the take succeeds", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 10_000 }),
      fc.integer({ min: 1, max: 100_000 }),
      fc.array(fc.record({ dt: fc.nat(5_000), cost: fc.integer({ min: 1, max: 10_000 }) }), {
        maxLength: 40,
      }),
      (capacity, refillPerMinute, ops) => {
        let now = 0;
        const bucket = new TokenBucket({ capacity, refillPerMinute }, now);
        for (const op of ops) {
          now += op.dt;
          assert.ok(bucket.available(now) <= capacity, "never above capacity");
          const wait = bucket.waitMs(op.cost, now);
          if (op.cost > capacity) {
            assert.equal(wait, Number.POSITIVE_INFINITY);
            continue;
          }
          if (wait > 0) {
            assert.ok(bucket.waitMs(op.cost, now + wait - 1) > 0, "retry-after is not too long");
            now += wait;
            assert.equal(bucket.waitMs(op.cost, now), 0);
          }
          bucket.take(op.cost, now);
          assert.ok(bucket.available(now) >= 0);
        }
      },
    ),
    { numRuns: 300 },
  );
});

test("limiter takes from both buckets or neither, and forgets full buckets", () => {
  const limiter = new AccountRateLimiter((a) =>
    a.startsWith("acct")
      ? { requests: { capacity: 1, refillPerMinute: 60 }, tokens: { capacity: 10, refillPerMinute: 60 } }
      : undefined,
  );
  assert.throws(
    () => limiter.admit("acct0", 11, 0),
    (e: unknown) => e instanceof ServingError && e.code === "rate_limited" && e.retryAfterMs === undefined,
  );
  limiter.admit("acct0", 10, 0); // the refused call above took nothing
  assert.throws(
    () => limiter.admit("acct0", 1, 0),
    (e: unknown) => e instanceof ServingError && e.retryAfterMs === 1000,
  );
  limiter.admit("free", 1_000_000, 0); // no limits configured
  for (let i = 1; i <= 2000; i++) limiter.admit(`acct${i}`, 1, i * 60_000);
  assert.ok(limiter.trackedAccounts < 2000, `${limiter.trackedAccounts} buckets kept`);
});
