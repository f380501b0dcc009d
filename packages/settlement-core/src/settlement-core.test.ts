import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import {
  accumulateEarnings,
  assertBalanced,
  attributionReadiness,
  buildFeeJournal,
  ceilDiv,
  countedReveals,
  DEFAULT_SPLIT_BPS,
  EarningsDecreasedError,
  earningsByAddress,
  earningsLeaves,
  journalSum,
  largestRemainder,
  priceInference,
  SplitConfigError,
  splitFee,
  sumValues,
  validateSplitBps,
} from "./index.ts";

const RUNS = Number(process.env.FC_RUNS ?? 300);
const SEED = process.env.FC_SEED ? Number(process.env.FC_SEED) : undefined;
const opts = { numRuns: RUNS, ...(SEED !== undefined ? { seed: SEED } : {}) };

const address = fc
  .uint8Array({ minLength: 20, maxLength: 20 })
  .map((b) => `0x${Buffer.from(b).toString("hex")}`);
const bpsArb = fc
  .tuple(
    fc.integer({ min: 0, max: 10_000 }),
    fc.integer({ min: 0, max: 10_000 }),
    fc.integer({ min: 0, max: 10_000 }),
  )
  .map(([a, b, c]) => {
    const [x, y, z] = [a, b, c].sort((p, q) => p - q) as [number, number, number];
    return { treasury: x, validators: y - x, modelOwner: z - y, contributors: 10_000 - z };
  });
const weightsArb = fc.array(fc.record({ address, ppm: fc.integer({ min: 0, max: 1_000_000 }) }), {
  maxLength: 30,
});
const feeArb = fc.bigInt({ min: 0n, max: 10n ** 30n });

describe("fee", () => {
  test("ceil per side, to the wei", () => {
    assert.equal(
      priceInference({ inputTokens: 1, outputTokens: 0, priceInPer1kWei: 1n, priceOutPer1kWei: 5n }),
      1n,
    );
    assert.equal(
      priceInference({ inputTokens: 1500, outputTokens: 1001, priceInPer1kWei: 3n, priceOutPer1kWei: 1000n }),
      5n + 1001n,
    );
    assert.equal(
      priceInference({ inputTokens: 0, outputTokens: 0, priceInPer1kWei: 7n, priceOutPer1kWei: 7n }),
      0n,
    );
    assert.throws(() =>
      priceInference({ inputTokens: -1, outputTokens: 0, priceInPer1kWei: 1n, priceOutPer1kWei: 1n }),
    );
  });
  test("property: equals the real-number ceiling of each side", () => {
    fc.assert(
      fc.property(
        fc.nat({ max: 1_000_000 }),
        fc.nat({ max: 1_000_000 }),
        fc.bigInt({ min: 0n, max: 10n ** 24n }),
        fc.bigInt({ min: 0n, max: 10n ** 24n }),
        (i, o, pi, po) => {
          const fee = priceInference({
            inputTokens: i,
            outputTokens: o,
            priceInPer1kWei: pi,
            priceOutPer1kWei: po,
          });
          const a = ceilDiv(BigInt(i) * pi, 1000n);
          const b = ceilDiv(BigInt(o) * po, 1000n);
          // a is the least integer with 1000 a >= i * pi
          assert.ok(a * 1000n >= BigInt(i) * pi && (a - 1n) * 1000n < BigInt(i) * pi);
          assert.ok(b * 1000n >= BigInt(o) * po && (b - 1n) * 1000n < BigInt(o) * po);
          assert.equal(fee, a + b);
        },
      ),
      opts,
    );
  });
});

describe("largest remainder", () => {
  test("known cases and tie-break", () => {
    // 10 over 3 equal weights: 4,3,3 - the first key in tie-break order gets the extra unit
    const m = largestRemainder(
      10n,
      ["0xc", "0xa", "0xb"].map((k) => ({ key: k, weight: 1n })),
      (a, b) => (a < b ? -1 : 1),
    );
    assert.deepEqual([m.get("0xa"), m.get("0xb"), m.get("0xc")], [4n, 3n, 3n]);
    // zero weight gets nothing even with leftovers
    const z = largestRemainder(5n, [
      { key: "x", weight: 0n },
      { key: "y", weight: 3n },
      { key: "w", weight: 3n },
    ]);
    assert.deepEqual([z.get("x"), z.get("y"), z.get("w")], [0n, 3n, 2n]);
    assert.throws(() => largestRemainder(1n, [{ key: "x", weight: 0n }]), RangeError);
  });
  test("property: exact sum, each part within 1 of its quota, input-order independent", () => {
    fc.assert(
      fc.property(
        feeArb,
        fc.uniqueArray(fc.record({ key: address, weight: fc.bigInt({ min: 0n, max: 10n ** 9n }) }), {
          minLength: 1,
          maxLength: 40,
          selector: (r) => r.key,
        }),
        (total, weights) => {
          const W = weights.reduce((s, w) => s + w.weight, 0n);
          fc.pre(W > 0n);
          const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
          const m = largestRemainder(total, weights, cmp);
          assert.equal(sumValues(m), total);
          for (const w of weights) {
            const part = m.get(w.key) ?? -1n;
            const floor = (total * w.weight) / W;
            assert.ok(part === floor || part === floor + 1n);
            if (w.weight === 0n) assert.equal(part, 0n);
          }
          const reversed = largestRemainder(total, [...weights].reverse(), cmp);
          for (const w of weights) assert.equal(reversed.get(w.key), m.get(w.key));
        },
      ),
      opts,
    );
  });
});

describe("split", () => {
  test("validates basis points", () => {
    assert.deepEqual(validateSplitBps(DEFAULT_SPLIT_BPS), DEFAULT_SPLIT_BPS);
    assert.throws(
      () => validateSplitBps({ treasury: 1, validators: 0, modelOwner: 0, contributors: 0 }),
      SplitConfigError,
    );
    assert.throws(
      () => validateSplitBps({ treasury: 0.5, validators: 0, modelOwner: 0, contributors: 9999.5 }),
      SplitConfigError,
    );
    assert.throws(
      () => validateSplitBps({ treasury: -1, validators: 1, modelOwner: 0, contributors: 10_000 }),
      SplitConfigError,
    );
  });

  test("a worked example to the wei", () => {
    const s = splitFee({
      fee: 1001n,
      bps: DEFAULT_SPLIT_BPS,
      validators: [
        "0x0000000000000000000000000000000000000003",
        "0x0000000000000000000000000000000000000001",
      ],
      weights: [
        { address: "0x00000000000000000000000000000000000000bb", ppm: 333_333 },
        { address: "0x00000000000000000000000000000000000000aa", ppm: 666_667 },
      ],
    });
    // groups: 100.1, 100.1, 300.3, 500.5 -> floors 100,100,300,500 (1000), 1 left: remainders
    // 1000,1000,3000,5000 (x/10000) -> contributors get it: 501
    assert.deepEqual(s.groups, { treasury: 100n, validators: 100n, modelOwner: 300n, contributors: 501n });
    assert.deepEqual(
      [...s.validators],
      [
        ["0x0000000000000000000000000000000000000001", 50n],
        ["0x0000000000000000000000000000000000000003", 50n],
      ],
    );
    // 501 * 666667/1e6 = 334.000167 -> 334; 501 * 333333/1e6 = 166.999833 -> 166 + 1 = 167
    assert.equal(s.contributors.get("0x00000000000000000000000000000000000000aa"), 334n);
    assert.equal(s.contributors.get("0x00000000000000000000000000000000000000bb"), 167n);
    assert.equal(s.noAttribution, false);
  });

  test("no positive attribution: the contributors' share goes to the treasury", () => {
    const s = splitFee({
      fee: 10_000n,
      bps: DEFAULT_SPLIT_BPS,
      validators: ["0x0000000000000000000000000000000000000001"],
      weights: [{ address: "0x00000000000000000000000000000000000000aa", ppm: 0 }],
    });
    assert.equal(s.noAttribution, true);
    assert.equal(s.contributors.size, 0);
    assert.equal(s.treasury, 1_000n + 5_000n);
    const none = splitFee({ fee: 10_000n, bps: DEFAULT_SPLIT_BPS, validators: [], weights: [] });
    assert.equal(none.treasury, 7_000n);
    assert.equal(none.noValidators, true);
  });

  test("an ownerless model (owner 0x0) credits its owner share to the treasury, never to address 0", () => {
    const split = splitFee({
      fee: 10_000n,
      bps: DEFAULT_SPLIT_BPS,
      validators: ["0x0000000000000000000000000000000000000001"],
      weights: [{ address: "0x00000000000000000000000000000000000000aa", ppm: 1_000_000 }],
    });
    const treasury = "0x00000000000000000000000000000000000000ee";
    const consumer = "0x00000000000000000000000000000000000000cc";
    const j = buildFeeJournal({
      consumer,
      modelOwner: "0x0000000000000000000000000000000000000000",
      treasury,
      split,
    });
    assert.equal(journalSum(j), 0n);
    assert.ok(j.every((e) => !e.account.includes("0x0000000000000000000000000000000000000000")));
    const toTreasury = j.filter((e) => e.account.includes(treasury)).reduce((t, e) => t + e.amountWei, 0n);
    assert.equal(toTreasury, split.treasury + split.modelOwner);
    const owned = buildFeeJournal({
      consumer,
      modelOwner: "0x00000000000000000000000000000000000000dd",
      treasury,
      split,
    });
    assert.ok(owned.some((e) => e.account.includes("0x00000000000000000000000000000000000000dd")));
  });

  test("property: parts sum to the fee exactly; journal balances; deterministic", () => {
    fc.assert(
      fc.property(
        feeArb,
        bpsArb,
        fc.array(address, { maxLength: 8 }),
        weightsArb,
        address,
        address,
        address,
        (fee, bps, validators, weights, consumer, owner, treasury) => {
          const s = splitFee({ fee, bps, validators, weights });
          const total = s.treasury + s.modelOwner + sumValues(s.validators) + sumValues(s.contributors);
          assert.equal(total, fee);
          assert.equal(
            s.groups.treasury + s.groups.validators + s.groups.modelOwner + s.groups.contributors,
            fee,
          );
          // each group within 1 wei of its exact quota
          for (const g of ["treasury", "validators", "modelOwner", "contributors"] as const) {
            const floor = (fee * BigInt(bps[g])) / 10_000n;
            assert.ok(s.groups[g] === floor || s.groups[g] === floor + 1n);
          }
          if (!s.noValidators) {
            const vals = [...s.validators.values()];
            const min = vals.reduce((a, b) => (a < b ? a : b));
            const max = vals.reduce((a, b) => (a > b ? a : b));
            assert.ok(max - min <= 1n, "validators split equally");
          }
          const j = buildFeeJournal({ consumer, modelOwner: owner, treasury, split: s });
          assert.equal(journalSum(j), 0n);
          assert.ok(j.slice(1).every((e) => e.amountWei > 0n));
          // same inputs in another order -> same split
          const again = splitFee({
            fee,
            bps,
            validators: [...validators].reverse(),
            weights: [...weights].reverse(),
          });
          assert.deepEqual([...again.contributors].sort(), [...s.contributors].sort());
          assert.deepEqual([...again.validators].sort(), [...s.validators].sort());
        },
      ),
      opts,
    );
  });
});

describe("journal and earnings", () => {
  test("assertBalanced rejects an unbalanced journal", () => {
    assert.throws(() =>
      assertBalanced([
        { account: "consumer:0x1", amountWei: -2n },
        { account: "treasury:0x2", amountWei: 1n },
      ]),
    );
  });
  test("earnings merge roles of one address and never decrease", () => {
    const e = earningsByAddress([
      { account: "consumer:0xaa", amountWei: -10n },
      { account: "model_owner:0xbb", amountWei: 4n },
      { account: "contributor:0xbb", amountWei: 5n },
      { account: "treasury:0xcc", amountWei: 1n },
    ]);
    assert.deepEqual([...e].sort(), [
      ["0xbb", 9n],
      ["0xcc", 1n],
    ]);
    const c = accumulateEarnings(
      new Map([
        ["0xcc", 5n],
        ["0xdd", 2n],
      ]),
      e,
    );
    assert.deepEqual(earningsLeaves(c), [
      { account: "0xbb", cumulativeAmount: 9n },
      { account: "0xcc", cumulativeAmount: 6n },
      { account: "0xdd", cumulativeAmount: 2n },
    ]);
    assert.throws(() => accumulateEarnings(c, new Map([["0xbb", -1n]])), EarningsDecreasedError);
  });
  test("property: cumulative total over epochs = sum of all fees", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.array(fc.tuple(feeArb, fc.array(address, { maxLength: 3 }), weightsArb, address), {
            maxLength: 5,
          }),
          {
            maxLength: 4,
          },
        ),
        address,
        (epochs, treasury) => {
          let cumulative = new Map<string, bigint>();
          let fees = 0n;
          for (const epoch of epochs) {
            const entries = epoch.flatMap(([fee, validators, weights, owner]) => {
              fees += fee;
              return buildFeeJournal({
                consumer: owner,
                modelOwner: owner,
                treasury,
                split: splitFee({ fee, bps: DEFAULT_SPLIT_BPS, validators, weights }),
              });
            });
            const next = accumulateEarnings(cumulative, earningsByAddress(entries));
            for (const [a, v] of cumulative) assert.ok((next.get(a) ?? 0n) >= v);
            cumulative = next;
            assert.equal(sumValues(cumulative), fees);
          }
        },
      ),
      { ...opts, numRuns: Math.max(20, Math.floor(RUNS / 5)) },
    );
  });
});

describe("attribution readiness", () => {
  const v = (n: number) => `0x${String(n).padStart(40, "0")}`;
  test("commit-reveal: only reveals whose commitment precedes the first opening reveal count", () => {
    assert.deepEqual(countedReveals([]), { counted: new Set() });
    // v1 and v2 committed (1, 2), v1 revealed (3); v3 copied it: committed (4) and revealed (5) after.
    const r = countedReveals([
      { validator: v(3), revealSeq: 5n, opens: true, commitmentSeq: 4n },
      { validator: v(1), revealSeq: 3n, opens: true, commitmentSeq: 1n },
      { validator: v(2), revealSeq: 6n, opens: true, commitmentSeq: 2n },
    ]);
    assert.deepEqual(r, { counted: new Set([v(1), v(2)]), closedAt: 3n });
    // A reveal that opens nothing (no commitment, or a wrong salt/hash) neither counts nor closes the phase.
    const stray = countedReveals([
      { validator: v(3), revealSeq: 2n, opens: false, commitmentSeq: 1n },
      { validator: v(4), revealSeq: 3n, opens: false },
      { validator: v(1), revealSeq: 9n, opens: true, commitmentSeq: 8n },
      // a commitment recorded after its own reveal opens nothing (and closes nothing retroactively)
      { validator: v(5), revealSeq: 4n, opens: true, commitmentSeq: 7n },
    ]);
    assert.deepEqual(stray, { counted: new Set([v(1)]), closedAt: 9n });
  });
  test("needs a quorum of valid, identical results", () => {
    assert.deepEqual(attributionReadiness([], 2), { ready: false, agreeing: 0, needed: 2 });
    const r = attributionReadiness(
      [
        { validator: v(1), resultHash: "0xaa", valid: true },
        { validator: v(2), resultHash: "0xbb", valid: true },
        { validator: v(3), resultHash: "0xaa", valid: false },
      ],
      2,
    );
    assert.equal(r.ready, false);
    const ok = attributionReadiness(
      [
        { validator: v(3), resultHash: "0xAA", valid: true },
        { validator: v(1), resultHash: "0xaa", valid: true },
        { validator: v(2), resultHash: "0xbb", valid: true },
      ],
      2,
    );
    assert.deepEqual(ok, { ready: true, resultHash: "0xaa", validators: [v(1), v(3)] });
  });
});
