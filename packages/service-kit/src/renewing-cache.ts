// A read cached for a time, shared while in flight and renewed in the background past half its
// life: the request-path reads that many requests of one key need at once (the gateway's escrow
// balances, the kit's API keys). Written here because what it must keep is not what the cache
// libraries offer: a value is never served past its time, the load gets the previous value (a
// balance read falls back on it when the chain does not answer), and a slower load that began
// earlier never replaces a newer value.

export interface RenewingCacheOptions<V> {
  /** How long a value is served, ms (read on each use); 0 = every `get` loads. */
  ttlMs: () => number;
  /** Loads `key`; `previous` is the cached value whatever its age, `at` when this load began. */
  load: (key: string, previous: V | undefined, at: number) => Promise<V>;
  /** When the value was read (default: when its load began): a value is served until that + ttl. */
  stampOf?: (value: V) => number;
  /** Whether a loaded value is cached (default: all); one that is not also drops the entry. */
  keep?: (value: V) => boolean;
  /** A background renewal failed (the next `get` past the time loads again). */
  onRenewalError?: (err: unknown, key: string) => void;
  /** Entries kept at most (then all are dropped at once; default 100,000). */
  maxEntries?: number;
}

export class RenewingCache<V> {
  readonly #entries = new Map<string, { value: V; at: number }>();
  /** The load in flight per key, and when it began. */
  readonly #loads = new Map<string, { at: number; load: Promise<V> }>();

  constructor(private readonly options: RenewingCacheOptions<V>) {}

  /** The cached entry of `key`, whatever its age. */
  peek(key: string): { value: V; at: number } | undefined {
    return this.#entries.get(key);
  }

  /** Whether `key` has a value younger than the ttl. */
  fresh(key: string): boolean {
    const hit = this.#entries.get(key);
    return hit !== undefined && Date.now() - hit.at < this.options.ttlMs();
  }

  /**
   * The value of `key`: the cached one while younger than the ttl (past half of it, a renewal
   * starts in the background), else the load in flight if it began within the ttl, else a new load
   * that later callers join.
   */
  get(key: string): Promise<V> {
    const hit = this.#entries.get(key);
    if (hit && Date.now() - hit.at < this.options.ttlMs()) {
      this.renew(key);
      return Promise.resolve(hit.value);
    }
    return this.#shared(key);
  }

  /** Starts a background load of `key` unless its value is younger than half the ttl or one is in flight. */
  renew(key: string): void {
    const hit = this.#entries.get(key);
    if ((hit && Date.now() - hit.at < this.options.ttlMs() / 2) || this.#loads.has(key)) return;
    this.#shared(key).catch((err: unknown) => this.options.onRenewalError?.(err, key));
  }

  /** A load of `key` of its own (shares nothing in flight), cached like any other. */
  loadAlone(key: string): Promise<V> {
    return this.#load(key, Date.now());
  }

  #shared(key: string): Promise<V> {
    const inFlight = this.#loads.get(key);
    if (inFlight && Date.now() - inFlight.at < this.options.ttlMs()) return inFlight.load;
    const at = Date.now();
    const load = this.#load(key, at).finally(() => {
      if (this.#loads.get(key)?.load === load) this.#loads.delete(key);
    });
    this.#loads.set(key, { at, load });
    return load;
  }

  async #load(key: string, at: number): Promise<V> {
    const value = await this.options.load(key, this.#entries.get(key)?.value, at);
    if (this.options.keep && !this.options.keep(value)) {
      this.#entries.delete(key);
      return value;
    }
    const stamp = this.options.stampOf?.(value) ?? at;
    const cached = this.#entries.get(key);
    // A slower load that began earlier never replaces a newer value.
    if (!cached || cached.at <= stamp) this.#entries.set(key, { value, at: stamp });
    if (this.#entries.size > (this.options.maxEntries ?? 100_000)) this.#entries.clear();
    return value;
  }
}
