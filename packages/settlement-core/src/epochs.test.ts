// Cumulative earnings never go down, through any sequence of epochs, guardian revocations and
// releases (issue #14): the functions settlement's epoch closing uses, driven by fast-check against
// a model of the RewardDistributor (sequential epochs, only the latest valid root revocable while
// pending, claims only against active roots).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { assertNonDecreasing, EarningsDecreasedError, nextCumulativeBalances, sumValues } from "./index.ts";

const RUNS = Number(process.env.FC_RUNS ?? 300);
const SEED = process.env.FC_SEED ? Number(process.env.FC_SEED) : undefined;
const opts = { numRuns: RUNS, ...(SEED !== undefined ? { seed: SEED } : {}) };

const ACCOUNTS = ["0xa1", "0xb2", "0xc3", "0xd4"];
const credits = fc
  .array(fc.tuple(fc.constantFrom(...ACCOUNTS), fc.bigInt({ min: 1n, max: 10n ** 24n })), {
    minLength: 1,
    maxLength: 6,
  })
  .map((pairs) => {
    const m = new Map<string, bigint>();
    for (const [a, v] of pairs) m.set(a, (m.get(a) ?? 0n) + v);
    return m;
  });

type Op =
  | { kind: "settle"; credits: Map<string, bigint> }
  | { kind: "close" }
  | { kind: "revoke" }
  | { kind: "release" }
  | { kind: "activate" }
  | { kind: "claim"; account: string };

const op: fc.Arbitrary<Op> = fc.oneof(
  credits.map((c) => ({ kind: "settle" as const, credits: c })),
  fc.constant({ kind: "close" as const }),
  fc.constant({ kind: "revoke" as const }),
  fc.constant({ kind: "release" as const }),
  fc.constant({ kind: "activate" as const }),
  fc.constantFrom(...ACCOUNTS).map((account) => ({ kind: "claim" as const, account })),
);

interface Root {
  balances: Map<string, bigint>;
  total: bigint;
  state: "pending" | "active" | "revoked";
  /** Settlement credits this root carried (held again if it is revoked). */
  credits: Map<string, bigint>[];
}

function merge(list: Map<string, bigint>[]): Map<string, bigint> {
  const out = new Map<string, bigint>();
  for (const m of list) for (const [a, v] of m) out.set(a, (out.get(a) ?? 0n) + v);
  return out;
}

describe("cumulative earnings through epochs, revocations and releases", () => {
  test("no account's cumulative amount is ever below what it had in the last valid root, and claims stay funded", () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
        const roots: Root[] = [];
        let waiting: Map<string, bigint>[] = [];
        const held: Map<string, bigint>[][] = [];
        const claimed = new Map<string, bigint>();
        let funded = 0n; // what the distributor drew: the last valid total
        let paid = 0n;
        const lastValid = () => [...roots].reverse().find((r) => r.state !== "revoked");
        for (const o of ops) {
          if (o.kind === "settle") waiting.push(o.credits);
          else if (o.kind === "close" && waiting.length > 0) {
            const previous = lastValid();
            const balances = nextCumulativeBalances(previous?.balances ?? new Map(), merge(waiting));
            const total = sumValues(balances);
            // The distributor's own rule (gov): a total below the last valid one is refused.
            assert.ok(total >= (previous?.total ?? 0n));
            // The property: nobody lower than in the last valid root, nor than any active root.
            for (const r of roots) if (r.state !== "revoked") assertNonDecreasing(r.balances, balances);
            roots.push({ balances, total, state: "pending", credits: waiting });
            funded = total;
            waiting = [];
          } else if (o.kind === "revoke") {
            const r = lastValid();
            if (r?.state === "pending") {
              r.state = "revoked";
              held.push(r.credits); // held out of later roots, not carried unchanged
              funded = lastValid()?.total ?? 0n;
            }
          } else if (o.kind === "release") {
            const h = held.shift();
            if (h) waiting.push(...h);
          } else if (o.kind === "activate") {
            for (const r of roots) if (r.state === "pending") r.state = "active";
          } else if (o.kind === "claim") {
            // Claims use the latest ACTIVE root, never a pending or revoked one.
            const active = [...roots].reverse().find((r) => r.state === "active");
            const cumulative = active?.balances.get(o.account) ?? 0n;
            const before = claimed.get(o.account) ?? 0n;
            if (cumulative > before) {
              paid += cumulative - before;
              claimed.set(o.account, cumulative);
            }
          }
          // Everything paid out was funded, and nobody claimed more than any valid root now gives them.
          assert.ok(paid <= funded, `paid ${paid} > funded ${funded}`);
          const current = lastValid();
          for (const [a, c] of claimed) assert.ok(c <= (current?.balances.get(a) ?? 0n), `${a} over-claimed`);
        }
      }),
      opts,
    );
  });

  test("a lowered or missing account is refused", () => {
    const previous = new Map([
      ["0xa1", 10n],
      ["0xb2", 5n],
    ]);
    assert.throws(
      () =>
        assertNonDecreasing(
          previous,
          new Map([
            ["0xa1", 9n],
            ["0xb2", 6n],
          ]),
        ),
      EarningsDecreasedError,
    );
    assert.throws(() => assertNonDecreasing(previous, new Map([["0xa1", 10n]])), EarningsDecreasedError);
    assert.throws(() => nextCumulativeBalances(previous, new Map([["0xa1", -1n]])), EarningsDecreasedError);
    assert.deepEqual(
      nextCumulativeBalances(previous, new Map([["0xc3", 1n]])),
      new Map([
        ["0xa1", 10n],
        ["0xb2", 5n],
        ["0xc3", 1n],
      ]),
    );
  });

  test("any previous balances plus non-negative credits never decrease", () => {
    fc.assert(
      fc.property(credits, credits, (previous, epoch) => {
        const next = nextCumulativeBalances(previous, epoch);
        for (const [a, v] of previous) assert.ok((next.get(a) ?? 0n) >= v);
        assert.equal(sumValues(next), sumValues(previous) + sumValues(epoch));
      }),
      opts,
    );
  });
});
