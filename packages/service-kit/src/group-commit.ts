/**
 * Group commit: callers submit one item each and await the batch that carried it. While batches
 * are being written, new submissions accumulate and go together in the next one (items of one key
 * are written once, the latest value; all their callers get that batch's result), so under load
 * each transaction carries many items, about one statement per round trip however many callers
 * write at once, and when idle a single submission is written at once. Up to `parallel` batches
 * are written at the same time. Used for settlement's batches of inferences and the gateway's
 * recordings, stream progress and outbox marks: one commit (one WAL flush) per batch, where one per
 * caller queued the statements on Postgres' WAL writes under load. Written here because no
 * library batches promises by key with the latest value kept.
 */
export interface GroupCommitOptions<K, T, R> {
  /** The key of an item (items of one key waiting together are written once: the latest). */
  keyOf: (item: T) => K;
  /**
   * Writes one batch (in submission order). Returns each key's result (a key with none rejects its
   * callers); with no result type (R = undefined) what it returns is ignored: every caller resolves once
   * the batch committed. A throw rejects them all.
   */
  run: (items: T[]) => Promise<[R] extends [undefined] ? unknown : Map<K, R>>;
  /** Keys per batch at most (default: no limit). */
  maxBatch?: number;
  /** Batches written at the same time at most (default 1). */
  parallel?: number;
  /**
   * Start a batch on the next event-loop turn (every submission of this turn joins it) instead of
   * at once (default false).
   */
  gatherTurn?: boolean;
}

export class GroupCommit<K, T, R = undefined> {
  #waiting = new Map<K, { item: T; callers: { resolve: (r: R) => void; reject: (e: unknown) => void }[] }>();
  #running = 0;
  #scheduled = false;
  readonly #maxBatch: number;
  readonly #parallel: number;

  constructor(private readonly options: GroupCommitOptions<K, T, R>) {
    this.#maxBatch = options.maxBatch ?? Number.POSITIVE_INFINITY;
    this.#parallel = options.parallel ?? 1;
  }

  submit(item: T): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      const key = this.options.keyOf(item);
      const waiting = this.#waiting.get(key);
      if (waiting) {
        waiting.item = item;
        waiting.callers.push({ resolve, reject });
      } else this.#waiting.set(key, { item, callers: [{ resolve, reject }] });
      this.#schedule();
    });
  }

  /** Keys waiting for a batch. */
  get queued(): number {
    return this.#waiting.size;
  }

  /** Nothing waiting and no batch being written. */
  get idle(): boolean {
    return this.#running === 0 && this.#waiting.size === 0;
  }

  #schedule(): void {
    if (this.#scheduled || this.#running >= this.#parallel || this.#waiting.size === 0) return;
    if (!this.options.gatherTurn) {
      this.#running++;
      void this.#drain();
      return;
    }
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      if (this.#running >= this.#parallel || this.#waiting.size === 0) return;
      this.#running++;
      void this.#drain();
    });
  }

  async #drain(): Promise<void> {
    while (this.#waiting.size > 0) {
      const keys = [...this.#waiting.keys()].slice(0, this.#maxBatch);
      const batch = keys.map((k) => {
        const w = this.#waiting.get(k)!;
        this.#waiting.delete(k);
        return w;
      });
      try {
        const out = await this.options.run(batch.map((w) => w.item));
        const results = out instanceof Map ? (out as Map<K, R>) : undefined;
        keys.forEach((k, i) => {
          const r = results?.get(k);
          for (const c of batch[i]!.callers) {
            if (results && r === undefined) c.reject(new Error(`batch returned no result for ${String(k)}`));
            else c.resolve(r as R);
          }
        });
      } catch (err) {
        for (const w of batch) for (const c of w.callers) c.reject(err);
      }
      this.#schedule(); // more waiting: another writer may start alongside this one
    }
    this.#running--;
  }
}
