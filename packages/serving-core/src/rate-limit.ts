import { ServingError } from "./errors.ts";

/** A token bucket: holds at most `capacity`, refills `refillPerMinute` per minute. */
export interface BucketLimit {
  capacity: number;
  refillPerMinute: number;
}

/** Per-account limits; either bucket may be omitted (unlimited). */
export interface AccountRateLimits {
  /** One unit per request. */
  requests?: BucketLimit;
  /** Prompt tokens + requested max new tokens, refunded for tokens not generated. */
  tokens?: BucketLimit;
}

const MS_PER_MINUTE = 60_000;

/**
 * Integer token bucket. The level is kept in 1/60000 units so that with integer
 * capacities and per-minute rates and whole-millisecond times every operation is exact
 * (a millisecond adds exactly `refillPerMinute` units): the same inputs give the same
 * decisions and the same retry-after on every machine.
 */
export class TokenBucket {
  readonly #capacityUnits: number;
  readonly #rate: number;
  #level: number;
  #at: number;

  constructor(limit: BucketLimit, nowMs: number) {
    if (!Number.isInteger(limit.capacity) || limit.capacity < 1)
      throw new RangeError("capacity must be an integer >= 1");
    if (!Number.isInteger(limit.refillPerMinute) || limit.refillPerMinute < 1) {
      throw new RangeError("refillPerMinute must be an integer >= 1");
    }
    this.#capacityUnits = limit.capacity * MS_PER_MINUTE;
    this.#rate = limit.refillPerMinute;
    this.#level = this.#capacityUnits;
    this.#at = Math.floor(nowMs);
  }

  /** Whole tokens available now. */
  available(nowMs: number): number {
    this.#refill(nowMs);
    return Math.floor(this.#level / MS_PER_MINUTE);
  }

  /** True when the bucket is full (an account with full buckets can be forgotten). */
  isFull(nowMs: number): boolean {
    this.#refill(nowMs);
    return this.#level === this.#capacityUnits;
  }

  /** Milliseconds until `cost` tokens are available (0 if now); Infinity if cost > capacity. */
  waitMs(cost: number, nowMs: number): number {
    this.#refill(nowMs);
    const need = cost * MS_PER_MINUTE;
    if (need > this.#capacityUnits) return Number.POSITIVE_INFINITY;
    if (need <= this.#level) return 0;
    return Math.ceil((need - this.#level) / this.#rate);
  }

  take(cost: number, nowMs: number): void {
    this.#refill(nowMs);
    this.#level -= cost * MS_PER_MINUTE;
  }

  /** Give back tokens that were reserved but not used (never above capacity). */
  refund(tokens: number, nowMs: number): void {
    this.#refill(nowMs);
    this.#level = Math.min(this.#capacityUnits, this.#level + tokens * MS_PER_MINUTE);
  }

  #refill(nowMs: number): void {
    const t = Math.floor(nowMs);
    if (t <= this.#at) return;
    this.#level = Math.min(this.#capacityUnits, this.#level + (t - this.#at) * this.#rate);
    this.#at = t;
  }
}

interface AccountBuckets {
  requests: TokenBucket | undefined;
  tokens: TokenBucket | undefined;
}

/**
 * Per-account request and token buckets. `admit` checks both and takes from both or
 * from neither, throwing a `rate_limited` ServingError with the milliseconds to wait.
 */
export class AccountRateLimiter {
  readonly #limitsFor: (account: string) => AccountRateLimits | undefined;
  readonly #buckets = new Map<string, AccountBuckets>();
  #sinceSweep = 0;

  constructor(limitsFor: (account: string) => AccountRateLimits | undefined) {
    this.#limitsFor = limitsFor;
  }

  admit(account: string, tokens: number, nowMs: number): void {
    const b = this.#bucketsOf(account, nowMs);
    if (b === undefined) return;
    const waitRequests = b.requests?.waitMs(1, nowMs) ?? 0;
    const waitTokens = b.tokens?.waitMs(tokens, nowMs) ?? 0;
    const wait = Math.max(waitRequests, waitTokens);
    if (wait > 0) {
      if (!Number.isFinite(wait)) {
        throw new ServingError(
          "rate_limited",
          `request needs ${tokens} tokens, more than the account's token bucket holds`,
        );
      }
      throw new ServingError(
        "rate_limited",
        `rate limit reached for account; retry after ${Math.ceil(wait / 1000)} s`,
        { retryAfterMs: wait },
      );
    }
    b.requests?.take(1, nowMs);
    b.tokens?.take(tokens, nowMs);
  }

  /** Return reserved tokens that were not generated (request finished early or was cancelled). */
  refund(account: string, tokens: number, nowMs: number): void {
    if (tokens <= 0) return;
    this.#buckets.get(account)?.tokens?.refund(tokens, nowMs);
  }

  /** Accounts tracked (full buckets are forgotten periodically, so this stays bounded). */
  get trackedAccounts(): number {
    return this.#buckets.size;
  }

  #bucketsOf(account: string, nowMs: number): AccountBuckets | undefined {
    let b = this.#buckets.get(account);
    if (b === undefined) {
      const limits = this.#limitsFor(account);
      if (limits === undefined || (limits.requests === undefined && limits.tokens === undefined))
        return undefined;
      b = {
        requests: limits.requests === undefined ? undefined : new TokenBucket(limits.requests, nowMs),
        tokens: limits.tokens === undefined ? undefined : new TokenBucket(limits.tokens, nowMs),
      };
      this.#sinceSweep += 1;
      if (this.#sinceSweep >= 1024) this.#sweep(nowMs);
      this.#buckets.set(account, b);
    }
    return b;
  }

  // A full bucket is indistinguishable from a new one, so it can be dropped.
  #sweep(nowMs: number): void {
    this.#sinceSweep = 0;
    for (const [account, b] of this.#buckets) {
      if ((b.requests?.isFull(nowMs) ?? true) && (b.tokens?.isFull(nowMs) ?? true))
        this.#buckets.delete(account);
    }
  }
}
