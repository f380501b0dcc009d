/**
 * Deterministic elementary functions built only from IEEE-754 +, -, *, / (which JavaScript
 * rounds correctly and never contracts into FMA), so results are bit-identical on every
 * CPU and engine version — unlike Math.exp/Math.log, whose last bit the spec leaves to the
 * implementation. Used wherever a value feeds attribution weights.
 */

const LN2_HI = 0.6931471803691238; // upper bits of ln 2 (fdlibm split: k * LN2_HI is exact)
const LN2_LO = 1.9082149292705877e-10;
const INV_LN2 = Math.LOG2E;

const f64 = new Float64Array(1);
const u32 = new Uint32Array(f64.buffer);
const LITTLE = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
const HI = LITTLE ? 1 : 0;
const LO = LITTLE ? 0 : 1;

/** 2^k for integer k in [-1022, 1023], built from the bit pattern (exact). */
export function pow2(k: number): number {
  u32[HI] = (k + 1023) << 20;
  u32[LO] = 0;
  return f64[0]!;
}

/**
 * Σ_{n=1..13} r^n/n! by Horner (|r| <= ln2/2 + rounding: truncation < 0.347^14/14! ~ 4e-18).
 * detExp adds 1 (bit-identical to folding the 1 into the last Horner step: JavaScript never
 * fuses multiply-add), detExpm1 returns it as is.
 */
function expm1Series(r: number): number {
  let p = 1 / 6227020800;
  p = p * r + 1 / 479001600;
  p = p * r + 1 / 39916800;
  p = p * r + 1 / 3628800;
  p = p * r + 1 / 362880;
  p = p * r + 1 / 40320;
  p = p * r + 1 / 5040;
  p = p * r + 1 / 720;
  p = p * r + 1 / 120;
  p = p * r + 1 / 24;
  p = p * r + 1 / 6;
  p = p * r + 0.5;
  p = p * r + 1;
  return p * r;
}

/** e^x, relative error ~1e-15, deterministic. Saturates to 0 / Infinity outside +-708. */
export function detExp(x: number): number {
  if (Number.isNaN(x)) return Number.NaN;
  if (x > 709) return Number.POSITIVE_INFINITY;
  if (x < -708) return 0;
  // Round half away from zero without Math.round's engine-independent-but-odd semantics.
  const kf = x * INV_LN2;
  const k = kf >= 0 ? Math.floor(kf + 0.5) : -Math.floor(-kf + 0.5);
  const r = x - k * LN2_HI - k * LN2_LO; // |r| <= ~0.347
  const p = 1 + expm1Series(r);
  // Split the scale so 2^k never leaves the normal range.
  if (k > 1000) return p * pow2(k - 1000) * pow2(1000);
  if (k < -1000) return p * pow2(k + 1000) * pow2(-1000);
  return p * pow2(k);
}

/** Natural log for x > 0 (finite, normal), deterministic. */
export function detLog(x: number): number {
  if (!(x > 0)) return x === 0 ? Number.NEGATIVE_INFINITY : Number.NaN;
  if (x === Number.POSITIVE_INFINITY) return x;
  let scaled = x;
  let extra = 0;
  if (scaled < 2.2250738585072014e-308) {
    scaled *= 18014398509481984; // 2^54: lift subnormals
    extra = -54;
  }
  f64[0] = scaled;
  let e = ((u32[HI]! >>> 20) & 0x7ff) - 1023;
  u32[HI] = (u32[HI]! & 0x800fffff) | (1023 << 20);
  let m = f64[0]!; // in [1, 2)
  if (m > Math.SQRT2) {
    m *= 0.5;
    e++;
  }
  e += extra;
  // log m = 2 atanh(s), s = (m-1)/(m+1), |s| <= 0.1716: series to s^25 (< 1e-19).
  const s = (m - 1) / (m + 1);
  const s2 = s * s;
  let p = 1 / 25;
  for (let d = 23; d >= 1; d -= 2) p = p * s2 + 1 / d;
  return e * LN2_HI + (e * LN2_LO + 2 * s * p);
}

/**
 * floor(log2(x) * 2^fracBits) for a positive safe integer x, in pure integer arithmetic
 * (bit-by-bit squaring). fracBits <= 24.
 */
export function log2Fixed(x: number, fracBits = 16): number {
  if (!Number.isSafeInteger(x) || x < 1) throw new RangeError("log2Fixed needs a positive safe integer");
  if (fracBits < 0 || fracBits > 24) throw new RangeError("fracBits must be in [0, 24]");
  let ip = 0;
  let v = x;
  while (v >= 2) {
    v = Math.floor(v / 2);
    ip++;
  }
  // y = x / 2^ip in [1, 2) as a 24-bit fixed-point integer (truncated): y*y < 2^50, exact.
  const ONE = 1 << 24;
  let y = ip <= 24 ? x * (1 << (24 - ip)) : Math.floor(x / pow2(ip - 24));
  let frac = 0;
  for (let b = 0; b < fracBits; b++) {
    y = Math.floor((y * y) / ONE);
    frac *= 2;
    if (y >= 2 * ONE) {
      y = Math.floor(y / 2);
      frac += 1;
    }
  }
  return ip * (1 << fracBits) + frac;
}

/**
 * e^x − 1 without the cancellation of detExp(x) − 1 near 0 (|x| < ln2/2: detExp's Taylor
 * polynomial without its constant term), deterministic.
 */
export function detExpm1(x: number): number {
  if (!(Math.abs(x) < 0.34657359027997264)) return detExp(x) - 1;
  return expm1Series(x);
}

/**
 * log(1 + x) for x > −1, accurate near 0, deterministic: Goldberg's correction
 * log(w)·x/(w − 1) with w = 1 + x cancels the rounding error of forming w.
 */
export function detLog1p(x: number): number {
  const w = 1 + x;
  if (w === 1) return x;
  if (w === Number.POSITIVE_INFINITY) return w;
  return (detLog(w) * x) / (w - 1);
}
