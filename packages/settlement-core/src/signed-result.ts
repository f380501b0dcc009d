import { compareAscii } from "./rounding.ts";
import type { ContributorWeight } from "./split.ts";

/** Why a signed canonical result cannot be paid from. */
export class SignedResultError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SignedResultError";
  }
}

const ADDRESS = /^0x[0-9a-f]{40}$/;
const PPM_TOTAL = 1_000_000;

/**
 * The contributor weights inside a validator-signed canonical attribution result (the exact bytes
 * whose keccak256 the validators signed): what settlement pays by. Anything stored beside the
 * result (the attribution service's `attribution_weights` rows) is a cache, checked against this.
 *
 * The result must be a JSON object naming `inferenceId` (the signature binds the hash to the
 * inference too; this binds the content) and holding `weights`: `[{contributorId, ppm}]` with
 * lower-case addresses, each at most once, positive integer ppm summing to exactly 1,000,000 — or
 * `[]` (nothing attributed). Returned sorted by address. Throws `SignedResultError` otherwise.
 */
export function signedResultWeights(canonicalJson: string, inferenceId: string): ContributorWeight[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(canonicalJson);
  } catch {
    throw new SignedResultError("the signed result is not JSON");
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new SignedResultError("the signed result is not a JSON object");
  }
  const result = parsed as Record<string, unknown>;
  if (
    typeof result.inferenceId !== "string" ||
    result.inferenceId.toLowerCase() !== inferenceId.toLowerCase()
  ) {
    throw new SignedResultError(`the signed result is about inference ${String(result.inferenceId)}`);
  }
  if (!Array.isArray(result.weights)) throw new SignedResultError("the signed result has no weights list");
  const seen = new Set<string>();
  let total = 0;
  const weights: ContributorWeight[] = [];
  for (const w of result.weights as unknown[]) {
    const { contributorId, ppm } = (w ?? {}) as { contributorId?: unknown; ppm?: unknown };
    if (typeof contributorId !== "string" || !ADDRESS.test(contributorId)) {
      throw new SignedResultError(`weight for a malformed contributor ${String(contributorId)}`);
    }
    if (typeof ppm !== "number" || !Number.isSafeInteger(ppm) || ppm <= 0 || ppm > PPM_TOTAL) {
      throw new SignedResultError(`weight ${String(ppm)} of ${contributorId} is not a positive ppm integer`);
    }
    if (seen.has(contributorId)) throw new SignedResultError(`contributor ${contributorId} listed twice`);
    seen.add(contributorId);
    total += ppm;
    weights.push({ address: contributorId, ppm });
  }
  if (weights.length > 0 && total !== PPM_TOTAL) {
    throw new SignedResultError(`weights sum to ${total} ppm, not ${PPM_TOTAL}`);
  }
  return weights.sort((a, b) => compareAscii(a.address, b.address));
}

/**
 * Whether stored weights (any order, any case) are exactly the signed ones: same contributors, same
 * ppm, nothing more. A difference means the store beside the signed result was altered.
 */
export function sameWeights(
  signed: readonly ContributorWeight[],
  stored: readonly ContributorWeight[],
): boolean {
  if (signed.length !== stored.length) return false;
  const sorted = stored
    .map((w) => ({ address: w.address.toLowerCase(), ppm: w.ppm }))
    .sort((a, b) => compareAscii(a.address, b.address));
  return signed.every((w, i) => w.address === sorted[i]!.address && w.ppm === sorted[i]!.ppm);
}
