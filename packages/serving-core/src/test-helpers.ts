/**
 * Test doubles for the *model side* only (disk loader, slot writer). Used by this
 * package's tests; not exported from the package index.
 */
import type { LoadedAdapter } from "./ram-cache.ts";

/** Let pending promise callbacks (load completions) run. */
export function flush(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

export interface FakeWeights {
  adapterId: string;
  /** What the toy model mixes into its next-token function. */
  seed: number;
}

export function seedOf(adapterId: string): number {
  let h = 2166136261;
  for (let i = 0; i < adapterId.length; i++) {
    h ^= adapterId.charCodeAt(i);
    h = Math.imul(h, 16777619) >>> 0;
  }
  return h;
}

/**
 * A loader whose loads complete only when the test says so, so interleavings are
 * chosen by the test (or by fast-check), not by timers.
 */
export class DeferredLoader {
  readonly calls: string[] = [];
  readonly #pending = new Map<
    string,
    { resolve: (v: LoadedAdapter<FakeWeights>) => void; reject: (e: unknown) => void }
  >();
  concurrent = 0;
  maxConcurrent = 0;
  constructor(readonly sizeOf: (adapterId: string) => number = () => 100) {}

  load(adapterId: string): Promise<LoadedAdapter<FakeWeights>> {
    if (this.#pending.has(adapterId)) throw new Error(`single-flight violated: ${adapterId} loaded twice`);
    this.calls.push(adapterId);
    this.concurrent += 1;
    this.maxConcurrent = Math.max(this.maxConcurrent, this.concurrent);
    return new Promise((resolve, reject) => {
      this.#pending.set(adapterId, { resolve, reject });
    });
  }

  pendingIds(): string[] {
    return [...this.#pending.keys()];
  }

  complete(adapterId: string): void {
    const p = this.#take(adapterId);
    p.resolve({ weights: { adapterId, seed: seedOf(adapterId) }, bytes: this.sizeOf(adapterId) });
  }

  fail(adapterId: string, message = "disk read failed"): void {
    this.#take(adapterId).reject(new Error(message));
  }

  #take(adapterId: string) {
    const p = this.#pending.get(adapterId);
    if (p === undefined) throw new Error(`no pending load for ${adapterId}`);
    this.#pending.delete(adapterId);
    this.concurrent -= 1;
    return p;
  }
}

/** A loader that completes every load on the next macrotask turn (for engine runs). */
export class ImmediateLoader {
  readonly calls: string[] = [];
  failing = new Set<string>();
  constructor(readonly sizeOf: (adapterId: string) => number = () => 100) {}
  async load(adapterId: string): Promise<LoadedAdapter<FakeWeights>> {
    this.calls.push(adapterId);
    await flush();
    if (this.failing.has(adapterId)) throw new Error(`corrupt adapter ${adapterId}`);
    return { weights: { adapterId, seed: seedOf(adapterId) }, bytes: this.sizeOf(adapterId) };
  }
}
