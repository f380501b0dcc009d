import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { detExp, detLog, log2Fixed } from "./det-math.ts";

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
