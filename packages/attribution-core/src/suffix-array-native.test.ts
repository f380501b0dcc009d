// The native SA-IS (@openledger/suffix-native) against the TypeScript builder and the comparison sort.
// Where the addon is not built (no compiler at install), the tests that need it are skipped and the
// fallback tests still run: `builder: "typescript"` and "auto" must give the sorted order either way.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { test } from "node:test";
import { Worker } from "node:worker_threads";
import fc from "fast-check";
import {
  buildSuffixArray,
  buildSuffixArrayBySort,
  nativeSuffixArrayStatus,
  type SaText,
} from "./suffix-array.ts";

const native = nativeSuffixArrayStatus();
const needsAddon = { skip: native.available ? false : `native addon not built: ${native.reason}` };

function lcg(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return s >>> 8;
  };
}

/** Both builders (native only where built) equal the comparison sort. */
function checkAll(text: SaText, k: number): void {
  const expected = buildSuffixArrayBySort(text);
  assert.deepEqual(buildSuffixArray(text, k, { builder: "typescript" }), expected);
  assert.deepEqual(buildSuffixArray(text, k), expected);
  if (native.available) assert.deepEqual(buildSuffixArray(text, k, { builder: "native" }), expected);
}

const fibonacci = (len: number): number[] => {
  let a = [0];
  let b = [0, 1];
  while (b.length < len) [a, b] = [b, b.concat(a)];
  return b.slice(0, len);
};

test("native, TypeScript and the comparison sort agree on random texts of every array type", () => {
  fc.assert(
    fc.property(
      fc.constantFrom("u8", "u16", "i32"),
      fc.integer({ min: 1, max: 300 }),
      fc.array(fc.nat(), { maxLength: 400 }),
      (type, kSmall, raw) => {
        const k = type === "u8" ? Math.min(kSmall, 256) : type === "u16" ? kSmall * 200 : kSmall * 7000;
        const a = raw.map((x) => x % k);
        const text =
          type === "u8" ? Uint8Array.from(a) : type === "u16" ? Uint16Array.from(a) : Int32Array.from(a);
        checkAll(text, k);
      },
    ),
    { numRuns: 300 },
  );
});

test("native and TypeScript agree on periodic and degenerate texts", () => {
  const cases: [SaText, number][] = [
    [new Uint8Array(0), 1],
    [Uint8Array.of(0), 1],
    [Uint8Array.of(255), 256],
    [Int32Array.of(5), 6],
    [new Uint8Array(5000).fill(7), 8],
    [new Uint16Array(3000).fill(60000), 65536],
    [Uint8Array.from({ length: 4001 }, (_, i) => i & 1), 2],
    [Uint8Array.from({ length: 3000 }, (_, i) => [2, 1, 0][i % 3]!), 3],
    [Uint8Array.from(fibonacci(6000)), 2],
    [Int32Array.from(fibonacci(5000), (x) => x * 1_000_000), 1_000_001],
    [Uint16Array.from({ length: 4000 }, (_, i) => (i % 97 < 50 ? 0 : i % 7)), 7],
  ];
  for (const [text, k] of cases) checkAll(text, k);
});

test("native and TypeScript agree on larger texts (deep recursion, reduced buckets inside and outside the output)", () => {
  const rnd = lcg(3);
  const words = ["the ", "of ", "and ", "to ", "a ", "in ", "that ", "is ", "was ", "he "];
  const english = new TextEncoder().encode(Array.from({ length: 40000 }, () => words[rnd() % 10]).join(""));
  const random16 = Uint16Array.from({ length: 60000 }, () => rnd() % 60000);
  const mixed32 = Int32Array.from({ length: 60000 }, (_, i) => (i % 1000 < 500 ? rnd() % 3 : rnd() % 50000));
  const fib = Uint8Array.from(fibonacci(100000));
  for (const [text, k] of [
    [english, 256],
    [random16, 65536],
    [mixed32, 100000],
    [fib, 2],
  ] as const) {
    const ts = buildSuffixArray(text, k, { builder: "typescript" });
    for (let i = 1; i < ts.length; i += 97) {
      // spot-check the order; the full check against the sort is in the small-text tests
      const a = ts[i - 1]!;
      const b = ts[i]!;
      let d = 0;
      while (b + d < text.length && text[a + d] === text[b + d]) d++;
      assert.ok(b + d < text.length && (a + d === text.length || text[a + d]! < text[b + d]!));
    }
    if (native.available) assert.deepEqual(buildSuffixArray(text, k, { builder: "native" }), ts);
  }
});

test("bad input is a clear error from either builder, never a crash", () => {
  const builders: ("typescript" | "native")[] = native.available ? ["typescript", "native"] : ["typescript"];
  for (const builder of builders) {
    assert.throws(() => buildSuffixArray(Uint8Array.of(0, 3, 1), 3, { builder }), {
      name: "RangeError",
      message: "symbol 3 at 1 outside alphabet [0, 3)",
    });
    assert.throws(() => buildSuffixArray(Int32Array.of(0, -1), 3, { builder }), {
      name: "RangeError",
      message: "symbol -1 at 1 outside alphabet [0, 3)",
    });
    assert.throws(() => buildSuffixArray(Uint16Array.of(1, 2), 0, { builder }), RangeError);
    assert.throws(() => buildSuffixArray(Uint16Array.of(1, 2), 2.5, { builder }), RangeError);
    assert.throws(
      () => buildSuffixArray(Float64Array.of(1, 2) as unknown as SaText, 3, { builder }),
      TypeError,
    );
    assert.throws(() => buildSuffixArray([1, 2] as unknown as SaText, 3, { builder }), TypeError);
  }
});

test("the addon itself rejects wrong arrays and shared memory with a TypeError", needsAddon, async () => {
  const { createRequire } = await import("node:module");
  const addon = createRequire(import.meta.url)("@openledger/suffix-native") as {
    build(...args: unknown[]): void;
  };
  assert.throws(() => addon.build(new Float32Array(3), 3, new Int32Array(3)), TypeError);
  assert.throws(() => addon.build(Uint8Array.of(1), 3, new Uint32Array(1)), TypeError);
  assert.throws(() => addon.build(Uint8Array.of(1), 3, new Int32Array(2)), RangeError);
  assert.throws(() => addon.build(Uint8Array.of(1), "3", new Int32Array(1)), TypeError);
  // Buckets cover the symbols that occur, not the declared alphabet: a generous size costs nothing.
  assert.deepEqual(
    buildSuffixArray(Int32Array.of(5, 1, 5), 2 ** 31 - 1, { builder: "native" }),
    Int32Array.of(1, 2, 0),
  );
  const shared = new Int32Array(4);
  assert.throws(() => addon.build(shared, 3, shared), TypeError);
  assert.throws(() => addon.build(Uint8Array.of(1)), TypeError);
});

test(
  "the native builder loads and runs inside a worker thread (where services build indexes)",
  needsAddon,
  async () => {
    const worker = new Worker(
      `const { createRequire } = require("node:module");
     const { parentPort } = require("node:worker_threads");
     const addon = createRequire(${JSON.stringify(import.meta.filename)})("@openledger/suffix-native");
     const out = new Int32Array(6);
     addon.build(Uint8Array.from([1, 0, 2, 1, 0, 2]), 3, out);
     parentPort.postMessage(Array.from(out));`,
      { eval: true },
    );
    const [result] = (await Promise.all([
      new Promise((resolve, reject) => {
        worker.once("message", resolve);
        worker.once("error", reject);
      }),
    ])) as [number[]];
    await worker.terminate();
    assert.deepEqual(result, Array.from(buildSuffixArrayBySort(Uint8Array.from([1, 0, 2, 1, 0, 2]))));
  },
);

test("builder 'native' without the addon is an error; 'auto' falls back to TypeScript with one warning", () => {
  // A child process with the addon switched off: the same path as a machine whose install could not
  // build it (the loader's error is caught the same way).
  const script = `
    import { buildSuffixArray, nativeSuffixArrayStatus } from ${JSON.stringify(new URL("./suffix-array.ts", import.meta.url).href)};
    const text = Uint8Array.from([3, 1, 2, 1, 2, 0]);
    const a = buildSuffixArray(text, 4);
    const b = buildSuffixArray(text, 4);
    let nativeError = "";
    try { buildSuffixArray(text, 4, { builder: "native" }); } catch (e) { nativeError = e.message; }
    console.log(JSON.stringify({ status: nativeSuffixArrayStatus(), a: Array.from(a), b: Array.from(b), nativeError }));
  `;
  const res = spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
    encoding: "utf8",
    env: { ...process.env, OPENLEDGER_SA_NATIVE: "off" },
  });
  assert.equal(res.status, 0, res.stderr);
  const out = JSON.parse(res.stdout.trim().split("\n").at(-1)!);
  assert.equal(out.status.available, false);
  assert.deepEqual(out.a, [5, 3, 1, 4, 2, 0]);
  assert.deepEqual(out.b, out.a);
  assert.match(out.nativeError, /native SA-IS unavailable/);
  assert.equal(res.stderr.match(/OPENLEDGER_SA_NATIVE_MISSING/g)?.length, 1, res.stderr);
});
