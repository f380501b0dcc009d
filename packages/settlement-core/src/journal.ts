import { compareAscii } from "./rounding.ts";
import type { FeeSplit } from "./split.ts";

/** Ledger account roles. An account is "<role>:<lower-case address>". */
export const ACCOUNT_ROLES = ["consumer", "treasury", "validator", "model_owner", "contributor"] as const;
export type AccountRole = (typeof ACCOUNT_ROLES)[number];
/** Roles whose credits are earnings paid out through the RewardDistributor. */
export const EARNING_ROLES: readonly AccountRole[] = ["treasury", "validator", "model_owner", "contributor"];

export interface JournalEntry {
  account: string;
  /** Signed wei: the consumer's debit is negative, credits positive. */
  amountWei: bigint;
}

export function accountName(role: AccountRole, address: string): string {
  return `${role}:${address.toLowerCase()}`;
}

export function parseAccount(account: string): { role: AccountRole; address: string } | undefined {
  const i = account.indexOf(":");
  if (i < 0) return undefined;
  const role = account.slice(0, i) as AccountRole;
  if (!ACCOUNT_ROLES.includes(role)) return undefined;
  return { role, address: account.slice(i + 1) };
}

export class UnbalancedJournalError extends Error {
  constructor(sum: bigint) {
    super(`journal does not balance: entries sum to ${sum}`);
    this.name = "UnbalancedJournalError";
  }
}

export function journalSum(entries: readonly JournalEntry[]): bigint {
  let s = 0n;
  for (const e of entries) s += e.amountWei;
  return s;
}

export function assertBalanced(entries: readonly JournalEntry[]): void {
  const s = journalSum(entries);
  if (s !== 0n) throw new UnbalancedJournalError(s);
}

export interface FeeJournalInput {
  consumer: string;
  modelOwner: string;
  treasury: string;
  split: FeeSplit;
}

const ZERO_ADDRESS = "0x0000000000000000000000000000000000000000";

/**
 * The balanced journal of one settled fee: the consumer is debited the fee, every non-zero
 * credit is listed (treasury, each validator, the model owner, each contributor), in a
 * fixed order (role, then ascending address). Entries sum to zero.
 * An ownerless model (owner 0x0, e.g. the platform's own base model) has its owner share
 * credited to the treasury: the distributor cannot pay address 0, so a 0x0 leaf would
 * lock those tokens in the distributor for ever.
 */
export function buildFeeJournal(input: FeeJournalInput): JournalEntry[] {
  const { split } = input;
  const entries: JournalEntry[] = [
    { account: accountName("consumer", input.consumer), amountWei: -split.fee },
  ];
  const credit = (role: AccountRole, address: string, amount: bigint) => {
    if (amount > 0n) entries.push({ account: accountName(role, address), amountWei: amount });
  };
  const ownerless = input.modelOwner.toLowerCase() === ZERO_ADDRESS;
  credit("treasury", input.treasury, split.treasury + (ownerless ? split.modelOwner : 0n));
  for (const [a, v] of [...split.validators].sort((x, y) => compareAscii(x[0], y[0])))
    credit("validator", a, v);
  if (!ownerless) credit("model_owner", input.modelOwner, split.modelOwner);
  for (const [a, v] of [...split.contributors].sort((x, y) => compareAscii(x[0], y[0]))) {
    credit("contributor", a, v);
  }
  assertBalanced(entries);
  return entries;
}
