import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { detExp, detExpm1, detLog, detLog1p, log2Fixed } from "./det-math.ts";

test("detExp and detLog agree with Math to ~1e-15 relative", () => {
  fc.assert(
    fc.property(fc.double({ min: -700, max: 700, noNaN: true }), (x) => {
      const e = detExp(x);
      assert.ok(Math.abs(e - Math.exp(x)) <= 4e-15 * Math.exp(x), `exp(${x})`);
    }),
  );
  fc.assert(
    fc.property(fc.double({ min: 1e-300, max: 1e300, noNaN: true }), (x) => {
      assert.ok(Math.abs(detLog(x) - Math.log(x)) <= 4e-15 * Math.max(1, Math.abs(Math.log(x))), `log(${x})`);
    }),
  );
  assert.equal(detExp(0), 1);
  assert.equal(detLog(1), 0);
  assert.equal(detExp(-1000), 0);
});

test("log2Fixed is floor(log2(x) * 2^f) up to one unit", () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }), (x) => {
      const got = log2Fixed(x, 16);
      const want = Math.log2(x) * 65536;
      assert.ok(got <= want + 1e-6 && got >= want - 2, `${x}: ${got} vs ${want}`);
    }),
  );
  assert.equal(log2Fixed(1024, 16), 10 * 65536);
  assert.equal(log2Fixed(1, 16), 0);
});

test("detExpm1 and detLog1p are accurate near 0 and agree with Math elsewhere", () => {
  fc.assert(
    fc.property(fc.double({ min: -700, max: 700, noNaN: true }), (x) => {
      const want = Math.expm1(x);
      assert.ok(Math.abs(detExpm1(x) - want) <= 8e-15 * Math.max(Math.abs(want), 1e-300), `expm1(${x})`);
    }),
  );
  fc.assert(
    fc.property(fc.double({ min: -0.999999, max: 1e300, noNaN: true }), (x) => {
      const want = Math.log1p(x);
      assert.ok(Math.abs(detLog1p(x) - want) <= 8e-15 * Math.max(Math.abs(want), 1e-300), `log1p(${x})`);
    }),
  );
  // Where detExp(x) - 1 and detLog(1 + x) lose every digit.
  assert.equal(detExpm1(1e-20), 1e-20);
  assert.equal(detLog1p(1e-20), 1e-20);
  assert.ok(Math.abs(detExpm1(1e-9) - 1.0000000005e-9) < 1e-24);
  assert.equal(detExpm1(0), 0);
  assert.equal(detLog1p(0), 0);
  assert.equal(detLog1p(-1), Number.NEGATIVE_INFINITY);
});
