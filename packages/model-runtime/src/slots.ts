import type { LoraAdapter } from "./adapter.ts";
import { type LlamaConfig, type LoraModule, moduleDims } from "./config.ts";
import { ModelRuntimeError } from "./errors.ts";

/**
 * Device slots: slot 0 is reserved (no adapter); slots 1..count-1 each hold one adapter
 * in graph layout, A as [in, r] and scale*B as [r, out] zero-padded to the rank of the
 * smallest rank bucket that fits. Writing a slot never touches the ONNX session: the
 * runtime feeds the active slots' tensors as inputs each step.
 */
export interface SlotEntry {
  bucket: number;
  /** Bumped on every write so cached active stacks notice replaced adapters. */
  version: number;
  adapterRank: number;
  /** Indexed by layer * targetModules.length + moduleIndex. */
  a: Float32Array[];
  b: Float32Array[];
}

let versionCounter = 0;

export class SlotTable {
  private readonly entries: (SlotEntry | undefined)[];

  constructor(
    readonly config: LlamaConfig,
    readonly targetModules: readonly LoraModule[],
    readonly rankBuckets: readonly number[],
    readonly count: number,
  ) {
    if (count < 1) throw new ModelRuntimeError("SLOT_OUT_OF_RANGE", "slot table needs at least slot 0");
    this.entries = new Array(count).fill(undefined);
  }

  /** Bytes one slot of `bucket` rank occupies (A and B, every layer and target module). */
  slotBytes(bucket: number): number {
    let n = 0;
    for (const m of this.targetModules) {
      const { inDim, outDim } = moduleDims(this.config, m);
      n += bucket * (inDim + outDim);
    }
    return n * this.config.numLayers * 4;
  }

  /** Copies a decoded adapter into `slot`; returns the slot bytes it occupies. */
  write(slot: number, adapter: LoraAdapter): number {
    if (!Number.isInteger(slot) || slot < 1 || slot >= this.count) {
      throw new ModelRuntimeError(
        "SLOT_OUT_OF_RANGE",
        `slot ${slot} is out of range: adapters go in slots 1..${this.count - 1} (slot 0 means no adapter)`,
      );
    }
    for (const m of adapter.targetModules) {
      if (!this.targetModules.includes(m)) {
        throw new ModelRuntimeError(
          "ADAPTER_TARGET_UNSUPPORTED",
          `adapter targets ${m} but this runtime serves LoRA on [${this.targetModules.join(", ")}]`,
          { module: m },
        );
      }
    }
    const bucket = this.rankBuckets.find((r) => r >= adapter.rank);
    if (bucket === undefined) {
      throw new ModelRuntimeError(
        "ADAPTER_RANK_TOO_LARGE",
        `adapter rank ${adapter.rank} exceeds the largest slot rank ${Math.max(...this.rankBuckets)}`,
        { rank: adapter.rank },
      );
    }
    const a: Float32Array[] = [];
    const b: Float32Array[] = [];
    for (let l = 0; l < this.config.numLayers; l++) {
      for (const m of this.targetModules) {
        const { inDim, outDim } = moduleDims(this.config, m);
        const sa = new Float32Array(inDim * bucket);
        const sb = new Float32Array(bucket * outDim);
        const w = adapter.modules.get(`${l}.${m}`);
        if (w) {
          // PEFT A [r, in] -> [in, bucket]; PEFT B [out, r] -> scale * [bucket, out]
          for (let r = 0; r < w.rank; r++) {
            for (let i = 0; i < inDim; i++) sa[i * bucket + r] = w.a[r * inDim + i]!;
            for (let o = 0; o < outDim; o++) sb[r * outDim + o] = w.scale * w.b[o * w.rank + r]!;
          }
        }
        a.push(sa);
        b.push(sb);
      }
    }
    this.entries[slot] = { bucket, version: ++versionCounter, adapterRank: adapter.rank, a, b };
    return this.slotBytes(bucket);
  }

  clear(slot: number): void {
    if (slot >= 1 && slot < this.count) this.entries[slot] = undefined;
  }

  get(slot: number): SlotEntry | undefined {
    return this.entries[slot];
  }

  isLoaded(slot: number): boolean {
    return this.entries[slot] !== undefined;
  }
}
