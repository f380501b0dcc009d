import { INFERENCE_BATCH_MAX } from "./catalog.ts";
import type { Producer } from "./producer.ts";

interface Waiter {
  resolve: () => void;
  reject: (err: unknown) => void;
}

/**
 * Coalesces `inference.completed` events into batch jobs. When nothing is being sent, an id goes
 * out at once as a one-inference job (same job id as ever: the inference id); ids submitted while
 * a send is in flight wait and leave together as one `{ inferenceIds }` job. So an idle gateway
 * adds no latency, and a busy one pays one queue job per batch instead of one per inference.
 * `submit` resolves once a job carrying the id is in Redis and rejects when that enqueue failed
 * (the caller's outbox row then stays pending for its sweeper).
 */
export class CompletedBatcher {
  readonly #waiting = new Map<string, Waiter[]>();
  #sending = false;

  constructor(
    private readonly producer: Pick<Producer, "enqueue">,
    private readonly maxBatch = INFERENCE_BATCH_MAX,
  ) {
    if (!Number.isInteger(maxBatch) || maxBatch < 1 || maxBatch > INFERENCE_BATCH_MAX)
      throw new RangeError(`maxBatch must be 1..${INFERENCE_BATCH_MAX}`);
  }

  submit(inferenceId: string): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const list = this.#waiting.get(inferenceId);
      if (list) list.push({ resolve, reject });
      else this.#waiting.set(inferenceId, [{ resolve, reject }]);
      if (!this.#sending) {
        this.#sending = true;
        void this.#drain();
      }
    });
  }

  async #drain(): Promise<void> {
    while (this.#waiting.size > 0) {
      const ids = [...this.#waiting.keys()].slice(0, this.maxBatch);
      const waiters = ids.flatMap((id) => {
        const w = this.#waiting.get(id) ?? [];
        this.#waiting.delete(id);
        return w;
      });
      try {
        const [only] = ids;
        if (ids.length === 1 && only !== undefined)
          await this.producer.enqueue("inference.completed", { inferenceId: only });
        else await this.producer.enqueue("inference.completed", { inferenceIds: ids });
        for (const w of waiters) w.resolve();
      } catch (err) {
        for (const w of waiters) w.reject(err);
      }
    }
    this.#sending = false;
  }
}
