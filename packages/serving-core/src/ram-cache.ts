import { ServingError } from "./errors.ts";

/** What the disk tier hands back: decoded weights and their exact size in bytes. */
export interface LoadedAdapter<W> {
  weights: W;
  /** Exact bytes the decoded weights occupy; this is what the RAM budget counts. */
  bytes: number;
}

/**
 * The disk tier. The gateway implements it on top of the content-addressed store and
 * the model runtime's PEFT loader (read `adapter_model.safetensors`, validate against
 * the base model, decode to f32). Called at most `maxConcurrentLoads` times at once and
 * never twice concurrently for the same id (single-flight).
 */
export interface AdapterLoader<W> {
  load(adapterId: string): Promise<LoadedAdapter<W>>;
}

/**
 * "demand": a request waits for it; "prefetch": a waiting request will need it soon; "warm":
 * background warm-up (a restart's hot set) — starts only when no demand or prefetch load waits
 * for a permit, and one at a time, so it never holds live requests' loads back by more than one.
 */
export type LoadPriority = "demand" | "prefetch" | "warm";

const RANK: Record<LoadPriority, number> = { demand: 0, prefetch: 1, warm: 2 };

export interface RamCacheListener {
  onLoaded?(adapterId: string): void;
  onLoadFailed?(adapterId: string, error: ServingError): void;
}

export interface RamCacheOptions<W> {
  loader: AdapterLoader<W>;
  budgetBytes: number;
  /** Loads running at once (disk reads + decode). Default 2. */
  maxConcurrentLoads?: number;
}

export interface RamCacheStats {
  /** Acquisitions that found the adapter decoded in RAM. */
  hits: number;
  /** Loads started because the adapter was not in RAM. */
  misses: number;
  /** Loads that completed successfully. */
  loads: number;
  loadFailures: number;
  evictions: number;
  /** Exact bytes of decoded adapters currently held (pinned or not). */
  bytesInUse: number;
  /** Bytes of entries that cannot be evicted right now (pinned). */
  pinnedBytes: number;
  budgetBytes: number;
  /** Decoded entries held. */
  entries: number;
  /** Loads running / waiting for a load permit. */
  loading: number;
  queued: number;
}

type EntryState = "queued" | "loading" | "ready";

interface Entry<W> {
  readonly id: string;
  state: EntryState;
  priority: LoadPriority;
  bytes: number;
  weights: W | undefined;
  pins: number;
  readonly promise: Promise<W>;
  readonly resolve: (w: W) => void;
  readonly reject: (e: ServingError) => void;
}

/**
 * Tier 2: decoded adapters in RAM, least-recently-used eviction against a byte budget.
 *
 * Invariants (property-tested):
 * - `bytesInUse` is the exact sum of the sizes of the ready entries.
 * - After any operation, `bytesInUse <= budgetBytes` unless every byte above the budget
 *   is pinned: eviction removes unpinned ready entries, oldest first, until it fits or
 *   none is left. Entries being loaded hold no bytes yet (their size is unknown until
 *   decoded) and are never evicted; pinned entries are never evicted.
 * - One load per id at a time (single-flight); a failed load leaves no entry behind, so
 *   the next request retries instead of seeing a cached failure.
 * - An adapter larger than the whole budget is refused (`adapter_too_large`) rather than
 *   loaded and immediately evicted in a loop.
 *
 * Evictable entries live in `#lru` (a Map, iteration order = recency, oldest first);
 * pinned and loading entries are kept out of it, so eviction is O(1) per entry.
 */
export class AdapterRamCache<W> {
  readonly #loader: AdapterLoader<W>;
  readonly #budget: number;
  readonly #maxConcurrent: number;
  readonly #entries = new Map<string, Entry<W>>();
  readonly #lru = new Map<string, Entry<W>>();
  readonly #queuedDemand = new Set<string>();
  readonly #queuedPrefetch = new Set<string>();
  readonly #queuedWarm = new Set<string>();
  readonly #listeners: RamCacheListener[] = [];
  #active = 0;
  #activeWarm = 0;
  #bytes = 0;
  #pinnedBytes = 0;
  #hits = 0;
  #misses = 0;
  #loads = 0;
  #loadFailures = 0;
  #evictions = 0;

  constructor(options: RamCacheOptions<W>) {
    if (!(options.budgetBytes > 0)) throw new RangeError("budgetBytes must be > 0");
    const maxConcurrent = options.maxConcurrentLoads ?? 2;
    if (!Number.isInteger(maxConcurrent) || maxConcurrent < 1) {
      throw new RangeError("maxConcurrentLoads must be an integer >= 1");
    }
    this.#loader = options.loader;
    this.#budget = options.budgetBytes;
    this.#maxConcurrent = maxConcurrent;
  }

  addListener(listener: RamCacheListener): void {
    this.#listeners.push(listener);
  }

  get budgetBytes(): number {
    return this.#budget;
  }

  /** True when the adapter is decoded and held in RAM. */
  isReady(adapterId: string): boolean {
    return this.#entries.get(adapterId)?.state === "ready";
  }

  /** True when a load is queued or running. */
  isLoading(adapterId: string): boolean {
    const state = this.#entries.get(adapterId)?.state;
    return state === "queued" || state === "loading";
  }

  /**
   * Make sure the adapter is (or will be) in RAM without waiting. Single-flight: a
   * request for an id already loading or queued joins that load (a demand request
   * upgrades a queued prefetch so it starts before the other prefetches).
   */
  request(adapterId: string, priority: LoadPriority = "demand"): void {
    void this.#ensure(adapterId, priority);
  }

  /** Like `request`, but resolves with the weights (rejects with a ServingError). */
  load(adapterId: string): Promise<W> {
    return this.#ensure(adapterId, "demand");
  }

  /** Background warm-up of one adapter ("warm" priority, see LoadPriority); resolves like `load`. */
  warm(adapterId: string): Promise<W> {
    return this.#ensure(adapterId, "warm");
  }

  /** Decoded size of a ready adapter (0 when not in RAM). */
  bytesOf(adapterId: string): number {
    const e = this.#entries.get(adapterId);
    return e?.state === "ready" ? e.bytes : 0;
  }

  /** Decoded adapters held, most recently used first (pinned ones, then by LRU order). */
  recentAdapters(): string[] {
    const out: string[] = [];
    for (const e of this.#entries.values()) if (e.state === "ready" && e.pins > 0) out.push(e.id);
    for (const e of [...this.#lru.values()].reverse()) out.push(e.id);
    return out;
  }

  /**
   * Pin a ready entry and return its weights (a RAM hit), or undefined when it is not
   * in RAM. Every successful acquire must be paired with one `release`.
   */
  acquire(adapterId: string): W | undefined {
    const entry = this.#entries.get(adapterId);
    if (entry === undefined || entry.state !== "ready") return undefined;
    this.#hits += 1;
    this.#pin(entry);
    return entry.weights;
  }

  release(adapterId: string): void {
    const entry = this.#entries.get(adapterId);
    if (entry === undefined || entry.pins === 0) {
      throw new Error(`AdapterRamCache.release: ${adapterId} is not pinned`);
    }
    entry.pins -= 1;
    if (entry.pins === 0 && entry.state === "ready") {
      this.#pinnedBytes -= entry.bytes;
      this.#lru.set(entry.id, entry);
      this.#evictToBudget();
    }
  }

  /**
   * Drop queued (not yet started) prefetch loads whose adapter is not in `wanted`: the
   * queue moved on and loading them would only evict adapters that are still useful.
   */
  retainPrefetches(wanted: ReadonlySet<string>): void {
    for (const id of [...this.#queuedPrefetch]) {
      if (wanted.has(id)) continue;
      this.#queuedPrefetch.delete(id);
      const entry = this.#entries.get(id);
      if (entry === undefined) continue;
      this.#entries.delete(id);
      entry.reject(new ServingError("adapter_load_failed", `prefetch of ${id} dropped`, { adapterId: id }));
    }
  }

  stats(): RamCacheStats {
    let loading = 0;
    for (const e of this.#entries.values()) if (e.state === "loading") loading += 1;
    return {
      hits: this.#hits,
      misses: this.#misses,
      loads: this.#loads,
      loadFailures: this.#loadFailures,
      evictions: this.#evictions,
      bytesInUse: this.#bytes,
      pinnedBytes: this.#pinnedBytes,
      budgetBytes: this.#budget,
      entries: this.#entries.size - loading - this.#queued(),
      loading,
      queued: this.#queued(),
    };
  }

  #queued(): number {
    return this.#queuedDemand.size + this.#queuedPrefetch.size + this.#queuedWarm.size;
  }

  #ensure(adapterId: string, priority: LoadPriority): Promise<W> {
    const existing = this.#entries.get(adapterId);
    if (existing !== undefined) {
      if (existing.state === "ready" && existing.pins === 0) {
        // Touch: a requested adapter is about to be used, keep it away from eviction.
        this.#lru.delete(adapterId);
        this.#lru.set(adapterId, existing);
      }
      if (existing.state === "queued" && RANK[priority] < RANK[existing.priority]) {
        this.#queueOf(existing.priority).delete(adapterId);
        existing.priority = priority;
        this.#queueOf(priority).add(adapterId);
        this.#pump();
      }
      return existing.promise;
    }
    let resolve!: (w: W) => void;
    let reject!: (e: ServingError) => void;
    const promise = new Promise<W>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    // Nobody is obliged to await a prefetch; never let its failure become unhandled.
    promise.catch(() => {});
    const entry: Entry<W> = {
      id: adapterId,
      state: "queued",
      priority,
      bytes: 0,
      weights: undefined,
      pins: 0,
      promise,
      resolve,
      reject,
    };
    this.#entries.set(adapterId, entry);
    this.#misses += 1;
    this.#queueOf(priority).add(adapterId);
    this.#pump();
    return promise;
  }

  #queueOf(priority: LoadPriority): Set<string> {
    return priority === "demand"
      ? this.#queuedDemand
      : priority === "prefetch"
        ? this.#queuedPrefetch
        : this.#queuedWarm;
  }

  #pump(): void {
    while (this.#active < this.#maxConcurrent) {
      const id =
        first(this.#queuedDemand) ??
        first(this.#queuedPrefetch) ??
        (this.#activeWarm === 0 ? first(this.#queuedWarm) : undefined);
      if (id === undefined) return;
      this.#queuedDemand.delete(id);
      this.#queuedPrefetch.delete(id);
      this.#queuedWarm.delete(id);
      const entry = this.#entries.get(id);
      if (entry === undefined) continue;
      entry.state = "loading";
      this.#active += 1;
      if (entry.priority === "warm") this.#activeWarm += 1;
      void this.#run(entry);
    }
  }

  async #run(entry: Entry<W>): Promise<void> {
    let loaded: LoadedAdapter<W> | undefined;
    let failure: ServingError | undefined;
    try {
      loaded = await this.#loader.load(entry.id);
      if (!Number.isFinite(loaded.bytes) || loaded.bytes < 0) {
        failure = new ServingError("adapter_load_failed", `loader returned invalid size for ${entry.id}`, {
          adapterId: entry.id,
        });
      } else if (loaded.bytes > this.#budget) {
        failure = new ServingError(
          "adapter_too_large",
          `adapter ${entry.id} needs ${loaded.bytes} bytes, more than the RAM budget of ${this.#budget}`,
          { adapterId: entry.id },
        );
      }
    } catch (cause) {
      failure =
        cause instanceof ServingError
          ? cause
          : new ServingError(
              "adapter_load_failed",
              `loading adapter ${entry.id} failed: ${describe(cause)}`,
              {
                adapterId: entry.id,
                cause,
              },
            );
    }
    this.#active -= 1;
    if (entry.priority === "warm") this.#activeWarm -= 1;
    if (failure !== undefined || loaded === undefined) {
      const error = failure ?? new ServingError("adapter_load_failed", "no result", { adapterId: entry.id });
      this.#loadFailures += 1;
      // No negative caching: the entry disappears and the next request retries.
      this.#entries.delete(entry.id);
      entry.reject(error);
      for (const l of this.#listeners) l.onLoadFailed?.(entry.id, error);
    } else {
      this.#loads += 1;
      entry.state = "ready";
      entry.weights = loaded.weights;
      entry.bytes = loaded.bytes;
      this.#bytes += loaded.bytes;
      if (entry.pins > 0) this.#pinnedBytes += loaded.bytes;
      else this.#lru.set(entry.id, entry);
      this.#evictToBudget();
      entry.resolve(loaded.weights);
      for (const l of this.#listeners) l.onLoaded?.(entry.id);
    }
    this.#pump();
  }

  #pin(entry: Entry<W>): void {
    if (entry.pins === 0 && entry.state === "ready") {
      this.#lru.delete(entry.id);
      this.#pinnedBytes += entry.bytes;
    }
    entry.pins += 1;
  }

  #evictToBudget(): void {
    while (this.#bytes > this.#budget) {
      const victim = first(this.#lru.values());
      if (victim === undefined) return; // everything left is pinned or loading
      this.#lru.delete(victim.id);
      this.#entries.delete(victim.id);
      this.#bytes -= victim.bytes;
      this.#evictions += 1;
    }
  }
}

function first<T>(it: Iterable<T>): T | undefined {
  for (const v of it) return v;
  return undefined;
}

function describe(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
