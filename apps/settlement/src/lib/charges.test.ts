// The charge planner (which fees a balance covers) and the receipt reader (each consumer's
// outcome), pure: properties over random fees and balances, and receipts that do not add up.
import assert from "node:assert/strict";
import { test } from "node:test";
import { inferenceEscrowAbi, type PlatformAddresses } from "@openledger/chain";
import fc from "fast-check";
import { type Address, encodeAbiParameters, encodeEventTopics, type Hex } from "viem";
import type { SettlementChain } from "./chain.ts";
import { outcomesOf, planCharges } from "./charges.ts";

const consumer = fc.integer({ min: 0, max: 5 }).map((i) => `0x${String(i).repeat(40)}`);
const fee = fc.bigInt({ min: 1n, max: 10n ** 21n });

test("planCharges: covered ≤ balance, covered + carried over = all fees, oldest first, nothing that fits is left", () => {
  fc.assert(
    fc.property(
      fc.array(fc.tuple(consumer, fee), { maxLength: 40 }),
      fc.array(fc.tuple(consumer, fc.bigInt({ min: 0n, max: 3n * 10n ** 21n }))),
      (fees, balanceList) => {
        const byConsumer = new Map<string, { id: string; fee: bigint }[]>();
        fees.forEach(([c, f], i) => {
          byConsumer.set(c, [...(byConsumer.get(c) ?? []), { id: `i${i}`, fee: f }]);
        });
        const balances = new Map(balanceList);
        const plan = planCharges(byConsumer, balances);
        for (const [c, list] of byConsumer) {
          const balance = balances.get(c) ?? 0n;
          const covered = plan.covered.find((p) => p.consumer === c);
          const short = plan.short.find((p) => p.consumer === c);
          const n = covered?.ids.length ?? 0;
          // A prefix of the consumer's fees, in order, summing to `amount`, within the balance.
          assert.deepEqual(
            covered?.ids ?? [],
            list.slice(0, n).map((f) => f.id),
          );
          const amount = list.slice(0, n).reduce((t, f) => t + f.fee, 0n);
          assert.equal(covered?.amount ?? 0n, amount);
          assert.ok(amount <= balance);
          if (covered) assert.ok(covered.amount > 0n, "never a zero charge (the escrow reverts on 0)");
          // The rest is carried over, to the wei; and the first waiting fee really does not fit.
          const rest = list.slice(n).reduce((t, f) => t + f.fee, 0n);
          assert.equal(short?.wei ?? 0n, rest);
          assert.equal(short?.count ?? 0, list.length - n);
          if (n < list.length) assert.ok(amount + list[n]!.fee > balance);
          assert.equal(plan.clear.includes(c), n === list.length);
        }
      },
    ),
  );
});

const ESCROW = "0x00000000000000000000000000000000000e5c70" as Address;
const chain = {
  addresses: { contracts: { InferenceEscrow: ESCROW } } as unknown as PlatformAddresses,
} as SettlementChain;
const BATCH = `0x${"ba".repeat(32)}` as Hex;
const A = `0x${"a".repeat(40)}` as Address;
const B = `0x${"b".repeat(40)}` as Address;

function log(
  eventName: "Charged" | "ChargeSkipped",
  who: Address,
  amount: bigint,
  balance: bigint,
  batch = BATCH,
  capRemaining = 10n ** 24n,
) {
  return {
    address: ESCROW,
    topics: encodeEventTopics({
      abi: inferenceEscrowAbi,
      eventName,
      args: { batchId: batch, consumer: who },
    }) as [Hex, ...Hex[]],
    // ChargeSkipped also carries what was left of the consumer's daily cap.
    data:
      eventName === "ChargeSkipped"
        ? encodeAbiParameters(
            [{ type: "uint256" }, { type: "uint256" }, { type: "uint256" }],
            [amount, balance, capRemaining],
          )
        : encodeAbiParameters([{ type: "uint256" }, { type: "uint256" }], [amount, balance]),
  };
}

const planned = {
  id: "charge-1",
  batch_id: BATCH,
  items: [
    { consumer: A, amountWei: "5", outcome: null },
    { consumer: B, amountWei: "7", outcome: null },
  ],
};

test("outcomesOf reads each consumer's outcome from the batch's events", () => {
  const out = outcomesOf(chain, planned, {
    status: "success",
    transactionHash: `0x${"11".repeat(32)}`,
    logs: [log("Charged", A, 5n, 95n), log("ChargeSkipped", B, 7n, 3n)] as never,
  });
  assert.deepEqual(
    out.items.map((i) => i.outcome),
    ["charged", "skipped"],
  );
  assert.equal(out.charged, 5n);
  assert.equal(out.balances.get(B), 3n);
  // Skipped for its daily cap: what it could pay is what was left of the cap, not its balance.
  const capped = outcomesOf(chain, planned, {
    status: "success",
    transactionHash: `0x${"11".repeat(32)}`,
    logs: [log("Charged", A, 5n, 95n), log("ChargeSkipped", B, 7n, 500n, BATCH, 2n)] as never,
  });
  assert.equal(capped.balances.get(B), 2n);
});

test("outcomesOf refuses a receipt that does not account for every consumer to the wei", () => {
  const receipt = (logs: ReturnType<typeof log>[]) => ({
    status: "success" as const,
    transactionHash: `0x${"11".repeat(32)}` as Hex,
    logs: logs as never,
  });
  // B missing; B's event of another batch; a different amount; a reverted transaction.
  assert.throws(
    () => outcomesOf(chain, planned, receipt([log("Charged", A, 5n, 0n)])),
    /does not account for/,
  );
  assert.throws(
    () =>
      outcomesOf(
        chain,
        planned,
        receipt([log("Charged", A, 5n, 0n), log("Charged", B, 7n, 0n, `0x${"cc".repeat(32)}`)]),
      ),
    /does not account for/,
  );
  assert.throws(
    () => outcomesOf(chain, planned, receipt([log("Charged", A, 5n, 0n), log("Charged", B, 6n, 0n)])),
    /does not account for/,
  );
  assert.throws(() => outcomesOf(chain, planned, { ...receipt([]), status: "reverted" }), /reverted/);
});
