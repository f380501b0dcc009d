/** Slot 0 always holds "no adapter" (zeros in the runtime's stacked slot tensors). */
export const BASE_SLOT = 0;

export type SlotStatus = "empty" | "writing" | "ready";

export interface SlotInfo {
  readonly slot: number;
  readonly adapterId: string | null;
  readonly status: SlotStatus;
  /** Running sequences (plus an in-flight write) using the slot; pinned slots are never evicted. */
  readonly pins: number;
  /** No new sequence may be admitted on a draining slot, so it empties and can be reused. */
  readonly draining: boolean;
}

export interface SlotReservation {
  slot: number;
  /** Adapter whose slot was taken (LRU eviction), if any. */
  evicted: string | undefined;
}

interface Slot {
  readonly slot: number;
  adapterId: string | null;
  status: SlotStatus;
  pins: number;
  draining: boolean;
}

/**
 * Tier 3: a fixed number of device slots, least-recently-used replacement.
 *
 * Slot 0 is reserved for the base model and never assigned. A slot is evictable only
 * when it is ready and unpinned; evictable slots live in `#lru` (oldest first), free
 * slots in `#free` (lowest index first, so assignment is deterministic).
 */
export class DeviceSlotTable {
  readonly #slots: Slot[];
  readonly #byAdapter = new Map<string, Slot>();
  readonly #lru = new Map<number, Slot>();
  readonly #free: number[] = [];
  #evictions = 0;

  constructor(numSlots: number) {
    if (!Number.isInteger(numSlots) || numSlots < 2) {
      throw new RangeError("numSlots must be an integer >= 2 (slot 0 is reserved for the base model)");
    }
    this.#slots = [];
    for (let i = 0; i < numSlots; i++) {
      this.#slots.push({
        slot: i,
        adapterId: null,
        status: i === BASE_SLOT ? "ready" : "empty",
        pins: 0,
        draining: false,
      });
    }
    for (let i = numSlots - 1; i >= 1; i--) this.#free.push(i);
  }

  get size(): number {
    return this.#slots.length;
  }

  get evictions(): number {
    return this.#evictions;
  }

  /** The slot holding (or being written with) this adapter. */
  find(adapterId: string): SlotInfo | undefined {
    return this.#byAdapter.get(adapterId);
  }

  info(slot: number): SlotInfo {
    return this.#get(slot);
  }

  all(): readonly SlotInfo[] {
    return this.#slots;
  }

  /** Slots currently holding an adapter (ready or being written). */
  occupied(): number {
    return this.#byAdapter.size;
  }

  pinnedCount(): number {
    let n = 0;
    for (const s of this.#slots) if (s.slot !== BASE_SLOT && s.pins > 0) n += 1;
    return n;
  }

  /**
   * Take a slot for `adapterId`: a free one, else evict the least recently used
   * evictable one. The slot comes back in status "writing" and pinned once (so it
   * cannot be taken while the weights are copied); call `markReady` or `abort`.
   * Returns undefined when every slot is pinned or being written.
   */
  reserve(adapterId: string): SlotReservation | undefined {
    if (this.#byAdapter.has(adapterId)) throw new Error(`adapter ${adapterId} already has a slot`);
    let evicted: string | undefined;
    let index = this.#free.pop();
    if (index === undefined) {
      const victim = this.#lru.values().next().value as Slot | undefined;
      if (victim === undefined) return undefined;
      this.#lru.delete(victim.slot);
      evicted = victim.adapterId ?? undefined;
      if (victim.adapterId !== null) this.#byAdapter.delete(victim.adapterId);
      this.#evictions += 1;
      index = victim.slot;
    }
    const s = this.#get(index);
    s.adapterId = adapterId;
    s.status = "writing";
    s.pins = 1;
    s.draining = false;
    this.#byAdapter.set(adapterId, s);
    return { slot: index, evicted };
  }

  /** The write finished: drop the write pin; the slot is now usable. */
  markReady(slot: number): void {
    const s = this.#get(slot);
    if (s.status !== "writing") throw new Error(`slot ${slot} is not being written`);
    s.status = "ready";
    this.unpin(slot);
  }

  /** The write failed: the slot becomes free again. */
  abort(slot: number): void {
    const s = this.#get(slot);
    if (s.status !== "writing") throw new Error(`slot ${slot} is not being written`);
    if (s.adapterId !== null) this.#byAdapter.delete(s.adapterId);
    s.adapterId = null;
    s.status = "empty";
    s.pins = 0;
    s.draining = false;
    this.#free.push(slot);
    this.#free.sort((a, b) => b - a);
  }

  pin(slot: number): void {
    if (slot === BASE_SLOT) return;
    const s = this.#get(slot);
    if (s.status !== "ready") throw new Error(`slot ${slot} is not ready`);
    if (s.pins === 0) this.#lru.delete(slot);
    s.pins += 1;
  }

  unpin(slot: number): void {
    if (slot === BASE_SLOT) return;
    const s = this.#get(slot);
    if (s.pins === 0) throw new Error(`slot ${slot} is not pinned`);
    s.pins -= 1;
    if (s.pins === 0 && s.status === "ready") {
      // Once drained the slot is an ordinary LRU candidate (most recent: it was just used).
      s.draining = false;
      this.#lru.set(slot, s);
    }
  }

  /** Adapters in ready slots, most recently used first (in use now, then by LRU order). */
  recentAdapters(): string[] {
    const out: string[] = [];
    for (const s of this.#slots) {
      if (s.status === "ready" && s.adapterId !== null && !this.#lru.has(s.slot)) out.push(s.adapterId);
    }
    for (const s of [...this.#lru.values()].reverse()) if (s.adapterId !== null) out.push(s.adapterId);
    return out;
  }

  /** Mark the slot as used now (moves it to the most-recent end of the LRU order). */
  touch(slot: number): void {
    const s = this.#lru.get(slot);
    if (s === undefined) return;
    this.#lru.delete(slot);
    this.#lru.set(slot, s);
  }

  /**
   * When every slot is pinned and a request that fairness puts first needs a slot,
   * stop admitting new sequences onto one pinned slot so it empties within one
   * sequence lifetime (bounded by the max output length). Picks the ready pinned slot
   * with the fewest pins (lowest index on ties). Returns the slot, or undefined if one
   * is already draining or none can be chosen.
   */
  startDraining(): number | undefined {
    let best: Slot | undefined;
    for (const s of this.#slots) {
      if (s.slot === BASE_SLOT) continue;
      if (s.draining) return undefined;
      if (s.status !== "ready" || s.pins === 0) continue;
      if (best === undefined || s.pins < best.pins) best = s;
    }
    if (best === undefined) return undefined;
    best.draining = true;
    return best.slot;
  }

  #get(slot: number): Slot {
    const s = this.#slots[slot];
    if (s === undefined) throw new RangeError(`no slot ${slot}`);
    return s;
  }
}
