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
