import { compareAscii } from "./rounding.ts";

export interface AttestedResult {
  /** Lower-case validator address. */
  validator: string;
  resultHash: string;
  /** The signature recovered to `validator` and the validator is in the allowed set. */
  valid: boolean;
}

export type Readiness =
  | { ready: true; resultHash: string; validators: string[] }
  | { ready: false; agreeing: number; needed: number };

/**
 * When an inference is ready to settle: at least `quorum` distinct, valid validators
 * signed the same result hash. The winning hash is the one with the most valid signers
 * (ties: the lower hash, so every replica picks the same one). Its signers are the
 * "attesting validators" who share the validators' part of the fee.
 */
export function attributionReadiness(results: readonly AttestedResult[], quorum: number): Readiness {
  if (!Number.isInteger(quorum) || quorum < 1) throw new RangeError("quorum must be a positive integer");
  const byHash = new Map<string, Set<string>>();
  for (const r of results) {
    if (!r.valid) continue;
    const h = r.resultHash.toLowerCase();
    const s = byHash.get(h) ?? new Set<string>();
    byHash.set(h, s);
    s.add(r.validator.toLowerCase());
  }
  let best: [string, Set<string>] | undefined;
  for (const entry of [...byHash].sort((a, b) => compareAscii(a[0], b[0]))) {
    if (!best || entry[1].size > best[1].size) best = entry;
  }
  if (!best || best[1].size < quorum) return { ready: false, agreeing: best?.[1].size ?? 0, needed: quorum };
  return { ready: true, resultHash: best[0], validators: [...best[1]].sort(compareAscii) };
}

/** A stored reveal, with what settlement checked about it and its commitment. */
export interface Reveal {
  /** Lower-case validator address. */
  validator: string;
  /** The reveal's place in the database's order of commitments and reveals. */
  revealSeq: bigint;
  /**
   * The reveal is well formed and opens its validator's commitment: the result's signature and the
   * commitment's signature recover to an active validator, the result hash is the hash of the stored bytes,
   * and keccak256(resultHash, validator, salt) equals the commitment.
   */
  opens: boolean;
  /** Its commitment's place in the same order (undefined: no commitment recorded). */
  commitmentSeq?: bigint;
}

/**
 * Commit-reveal (issue #14): which reveals count. The commit phase of an inference closes at its first
 * reveal that opens a commitment (a stray row that opens nothing cannot close it); a reveal counts only when
 * it opens a commitment recorded before that point. A validator that copied a revealed result committed
 * after the first reveal, so its copy never counts; one that committed in time could not read any result
 * (nothing was revealed yet) and cannot change its commitment afterwards. Returns the validators whose
 * reveals count (lower-case) and the closing order number (undefined: nothing revealed yet).
 */
export function countedReveals(reveals: readonly Reveal[]): { counted: Set<string>; closedAt?: bigint } {
  // A reveal opens only a commitment recorded before it (a commitment added after its own reveal would
  // otherwise let a validator close the phase retroactively at the earlier, unopened reveal).
  const opening = reveals.filter(
    (r) => r.opens && r.commitmentSeq !== undefined && r.commitmentSeq < r.revealSeq,
  );
  let closedAt: bigint | undefined;
  for (const r of opening) if (closedAt === undefined || r.revealSeq < closedAt) closedAt = r.revealSeq;
  const counted = new Set<string>();
  if (closedAt === undefined) return { counted };
  for (const r of opening) if ((r.commitmentSeq as bigint) < closedAt) counted.add(r.validator.toLowerCase());
  return { counted, closedAt };
}
