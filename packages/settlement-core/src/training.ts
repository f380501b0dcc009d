import { buildFeeJournal, type FeeJournalInput, type JournalEntry } from "./journal.ts";
import { compareAscii, largestRemainder } from "./rounding.ts";
import { BPS_DENOMINATOR, type FeeSplit, type SplitBps } from "./split.ts";

/** Tokens of one contributor's rows that a fine-tuning job trained on (label tokens, every epoch). */
export interface TrainedTokens {
  /** Lower-case 0x address. */
  address: string;
  tokens: bigint;
}

/** How a training fee is split: everything to the contributors whose tokens were trained on. */
export const TRAINING_SPLIT_BPS: Readonly<SplitBps> = Object.freeze({
  treasury: 0,
  validators: 0,
  modelOwner: 0,
  contributors: BPS_DENOMINATOR,
});

/**
 * Splits a fine-tuning fee among the contributors in proportion to their trained tokens
 * (largest remainder, ties to the lower address): the parts sum to the fee to the wei. A job
 * trains only on contributors' rows, so every token has an owner; with no tokens at all (a fee
 * of 0 in practice) a non-zero fee goes to the treasury rather than nowhere.
 */
export function splitTrainingFee(fee: bigint, shares: readonly TrainedTokens[]): FeeSplit {
  if (fee < 0n) throw new RangeError("fee must be >= 0");
  const merged = new Map<string, bigint>();
  for (const s of shares) {
    if (s.tokens < 0n) throw new RangeError(`tokens of ${s.address} must be >= 0`);
    if (s.tokens === 0n) continue;
    const a = s.address.toLowerCase();
    merged.set(a, (merged.get(a) ?? 0n) + s.tokens);
  }
  const noAttribution = merged.size === 0;
  const keys = [...merged.keys()].sort(compareAscii);
  const contributors = noAttribution
    ? new Map<string, bigint>()
    : largestRemainder(
        fee,
        keys.map((k) => ({ key: k, weight: merged.get(k) ?? 0n })),
        compareAscii,
      );
  return {
    fee,
    bps: TRAINING_SPLIT_BPS,
    groups: { treasury: 0n, validators: 0n, modelOwner: 0n, contributors: fee },
    treasury: noAttribution ? fee : 0n,
    modelOwner: 0n,
    validators: new Map(),
    contributors,
    noAttribution,
    noValidators: true,
  };
}

/** The balanced journal of a training fee: the builder debited, each contributor credited. */
export function buildTrainingJournal(input: Omit<FeeJournalInput, "modelOwner">): JournalEntry[] {
  return buildFeeJournal({ ...input, modelOwner: "0x0000000000000000000000000000000000000000" });
}
