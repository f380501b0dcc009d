/**
 * Test doubles for the *model side* only (disk loader, slot writer). Used by this
 * package's tests; not exported from the package index.
 */
import { AdapterCache } from "./adapter-cache.ts";
import { ManualClock } from "./clock.ts";
import type { AdapterLoader, LoadedAdapter } from "./ram-cache.ts";
import { type CommitResult, Scheduler, type SchedulerOptions, type StepPlan } from "./scheduler.ts";

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

/**
 * A deterministic toy "model" implementing the executor and slot-writer contracts. Its
 * next token depends only on the adapter in the row's slot and the sequence's own
 * history, like a real greedy decoder, and it checks the contract as it goes: slots
 * must hold the row's adapter, positions must match the KV cache it keeps, released
 * sequences must not come back without a fresh prefill.
 */
export class ToyModel {
  readonly slots: (FakeWeights | undefined)[];
  readonly kv = new Map<string, number[]>();
  readonly released: string[] = [];
  readonly batches: { prefill: number; decode: number; tokens: number }[] = [];
  failNextStep = false;

  constructor(
    numSlots: number,
    readonly vocab = 1000,
    readonly onStep?: (tokens: number) => void,
  ) {
    this.slots = new Array<FakeWeights | undefined>(numSlots).fill(undefined);
  }

  writeSlot(slot: number, adapterId: string, weights: FakeWeights): void {
    if (slot === 0) throw new Error("slot 0 is reserved");
    this.slots[slot] = weights;
    if (weights.adapterId !== adapterId) throw new Error("weights of another adapter");
  }

  step(batch: { prefill: readonly ToyRow[]; decode: readonly ToyRow[] }): Map<string, number> {
    if (this.failNextStep) {
      this.failNextStep = false;
      throw new Error("device lost");
    }
    const out = new Map<string, number>();
    let tokens = 0;
    const seen = new Set<string>();
    for (const row of [...batch.prefill, ...batch.decode]) {
      if (seen.has(row.seqId)) throw new Error(`${row.seqId} twice in one batch`);
      seen.add(row.seqId);
      const weights = row.slot === 0 ? undefined : this.slots[row.slot];
      if (row.adapterId === null) {
        if (row.slot !== 0) throw new Error("base-model row on an adapter slot");
      } else if (weights?.adapterId !== row.adapterId) {
        throw new Error(`slot ${row.slot} holds ${weights?.adapterId}, row wants ${row.adapterId}`);
      }
      const cache = this.kv.get(row.seqId) ?? [];
      if (cache.length !== row.position) {
        throw new Error(`${row.seqId}: position ${row.position} but KV holds ${cache.length}`);
      }
      cache.push(...row.tokens);
      this.kv.set(row.seqId, cache);
      tokens += row.tokens.length;
      if (row.sample) out.set(row.seqId, nextToken(weights?.seed ?? 0, cache, this.vocab));
    }
    this.batches.push({ prefill: batch.prefill.length, decode: batch.decode.length, tokens });
    this.onStep?.(tokens);
    return out;
  }

  release(seqIds: readonly string[]): void {
    for (const id of seqIds) {
      this.kv.delete(id);
      this.released.push(id);
    }
  }
}

interface ToyRow {
  seqId: string;
  adapterId: string | null;
  slot: number;
  tokens: readonly number[];
  position: number;
  sample: boolean;
}

function nextToken(seed: number, history: readonly number[], vocab: number): number {
  let h = seed ^ 0x9e3779b9;
  for (let i = Math.max(0, history.length - 6); i < history.length; i++) {
    h = Math.imul(h ^ (history[i] as number), 0x85ebca6b) >>> 0;
    h ^= h >>> 13;
  }
  h = Math.imul(h ^ history.length, 0xc2b2ae35) >>> 0;
  return (h ^ (h >>> 16)) % vocab;
}

export interface StackOptions {
  numSlots?: number;
  ramBudgetBytes?: number;
  loader?: AdapterLoader<FakeWeights>;
  maxConcurrentLoads?: number;
  scheduler?: Partial<SchedulerOptions>;
  /** Virtual milliseconds a step takes: fixed + per token. */
  stepMs?: number;
}

/** Cache + scheduler + toy model on a manual clock, stepped by hand. */
export function makeStack(o: StackOptions = {}) {
  const numSlots = o.numSlots ?? 5;
  const clock = new ManualClock(0);
  const stepMs = o.stepMs ?? 10;
  const model = new ToyModel(numSlots, 1000, (tokens) => clock.advance(stepMs + tokens));
  const loader = o.loader ?? new ImmediateLoader();
  const cache = new AdapterCache<FakeWeights>({
    loader,
    slotWriter: model,
    ramBudgetBytes: o.ramBudgetBytes ?? 10_000,
    numSlots,
    ...(o.maxConcurrentLoads === undefined ? {} : { maxConcurrentLoads: o.maxConcurrentLoads }),
  });
  const scheduler = new Scheduler<unknown, FakeWeights>({
    cache,
    clock,
    maxBatchTokens: 64,
    maxRunningSequences: 8,
    maxPromptTokens: 64,
    maxNewTokens: 32,
    ...o.scheduler,
  });
  /** One step: plan, release, execute, commit. */
  function step(): { plan: StepPlan; res: CommitResult } {
    const plan = scheduler.schedule();
    model.release(plan.release);
    const next = model.step(plan.batch);
    const res = scheduler.commit(plan, next);
    model.release(res.release);
    return { plan, res };
  }
  return { clock, model, loader, cache, scheduler, step };
}

export function prompt(n: number, salt = 0): number[] {
  return Array.from({ length: n }, (_, i) => (i * 31 + salt * 17 + 7) % 1000);
}
