import { ceilDiv } from "./rounding.ts";

export interface PriceInput {
  inputTokens: number | bigint;
  outputTokens: number | bigint;
  /** Wei of OPEN per 1,000 input tokens (the model's registered price). */
  priceInPer1kWei: bigint;
  /** Wei of OPEN per 1,000 output tokens. */
  priceOutPer1kWei: bigint;
}

/**
 * fee = ceil(in * priceIn / 1000) + ceil(out * priceOut / 1000), in wei. Each side is
 * rounded up on its own (the platform never under-charges a side).
 */
export function priceInference(p: PriceInput): bigint {
  const inTokens = BigInt(p.inputTokens);
  const outTokens = BigInt(p.outputTokens);
  if (inTokens < 0n || outTokens < 0n) throw new RangeError("token counts must be >= 0");
  if (p.priceInPer1kWei < 0n || p.priceOutPer1kWei < 0n) throw new RangeError("prices must be >= 0");
  return ceilDiv(inTokens * p.priceInPer1kWei, 1000n) + ceilDiv(outTokens * p.priceOutPer1kWei, 1000n);
}
