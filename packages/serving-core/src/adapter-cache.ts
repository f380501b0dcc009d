import { BASE_SLOT, DeviceSlotTable } from "./device-slots.ts";
import { ServingError } from "./errors.ts";
import { type AdapterLoader, AdapterRamCache, type RamCacheStats } from "./ram-cache.ts";

/**
 * Copies decoded adapter weights into a device slot (the runtime's stacked A/B slot
 * tensors). Called between steps, never during one. Return a promise if the copy is
 * asynchronous (e.g. to a GPU); the slot is usable only after it resolves, and the
 * adapter's rows are simply not admitted until then, so other rows keep running.
 * Throwing / rejecting (e.g. rank larger than the slot rank) fails the requests waiting
 * for that adapter with `adapter_load_failed`.
 */
export interface SlotWriter<W> {
  writeSlot(slot: number, adapterId: string, weights: W): void | Promise<void>;
}

export interface AdapterCacheOptions<W> {
  loader: AdapterLoader<W>;
  slotWriter: SlotWriter<W>;
  /** Byte budget of decoded adapters held in RAM (includes those sitting in slots). */
  ramBudgetBytes: number;
  /** Device slots including the reserved slot 0 (so `numSlots - 1` adapters fit). */
  numSlots: number;
  maxConcurrentLoads?: number;
  /**
   * Keep an adapter's RAM entry pinned while it sits in a device slot. Needed only when
   * the SlotWriter keeps references to the decoded arrays instead of copying them
   * (then evicting the RAM entry would not free memory). Default false: the model
   * runtime's slot write copies into its own slot tensors, so the RAM tier can evict
   * freely and its byte budget bounds decoded adapters on its own.
   */
  holdRamWhileSlotted?: boolean;
}

export type SlotLookup =
  /** Usable now: admit the sequence on `slot` (then `pinSlot`). */
  | { status: "ready"; slot: number }
  /** Being fetched from disk or copied into a slot: try again at a later step. */
  | { status: "loading" }
  /** In RAM but every slot is pinned (or its slot is draining). */
  | { status: "no_slot" }
  /** Cold and the caller asked not to start a load now. */
  | { status: "cold" };

/**
 * Where an adapter is now: "base" (no adapter), "slot" (in a device slot, ready or being
 * written), "ram" (decoded in RAM, needs a slot write), "loading" (its disk load is queued or
 * running), "cold" (on disk only).
 */
export type AdapterTier = "base" | "slot" | "ram" | "loading" | "cold";

export interface AdapterCacheListener {
  /** Something changed that may make a waiting request admissible (wake the engine). */
  onChange?(): void;
  /** The adapter could not be made resident: fail the requests waiting for it. */
  onAdapterFailed?(adapterId: string, error: ServingError): void;
}

export interface CacheMetrics {
  ram: RamCacheStats;
  slots: {
    /** Admissions whose adapter was already in a slot. */
    hits: number;
    /** Slot writes (an adapter copied in because it was not in a slot). */
    misses: number;
    writeFailures: number;
    evictions: number;
    /** Slots holding an adapter / pinned by running sequences (slot 0 excluded). */
    occupied: number;
    pinned: number;
    capacity: number;
  };
}

/**
 * The three adapter tiers behind one object: disk (AdapterLoader, async) -> RAM
 * (AdapterRamCache, byte-budget LRU) -> device slots (DeviceSlotTable, LRU).
 *
 * A RAM entry is pinned while it is being copied into a slot (and, with
 * `holdRamWhileSlotted`, for as long as it sits in one: then RAM use stays within the
 * budget only if the budget exceeds `(numSlots - 1) * adapterBytes`; pinned bytes may
 * exceed a smaller budget, and `ram.pinnedBytes` shows it).
 */
export class AdapterCache<W> {
  readonly ram: AdapterRamCache<W>;
  readonly slots: DeviceSlotTable;
  readonly #writer: SlotWriter<W>;
  readonly #hold: boolean;
  readonly #listeners: AdapterCacheListener[] = [];
  #slotHits = 0;
  #slotMisses = 0;
  #writeFailures = 0;

  constructor(options: AdapterCacheOptions<W>) {
    this.ram = new AdapterRamCache<W>({
      loader: options.loader,
      budgetBytes: options.ramBudgetBytes,
      ...(options.maxConcurrentLoads === undefined ? {} : { maxConcurrentLoads: options.maxConcurrentLoads }),
    });
    this.slots = new DeviceSlotTable(options.numSlots);
    this.#writer = options.slotWriter;
    this.#hold = options.holdRamWhileSlotted ?? false;
    this.ram.addListener({
      onLoaded: () => this.#changed(),
      onLoadFailed: (id, error) => this.#failed(id, error),
    });
  }

  addListener(listener: AdapterCacheListener): void {
    this.#listeners.push(listener);
  }

  /**
   * Where can a sequence of `adapterId` run now? `null` is the base model (slot 0).
   * With `startLoad` (the default) a cold adapter starts loading from disk on demand; if
   * it is in RAM and a slot can be had, it is written into the slot right away.
   */
  lookup(adapterId: string | null, startLoad = true): SlotLookup {
    if (adapterId === null) return { status: "ready", slot: BASE_SLOT };
    const slot = this.slots.find(adapterId);
    if (slot !== undefined) {
      if (slot.status === "writing") return { status: "loading" };
      if (slot.draining) return { status: "no_slot" };
      this.#slotHits += 1;
      this.slots.touch(slot.slot);
      return { status: "ready", slot: slot.slot };
    }
    if (!this.ram.isReady(adapterId)) {
      if (this.ram.isLoading(adapterId)) {
        if (startLoad) this.ram.request(adapterId, "demand");
        return { status: "loading" };
      }
      if (!startLoad) return { status: "cold" };
      this.ram.request(adapterId, "demand");
      return { status: "loading" };
    }
    const reservation = this.slots.reserve(adapterId);
    if (reservation === undefined) return { status: "no_slot" };
    // Pin the incoming adapter before unpinning the evicted one: the release may run
    // RAM eviction, which must not pick the adapter we are about to copy.
    const weights = this.ram.acquire(adapterId) as W; // ready was checked above
    if (reservation.evicted !== undefined && this.#hold) this.ram.release(reservation.evicted);
    this.#slotMisses += 1;
    let pending: void | Promise<void>;
    try {
      pending = this.#writer.writeSlot(reservation.slot, adapterId, weights);
    } catch (cause) {
      this.#writeFailed(reservation.slot, adapterId, cause);
      return { status: "loading" };
    }
    if (pending === undefined) {
      this.slots.markReady(reservation.slot);
      if (!this.#hold) this.ram.release(adapterId);
      return { status: "ready", slot: reservation.slot };
    }
    pending.then(
      () => {
        this.slots.markReady(reservation.slot);
        if (!this.#hold) this.ram.release(adapterId);
        this.#changed();
      },
      (cause: unknown) => this.#writeFailed(reservation.slot, adapterId, cause),
    );
    return { status: "loading" };
  }

  /** Which tier holds the adapter now (observability: per-request TTFT breakdowns). */
  tier(adapterId: string | null): AdapterTier {
    if (adapterId === null) return "base";
    if (this.slots.find(adapterId) !== undefined) return "slot";
    if (this.ram.isReady(adapterId)) return "ram";
    return this.ram.isLoading(adapterId) ? "loading" : "cold";
  }

  /** Start loading into RAM ahead of need (lower priority than demand loads). */
  prefetch(adapterId: string): void {
    if (this.slots.find(adapterId) !== undefined || this.ram.isReady(adapterId)) return;
    this.ram.request(adapterId, "prefetch");
  }

  /**
   * The adapters worth having back after a restart, most recently used first: those in device
   * slots, then the rest of the RAM tier. The gateway saves it and hands it to `warm` at start.
   */
  hotSet(): string[] {
    return [...new Set([...this.slots.recentAdapters(), ...this.ram.recentAdapters()])];
  }

  /**
   * Load `ids` into RAM in the background, in order, one at a time at the lowest priority (see
   * LoadPriority "warm": live requests' loads go first) and only while the RAM budget has room
   * for another adapter of the size seen so far, so warming does not evict what live requests
   * brought in. Ids that fail to load (no longer servable...) are skipped. Resolves when done.
   */
  async warm(ids: readonly string[], signal?: AbortSignal): Promise<{ loaded: number; failed: number }> {
    let loaded = 0;
    let failed = 0;
    let largest = 0;
    for (const id of ids) {
      if (signal?.aborted) break;
      if (this.slots.find(id) !== undefined || this.ram.isReady(id) || this.ram.isLoading(id)) continue;
      const ram = this.ram.stats();
      // The size to expect: the largest warmed so far, or the mean of what RAM holds.
      if (ram.entries > 0) largest = Math.max(largest, ram.bytesInUse / ram.entries);
      if (ram.bytesInUse + largest > ram.budgetBytes) break;
      try {
        await this.ram.warm(id);
        loaded += 1;
      } catch {
        failed += 1;
      }
      largest = Math.max(largest, this.ram.bytesOf(id));
    }
    return { loaded, failed };
  }

  /** A sequence starts running on `slot`: the slot cannot be evicted until `unpinSlot`. */
  pinSlot(slot: number): void {
    this.slots.pin(slot);
  }

  unpinSlot(slot: number): void {
    this.slots.unpin(slot);
  }

  /** See DeviceSlotTable.startDraining. */
  startDraining(): number | undefined {
    return this.slots.startDraining();
  }

  metrics(): CacheMetrics {
    return {
      ram: this.ram.stats(),
      slots: {
        hits: this.#slotHits,
        misses: this.#slotMisses,
        writeFailures: this.#writeFailures,
        evictions: this.slots.evictions,
        occupied: this.slots.occupied(),
        pinned: this.slots.pinnedCount(),
        capacity: this.slots.size - 1,
      },
    };
  }

  #writeFailed(slot: number, adapterId: string, cause: unknown): void {
    this.#writeFailures += 1;
    this.slots.abort(slot);
    this.ram.release(adapterId);
    const error =
      cause instanceof ServingError
        ? cause
        : new ServingError(
            "adapter_load_failed",
            `copying adapter ${adapterId} into slot ${slot} failed: ${cause instanceof Error ? cause.message : String(cause)}`,
            { adapterId, cause },
          );
    this.#failed(adapterId, error);
  }

  #failed(adapterId: string, error: ServingError): void {
    for (const l of this.#listeners) l.onAdapterFailed?.(adapterId, error);
    this.#changed();
  }

  #changed(): void {
    for (const l of this.#listeners) l.onChange?.();
  }
}
