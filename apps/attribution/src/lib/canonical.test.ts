import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { CanonicalJsonError, canonicalJson } from "./canonical.ts";

test("keys are sorted by code unit at every depth, arrays keep their order, no whitespace", () => {
  const out = canonicalJson({ b: 1, a: [3, { z: true, Z: null, é: "x" }, 1], "": -2, B: 10n });
  assert.equal(out, '{"":-2,"B":"10","a":[3,{"Z":null,"z":true,"é":"x"},1],"b":1}');
});

test("floats, non-finite numbers, undefined and class instances are refused", () => {
  for (const bad of [
    { p: 0.5 },
    { p: Number.NaN },
    { p: 2 ** 60 },
    { p: undefined },
    [new Date(0)],
    () => 1,
  ]) {
    assert.throws(() => canonicalJson(bad), CanonicalJsonError);
  }
  assert.equal(canonicalJson({ z: -0 }), '{"z":0}');
});

test("the same value built with keys in any order gives the same bytes, and it parses back", () => {
  const leaf = fc.oneof(fc.integer(), fc.string(), fc.boolean(), fc.constant(null));
  const json = fc.letrec((tie) => ({
    node: fc.oneof(
      { depthSize: "small" },
      leaf,
      fc.array(tie("node")),
      fc.dictionary(fc.string(), tie("node")),
    ),
  })).node;
  fc.assert(
    fc.property(json, (value) => {
      const once = canonicalJson(value);
      const shuffled = JSON.parse(JSON.stringify(value), function (this: unknown, _k, v) {
        if (v && typeof v === "object" && !Array.isArray(v)) {
          return Object.fromEntries(Object.entries(v).reverse());
        }
        return v;
      });
      assert.equal(canonicalJson(shuffled), once);
      assert.deepEqual(JSON.parse(once), JSON.parse(JSON.stringify(value)));
    }),
    { numRuns: 300, seed: 7 },
  );
});
