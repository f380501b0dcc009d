/**
 * Group commit: callers submit one key each and await the result of the batch that carried
 * it. While batches are being written, new submissions accumulate and go together in the next
 * one, so under load each database transaction carries many inferences, and when idle a single
 * submission is written at once (no timer delay). Up to `parallel` batches are written at the
 * same time (overlapping one batch's reads and CPU work with another's commit).
 */
export class GroupCommit<K, R> {
  readonly #waiting = new Map<K, { resolve: (r: R) => void; reject: (e: unknown) => void }[]>();
  #running = 0;
  #scheduled = false;

  constructor(
    private readonly maxBatch: number,
    private readonly run: (keys: K[]) => Promise<Map<K, R>>,
    private readonly parallel = 2,
  ) {}

  submit(key: K): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      const list = this.#waiting.get(key) ?? [];
      list.push({ resolve, reject });
      this.#waiting.set(key, list);
      this.#schedule();
    });
  }

  get queued(): number {
    return this.#waiting.size;
  }

  #schedule(): void {
    if (this.#scheduled || this.#running >= this.parallel || this.#waiting.size === 0) return;
    this.#scheduled = true;
    // Let the other handlers of this event-loop turn join the batch.
    setImmediate(() => {
      this.#scheduled = false;
      if (this.#running >= this.parallel || this.#waiting.size === 0) return;
      this.#running++;
      void this.#drain();
    });
  }

  async #drain(): Promise<void> {
    while (this.#waiting.size > 0) {
      const keys = [...this.#waiting.keys()].slice(0, this.maxBatch);
      const callers = keys.map((k) => {
        const c = this.#waiting.get(k) ?? [];
        this.#waiting.delete(k);
        return c;
      });
      try {
        const results = await this.run(keys);
        keys.forEach((k, i) => {
          const r = results.get(k);
          for (const c of callers[i] ?? []) {
            if (r === undefined) c.reject(new Error(`batch returned no result for ${String(k)}`));
            else c.resolve(r);
          }
        });
      } catch (err) {
        for (const list of callers) for (const c of list) c.reject(err);
      }
      this.#schedule(); // more waiting: a second writer may start alongside this one
    }
    this.#running--;
  }
}
