/**
 * Time is injected everywhere so that the logic is deterministic under test: the
 * scheduler, rate limiter and engine read `clock.now()` and never `Date.now()`.
 * Times are milliseconds; rate limiting floors them to whole milliseconds.
 */
export interface Clock {
  now(): number;
}

/** A clock that only moves when told to (tests, simulations, benchmarks of the policy). */
export class ManualClock implements Clock {
  #t: number;
  constructor(start = 0) {
    this.#t = start;
  }
  now(): number {
    return this.#t;
  }
  advance(ms: number): void {
    if (!(ms >= 0)) throw new RangeError(`ManualClock.advance: ms must be >= 0, got ${ms}`);
    this.#t += ms;
  }
  set(t: number): void {
    if (t < this.#t) throw new RangeError("ManualClock.set: time cannot go backwards");
    this.#t = t;
  }
}

/** Monotonic wall clock for production wiring (the gateway passes this in). */
export const monotonicClock: Clock = { now: () => performance.now() };
