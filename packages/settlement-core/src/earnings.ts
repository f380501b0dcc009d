import { EARNING_ROLES, type JournalEntry, parseAccount } from "./journal.ts";
import { compareAscii } from "./rounding.ts";

/**
 * Earnings per address from journal entries: every credit to an earning role (treasury,
 * validator, model owner, contributor) of the same address adds up into one leaf, since
 * the distributor pays addresses, not roles.
 */
export function earningsByAddress(entries: Iterable<JournalEntry>): Map<string, bigint> {
  const out = new Map<string, bigint>();
  for (const e of entries) {
    const acc = parseAccount(e.account);
    if (!acc || !EARNING_ROLES.includes(acc.role)) continue;
    out.set(acc.address, (out.get(acc.address) ?? 0n) + e.amountWei);
  }
  return out;
}

export class EarningsDecreasedError extends Error {
  constructor(address: string) {
    super(`cumulative earnings of ${address} would decrease`);
    this.name = "EarningsDecreasedError";
  }
}

/**
 * Cumulative earnings after an epoch: previous cumulative + the epoch's earnings. An account
 * never decreases (the distributor pays cumulative - claimed): a negative epoch amount throws.
 */
export function accumulateEarnings(
  previous: ReadonlyMap<string, bigint>,
  epoch: ReadonlyMap<string, bigint>,
): Map<string, bigint> {
  const out = new Map(previous);
  for (const [a, v] of epoch) {
    if (v < 0n) throw new EarningsDecreasedError(a);
    out.set(a, (out.get(a) ?? 0n) + v);
  }
  return out;
}

/**
 * Throws `EarningsDecreasedError` when an account of `previous` is missing from `next` or has a lower
 * amount there: the check every new root's balances pass against the last valid root's before they
 * are posted (a lower cumulative amount would let that account claim from the older epoch and leave
 * other accounts' claims unfunded).
 */
export function assertNonDecreasing(
  previous: ReadonlyMap<string, bigint>,
  next: ReadonlyMap<string, bigint>,
): void {
  for (const [a, v] of previous) {
    if ((next.get(a) ?? 0n) < v) throw new EarningsDecreasedError(a);
  }
}

/**
 * The cumulative balances of the next root: the last *valid* root's balances (a revoked root never
 * counts) plus the new epoch's credits, checked never to lower an account.
 */
export function nextCumulativeBalances(
  lastValid: ReadonlyMap<string, bigint>,
  credits: ReadonlyMap<string, bigint>,
): Map<string, bigint> {
  const next = accumulateEarnings(lastValid, credits);
  assertNonDecreasing(lastValid, next);
  return next;
}

/** Leaves for the earnings tree: positive amounts, ascending address (stable input order). */
export function earningsLeaves(
  cumulative: ReadonlyMap<string, bigint>,
): { account: string; cumulativeAmount: bigint }[] {
  return [...cumulative]
    .filter(([, v]) => v > 0n)
    .sort((x, y) => compareAscii(x[0], y[0]))
    .map(([account, cumulativeAmount]) => ({ account, cumulativeAmount }));
}

export function sumValues(m: ReadonlyMap<string, bigint>): bigint {
  let s = 0n;
  for (const v of m.values()) s += v;
  return s;
}
