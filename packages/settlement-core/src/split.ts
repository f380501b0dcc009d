import { compareAscii, largestRemainder } from "./rounding.ts";

export const BPS_DENOMINATOR = 10_000;
export const PPM_DENOMINATOR = 1_000_000;

/** Basis points of a fee per recipient group; they sum to 10,000. */
export interface SplitBps {
  treasury: number;
  validators: number;
  modelOwner: number;
  contributors: number;
}

/** Order of the groups; also the tie-break order of the group split. */
export const SPLIT_GROUPS = ["treasury", "validators", "modelOwner", "contributors"] as const;
export type SplitGroup = (typeof SPLIT_GROUPS)[number];

export const DEFAULT_SPLIT_BPS: Readonly<SplitBps> = Object.freeze({
  treasury: 1_000,
  validators: 1_000,
  modelOwner: 3_000,
  contributors: 5_000,
});

export class SplitConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SplitConfigError";
  }
}

/** Checks a split: integers in [0, 10000] that sum to exactly 10,000. Returns a frozen copy. */
export function validateSplitBps(bps: SplitBps): Readonly<SplitBps> {
  let sum = 0;
  for (const g of SPLIT_GROUPS) {
    const v = bps[g];
    if (!Number.isInteger(v) || v < 0 || v > BPS_DENOMINATOR) {
      throw new SplitConfigError(`${g} basis points must be an integer in [0, 10000], got ${v}`);
    }
    sum += v;
  }
  if (sum !== BPS_DENOMINATOR) throw new SplitConfigError(`basis points must sum to 10000, got ${sum}`);
  return Object.freeze({
    treasury: bps.treasury,
    validators: bps.validators,
    modelOwner: bps.modelOwner,
    contributors: bps.contributors,
  });
}

export interface ContributorWeight {
  /** Lower-case 0x address. */
  address: string;
  /** Parts per million (attribution weights of one result sum to 1,000,000). */
  ppm: number;
}

export interface SplitInput {
  fee: bigint;
  bps: SplitBps;
  /** Validators whose identical results made the quorum (lower-case addresses). */
  validators: readonly string[];
  /** Attribution weights; zero/negative weights are ignored. Empty = no positive attribution. */
  weights: readonly ContributorWeight[];
}

export interface FeeSplit {
  fee: bigint;
  bps: Readonly<SplitBps>;
  /** The group amounts before re-routing (sum = fee). */
  groups: Record<SplitGroup, bigint>;
  /** What the treasury finally receives: its group plus any re-routed share. */
  treasury: bigint;
  modelOwner: bigint;
  /** Per validator (ascending address); sums to groups.validators unless re-routed. */
  validators: Map<string, bigint>;
  /** Per contributor (ascending address); sums to groups.contributors unless re-routed. */
  contributors: Map<string, bigint>;
  /** True when no positive attribution existed: the contributors' group went to the treasury. */
  noAttribution: boolean;
  /** True when no validator attested: the validators' group went to the treasury. */
  noValidators: boolean;
}

/**
 * Splits a fee exactly (parts sum to the fee to the wei):
 * 1. into the four groups by basis points, largest remainder, ties in SPLIT_GROUPS order;
 * 2. the validators' group equally among the attesting validators (largest remainder,
 *    ties to the lower address);
 * 3. the contributors' group by attribution ppm (largest remainder, ties to the lower address).
 * Policy (see ARCHITECTURE.md "Settlement"): with no positive attribution the contributors'
 * group goes to the treasury; with no attesting validator the validators' group does too.
 */
export function splitFee(input: SplitInput): FeeSplit {
  const bps = validateSplitBps(input.bps);
  if (input.fee < 0n) throw new RangeError("fee must be >= 0");
  const groupParts = largestRemainder(
    input.fee,
    SPLIT_GROUPS.map((g) => ({ key: g, weight: BigInt(bps[g]) })),
  );
  const groups = {
    treasury: groupParts.get("treasury") ?? 0n,
    validators: groupParts.get("validators") ?? 0n,
    modelOwner: groupParts.get("modelOwner") ?? 0n,
    contributors: groupParts.get("contributors") ?? 0n,
  };
  let treasury = groups.treasury;

  const validatorSet = [...new Set(input.validators.map((v) => v.toLowerCase()))].sort(compareAscii);
  const noValidators = validatorSet.length === 0;
  let validators = new Map<string, bigint>();
  if (noValidators) treasury += groups.validators;
  else {
    validators = largestRemainder(
      groups.validators,
      validatorSet.map((v) => ({ key: v, weight: 1n })),
      compareAscii,
    );
  }

  const merged = new Map<string, bigint>();
  for (const w of input.weights) {
    if (!Number.isInteger(w.ppm)) throw new RangeError(`weight of ${w.address} is not an integer`);
    if (w.ppm <= 0) continue;
    const a = w.address.toLowerCase();
    merged.set(a, (merged.get(a) ?? 0n) + BigInt(w.ppm));
  }
  const noAttribution = merged.size === 0;
  let contributors = new Map<string, bigint>();
  if (noAttribution) treasury += groups.contributors;
  else {
    const keys = [...merged.keys()].sort(compareAscii);
    contributors = largestRemainder(
      groups.contributors,
      keys.map((k) => ({ key: k, weight: merged.get(k) ?? 0n })),
      compareAscii,
    );
  }
  return {
    fee: input.fee,
    bps,
    groups,
    treasury,
    modelOwner: groups.modelOwner,
    validators,
    contributors,
    noAttribution,
    noValidators,
  };
}
