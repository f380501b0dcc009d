import { inferenceEscrowAbi, openTokenAbi, rewardDistributorAbi } from "@openledger/chain";
import type { Db } from "@openledger/db";
import type { Address, Hex } from "viem";
import type { SettlementChain } from "./chain.ts";
import { type EpochManager, type EpochRow, latestConfirmedEpoch } from "./epochs.ts";

export interface ClaimInfo {
  address: string;
  /** The latest ACTIVE epoch (activation delay passed on the chain's clock, not revoked); null when none. */
  epoch: number | null;
  cumulativeAmount: string;
  claimed: string;
  claimable: string;
  /** The distributor accepts claims of `epoch` now (always true when `epoch` is set). */
  active: boolean;
  proof: Hex[];
  distributor: string;
  chainId: number;
  /** The next posted root still pending, if any: when it activates (chain clock) and what it will give. */
  next: { epoch: number; activatesAt: string; cumulativeAmount: string } | null;
}

/**
 * What an account can claim now, and the proof its own wallet passes to
 * `RewardDistributor.claim(epoch, account, cumulativeAmount, proof)`: always against the latest
 * root the distributor accepts claims for (never a pending or revoked one), with the next pending
 * root and its activation time beside it.
 */
export async function claimInfo(
  chain: SettlementChain,
  epochs: EpochManager,
  address: string,
): Promise<ClaimInfo> {
  const account = address.toLowerCase();
  const [claimed, { active, next }] = await Promise.all([
    chain.publicClient.readContract({
      address: chain.distributor,
      abi: rewardDistributorAbi,
      functionName: "claimed",
      args: [account as Address],
    }),
    epochs.claimableEpochs(chain),
  ]);
  const amountIn = async (epoch: EpochRow) =>
    (await epochs.tree(epoch)).claimFor(account as Address) ?? { cumulativeAmount: 0n, proof: [] as Hex[] };
  const nextInfo = next
    ? {
        epoch: next.id,
        activatesAt: (next.activates_at as Date).toISOString(),
        cumulativeAmount: (await amountIn(next)).cumulativeAmount.toString(),
      }
    : null;
  const base = {
    address: account,
    distributor: chain.distributor,
    chainId: chain.chainId,
    claimed: claimed.toString(),
    next: nextInfo,
  };
  if (!active)
    return { ...base, epoch: null, cumulativeAmount: "0", claimable: "0", active: false, proof: [] };
  const claim = await amountIn(active);
  const cumulative = claim.cumulativeAmount;
  const claimable = cumulative > claimed ? cumulative - claimed : 0n;
  return {
    ...base,
    epoch: active.id,
    cumulativeAmount: cumulative.toString(),
    claimable: claimable.toString(),
    active: true,
    proof: claim.proof,
  };
}

export interface ReconcileCheck {
  name: string;
  ledger: string;
  chain: string;
  ok: boolean;
  note?: string;
}

export interface ReconcileReport {
  ok: boolean;
  checkedAt: string;
  latestConfirmedEpoch: number | null;
  checks: ReconcileCheck[];
}

/** Largest number of accounts whose `claimed` is read one by one to total the claims. */
const MAX_CLAIM_READS = 2_000;

/**
 * Compares the ledger with the chain and lists every difference:
 * - the ledger balances (all entries sum to 0, and so does every transaction);
 * - fees of settlements (not written off) = consumer debits (net of write-offs);
 * - the latest confirmed epoch's root and cumulative total = the distributor's, and it is the
 *   distributor's latest valid epoch;
 * - escrow: total drawn = the posted cumulative total; total charged = charged fees (and each
 *   applied charge batch = its settlements' fees); settled undrawn = charged fees not yet posted;
 * - distributor balance = cumulative total - sum of claims (when the accounts are few enough to read).
 */
export async function reconcile(db: Db, chain: SettlementChain): Promise<ReconcileReport> {
  const checks: ReconcileCheck[] = [];
  const add = (name: string, ledger: bigint | string, onChain: bigint | string, note?: string) =>
    checks.push({
      name,
      ledger: ledger.toString(),
      chain: onChain.toString(),
      ok: ledger.toString().toLowerCase() === onChain.toString().toLowerCase(),
      ...(note ? { note } : {}),
    });

  const [sums] = await db.$queryRawUnsafe<
    { total: string; unbalanced: number; fees: string; debits: string }[]
  >(
    `SELECT (SELECT COALESCE(sum(amount_wei), 0)::text FROM ledger_entries) AS total,
            (SELECT count(*)::int FROM (SELECT transaction_id FROM ledger_entries GROUP BY transaction_id
                                         HAVING sum(amount_wei) <> 0) t) AS unbalanced,
            (SELECT COALESCE(sum(fee_wei), 0)::text FROM settlements WHERE writeoff_id IS NULL) AS fees,
            (SELECT COALESCE(-sum(amount_wei), 0)::text FROM ledger_entries WHERE account LIKE 'consumer:%') AS debits`,
  );
  checks.push({
    name: "ledger entries sum to zero",
    ledger: sums?.total ?? "0",
    chain: "-",
    ok: sums?.total === "0",
  });
  checks.push({
    name: "every ledger transaction balances",
    ledger: `${sums?.unbalanced ?? 0} unbalanced`,
    chain: "-",
    ok: (sums?.unbalanced ?? 0) === 0,
  });
  checks.push({
    name: "settled fees = consumer debits",
    ledger: sums?.fees ?? "0",
    chain: sums?.debits ?? "0",
    ok: sums?.fees === sums?.debits,
  });

  const epoch = await latestConfirmedEpoch(db);
  const read = <T>(address: Address, abi: unknown, functionName: string, args: unknown[] = []) =>
    chain.publicClient.readContract({ address, abi, functionName, args } as never) as Promise<T>;
  const escrow = chain.addresses.contracts.InferenceEscrow;
  const lastValid = await read<bigint>(chain.distributor, rewardDistributorAbi, "lastValidEpoch");
  add("latest confirmed epoch = distributor's last valid epoch", BigInt(epoch?.id ?? 0), lastValid);
  const onChainEpoch = epoch
    ? await read<{ root: Hex; cumulativeTotal: bigint }>(
        chain.distributor,
        rewardDistributorAbi,
        "getEpoch",
        [BigInt(epoch.id)],
      )
    : undefined;
  const cumulativeTotal = BigInt(epoch?.cumulative_total_wei ?? "0");
  if (epoch && onChainEpoch) {
    add(`epoch ${epoch.id} root`, epoch.merkle_root ?? "", onChainEpoch.root);
    add(`epoch ${epoch.id} cumulative total`, cumulativeTotal, onChainEpoch.cumulativeTotal);
  }
  add(
    "escrow total drawn = posted cumulative total",
    cumulativeTotal,
    await read<bigint>(escrow, inferenceEscrowAbi, "totalDrawn"),
  );
  // A fee is charged when its charge batch applied (or, closed before charges were planned
  // separately, when its epoch exists: the old flow charged every epoch before posting it).
  const [charged] = await db.$queryRawUnsafe<{ total: string; undrawn: string; batches: string }[]>(
    `WITH charged AS (
       SELECT s.fee_wei, s.epoch_id FROM settlements s LEFT JOIN escrow_charges c ON c.id = s.charge_id
        WHERE s.fee_wei > 0 AND (c.status = 'applied' OR (s.charge_id IS NULL AND s.epoch_id IS NOT NULL)))
     SELECT (SELECT COALESCE(sum(fee_wei), 0)::text FROM charged) AS total,
            (SELECT COALESCE(sum(c.fee_wei), 0)::text FROM charged c LEFT JOIN epochs e ON e.id = c.epoch_id
              WHERE e.id IS NULL OR e.status <> 'confirmed') AS undrawn,
            (SELECT COALESCE(sum(charged_wei), 0)::text FROM escrow_charges WHERE status = 'applied') AS batches`,
  );
  const [chargedInBatches] = await db.$queryRawUnsafe<{ total: string }[]>(
    `SELECT COALESCE(sum(s.fee_wei), 0)::text AS total FROM settlements s JOIN escrow_charges c ON c.id = s.charge_id
      WHERE c.status = 'applied'`,
  );
  add(
    "escrow charge batches = the fees of their settlements",
    BigInt(chargedInBatches?.total ?? "0"),
    BigInt(charged?.batches ?? "0"),
  );
  add(
    "escrow total charged = charged fees",
    BigInt(charged?.total ?? "0"),
    await read<bigint>(escrow, inferenceEscrowAbi, "totalCharged"),
  );
  add(
    "escrow settled undrawn = charged fees not in a confirmed epoch",
    BigInt(charged?.undrawn ?? "0"),
    await read<bigint>(escrow, inferenceEscrowAbi, "settledUndrawn"),
  );

  const balance = await read<bigint>(chain.addresses.contracts.OpenToken, openTokenAbi, "balanceOf", [
    chain.distributor,
  ]);
  if (epoch) {
    const accounts = await db.$queryRawUnsafe<{ address: string }[]>(
      `SELECT address FROM epoch_balances WHERE epoch_id = $1 LIMIT $2`,
      epoch.id,
      MAX_CLAIM_READS + 1,
    );
    if (accounts.length <= MAX_CLAIM_READS) {
      let claimedTotal = 0n;
      for (const a of accounts) {
        claimedTotal += await read<bigint>(chain.distributor, rewardDistributorAbi, "claimed", [a.address]);
      }
      add("distributor balance = cumulative total - claimed", cumulativeTotal - claimedTotal, balance);
    } else {
      checks.push({
        name: "distributor balance <= cumulative total",
        ledger: cumulativeTotal.toString(),
        chain: balance.toString(),
        ok: balance <= cumulativeTotal,
        note: `more than ${MAX_CLAIM_READS} accounts: claims not summed one by one`,
      });
    }
  } else {
    add("distributor balance before any epoch", 0n, balance);
  }
  return {
    ok: checks.every((c) => c.ok),
    checkedAt: new Date().toISOString(),
    latestConfirmedEpoch: epoch?.id ?? null,
    checks,
  };
}
