/**
 * One answer, two kinds of evidence: verbatim spans (the answer quotes rows) and gradient
 * influence (the adapter learned from rows it does not quote). The rule that splits the
 * contributors' share between them, by the answer's tokens:
 *
 * - A token inside a kept span is *covered*: its evidence is the span, and the span path pays
 *   for it (span weights).
 * - Every other token is *uncovered*: its evidence is the adapter's parameters, and the
 *   gradient path pays for it — with influence measured on the loss of the uncovered tokens
 *   only (the caller masks covered tokens out of the answer's loss, `uncoveredTokenMask`).
 *
 * So no token, and no row through a token, is paid twice for the same evidence: a row quoted
 * by a span earns for the quoted tokens through the span path and, for the rest of the answer,
 * only as much as it influenced those other tokens. Contributor c's score is
 *   covered · spanPpm_c + uncovered · influencePpm_c
 * (both inputs are ppm weights summing to 1e6, or [] when that path attributes nothing),
 * normalized to ppm summing to exactly 1,000,000 by largest remainder. A path with no
 * attribution drops out and the other takes the whole share; both empty gives [].
 */
import type { ContributorWeight } from "./ppm.ts";
import { normalizeToPpm } from "./ppm.ts";

export interface CombineInput {
  /** Answer tokens covered by at least one kept span. */
  coveredTokens: number;
  /** All answer tokens (>= coveredTokens). */
  totalTokens: number;
  /** Span path weights (ppm, sum 1e6) or [] when no span matched. */
  span: readonly ContributorWeight[];
  /** Influence path weights over the uncovered tokens' loss (ppm, sum 1e6) or []. */
  influence: readonly ContributorWeight[];
}

export interface CombinedAttribution {
  weights: ContributorWeight[];
  /** Token counts that weighted each path (0 when the path had no attribution). */
  spanTokens: number;
  influenceTokens: number;
}

export function combineAttributions(input: CombineInput): CombinedAttribution {
  const { coveredTokens, totalTokens } = input;
  if (!Number.isSafeInteger(coveredTokens) || !Number.isSafeInteger(totalTokens)) {
    throw new RangeError("token counts must be integers");
  }
  if (coveredTokens < 0 || coveredTokens > totalTokens)
    throw new RangeError("0 <= coveredTokens <= totalTokens");
  const spanTokens = input.span.length > 0 ? coveredTokens : 0;
  const influenceTokens = input.influence.length > 0 ? totalTokens - coveredTokens : 0;
  const scores = [
    ...input.span.map((w) => ({ contributorId: w.contributorId, score: BigInt(w.ppm) * BigInt(spanTokens) })),
    ...input.influence.map((w) => ({
      contributorId: w.contributorId,
      score: BigInt(w.ppm) * BigInt(influenceTokens),
    })),
  ];
  return { weights: normalizeToPpm(scores), spanTokens, influenceTokens };
}

/**
 * 1 for each answer token outside every span [start, end), 0 inside: the weights of the
 * answer's loss whose gradient the influence path explains.
 */
export function uncoveredTokenMask(
  totalTokens: number,
  spans: readonly { start: number; end: number }[],
): { mask: Uint8Array; covered: number } {
  const mask = new Uint8Array(totalTokens).fill(1);
  for (const s of spans) {
    if (!(s.start >= 0 && s.end <= totalTokens && s.start <= s.end))
      throw new RangeError("span outside the answer");
    mask.fill(0, s.start, s.end);
  }
  let covered = 0;
  for (let i = 0; i < totalTokens; i++) covered += 1 - mask[i]!;
  return { mask, covered };
}
