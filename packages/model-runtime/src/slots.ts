import type { LoraAdapter } from "./adapter.ts";
import { type LlamaConfig, type LoraModule, moduleDims } from "./config.ts";
import { ModelRuntimeError } from "./errors.ts";
import { type LoraStackInput, loraStackInputs } from "./graph.ts";

/**
 * Device slots: slot 0 is reserved (no adapter); slots 1..count-1 each hold one adapter
 * in graph layout, A as [in, r] and scale*B as [r, out] zero-padded to the rank of the
 * smallest rank bucket that fits. Writing a slot never touches the ONNX session: the
 * runtime feeds the slots a run uses as inputs each step (`SlotStack`).
 */
export interface SlotEntry {
  bucket: number;
  /** Bumped on every write so cached stacks (row mode) notice replaced adapters. */
  version: number;
  adapterRank: number;
  /** The adapter's entry in its bucket's `SlotStack`. */
  position: number;
  /** Views into the bucket's stack, indexed by layer * targetModules.length + moduleIndex. */
  a: Float32Array[];
  b: Float32Array[];
}

/**
 * One rank bucket's slots as the graph reads them: per stacked LoRA input (`loraStackInputs`), one
 * buffer of `capacity` entries of that input's size, entry p holding the adapter at position p. A
 * slot write copies its adapter into its entry once; a run is fed the range of entries it uses as
 * typed-array views (onnxruntime-node wraps input tensors' memory, it does not copy it), so a step
 * copies no adapter.
 */
export interface SlotStack {
  readonly bucket: number;
  readonly inputs: readonly LoraStackInput[];
  /** Floats of one entry of each input. */
  readonly sizes: readonly number[];
  parts: Float32Array[];
  capacity: number;
  /** The slot at each position (0 = free). */
  holders: number[];
  /** Bumped when `parts` are reallocated (views and tensors over the old ones are stale). */
  generation: number;
}

let versionCounter = 0;

/** What a slot's layout depends on besides the base config. */
export interface SlotLayout {
  targetModules: readonly LoraModule[];
  rankBuckets: readonly number[];
}

/**
 * An adapter already in slot layout for one runtime (its target modules and rank
 * buckets): per layer x target module, A as [in, bucket] and scale*B as [bucket, out],
 * zero-padded, all views into one ArrayBuffer (`buffer`) so a worker thread can hand
 * it over by transfer instead of a copy.
 */
export interface PreparedAdapter {
  readonly kind: "prepared";
  /** The adapter's own largest rank. */
  rank: number;
  /** Slot rank (the smallest rank bucket >= rank). */
  bucket: number;
  targetModules: LoraModule[];
  /** Indexed by layer * targetModules.length + moduleIndex. */
  a: Float32Array[];
  b: Float32Array[];
  /** A SharedArrayBuffer when laid out for a runtime on another thread (`WorkerRuntime`). */
  buffer: ArrayBuffer | SharedArrayBuffer;
  /** Bytes it holds (= the slot bytes of its bucket). */
  byteLength: number;
}

export function isPreparedAdapter(x: LoraAdapter | PreparedAdapter): x is PreparedAdapter {
  return (x as PreparedAdapter).kind === "prepared";
}

/**
 * Converts a decoded PEFT adapter to slot layout: PEFT A [r, in] -> [in, bucket],
 * PEFT B [out, r] -> scale * [bucket, out], modules it does not target stay zero.
 * With `unscaled`, B is laid out without its scale (the slot file on disk: `slot-file.ts`;
 * `scaleSlotAdapter` applies it later with the same f32 rounding, so the result is
 * bit-identical). Throws ADAPTER_TARGET_UNSUPPORTED / ADAPTER_RANK_TOO_LARGE when it cannot fit.
 */
export function prepareSlotAdapter(
  config: LlamaConfig,
  layout: SlotLayout,
  adapter: LoraAdapter,
  options: { shared?: boolean; unscaled?: boolean } = {},
): PreparedAdapter {
  for (const m of adapter.targetModules) {
    if (!layout.targetModules.includes(m)) {
      throw new ModelRuntimeError(
        "ADAPTER_TARGET_UNSUPPORTED",
        `adapter targets ${m} but this runtime serves LoRA on [${layout.targetModules.join(", ")}]`,
        { module: m },
      );
    }
  }
  const bucket = slotBucket(layout, adapter.rank);
  const views = slotViews(
    config,
    layout.targetModules,
    bucket,
    options.shared ? new SharedArrayBuffer(slotByteLength(config, layout.targetModules, bucket)) : undefined,
  );
  const { a, b } = views;
  for (let l = 0; l < config.numLayers; l++) {
    layout.targetModules.forEach((m, mi) => {
      const i = l * layout.targetModules.length + mi;
      const sa = a[i]!;
      const sb = b[i]!;
      const { inDim, outDim } = moduleDims(config, m);
      const w = adapter.modules.get(`${l}.${m}`);
      if (!w) return;
      const r = w.rank;
      const wa = w.a;
      const wb = w.b;
      // Both loops write sequentially; the reads stride over at most `r` rows.
      for (let i = 0; i < inDim; i++) {
        const o = i * bucket;
        for (let k = 0; k < r; k++) sa[o + k] = wa[k * inDim + i]!;
      }
      const scale = options.unscaled ? 1 : w.scale;
      for (let k = 0; k < r; k++) {
        const o = k * outDim;
        for (let j = 0; j < outDim; j++) sb[o + j] = scale * wb[j * r + k]!;
      }
    });
  }
  return {
    kind: "prepared",
    rank: adapter.rank,
    bucket,
    targetModules: [...layout.targetModules],
    a,
    b,
    buffer: views.buffer,
    byteLength: views.buffer.byteLength,
  };
}

/** The smallest of the layout's rank buckets that holds `rank` (ADAPTER_RANK_TOO_LARGE when none does). */
export function slotBucket(layout: SlotLayout, rank: number): number {
  const bucket = [...layout.rankBuckets].sort((x, y) => x - y).find((r) => r >= rank);
  if (bucket === undefined) {
    throw new ModelRuntimeError(
      "ADAPTER_RANK_TOO_LARGE",
      `adapter rank ${rank} exceeds the largest slot rank ${Math.max(...layout.rankBuckets)}`,
      { rank },
    );
  }
  return bucket;
}

/**
 * Multiplies the B block of each `layer.module` in `scales` by its scale, in place: what
 * `prepareSlotAdapter` does while laying B out (f32 result of the f64 product, so the two
 * orders give the same bits). Blocks not in `scales` are left as they are (zero).
 */
export function scaleSlotAdapter(p: PreparedAdapter, scales: ReadonlyMap<string, number>): void {
  const modules = p.targetModules.length;
  for (const [key, scale] of scales) {
    if (scale === 1) continue;
    const dot = key.indexOf(".");
    const mi = p.targetModules.indexOf(key.slice(dot + 1) as LoraModule);
    const b = p.b[Number(key.slice(0, dot)) * modules + mi];
    if (mi < 0 || b === undefined) continue;
    for (let i = 0; i < b.length; i++) b[i] = scale * b[i]!;
  }
}

/**
 * The per layer x module views of a slot-layout buffer (a new zeroed one when `buffer`
 * is undefined): A [in, bucket] then B [bucket, out], in layer-major, module order.
 * Used to lay an adapter out and to view a buffer a worker thread transferred back.
 */
export function slotViews(
  config: LlamaConfig,
  targetModules: readonly LoraModule[],
  bucket: number,
  buffer: ArrayBuffer | SharedArrayBuffer | undefined,
): { a: Float32Array[]; b: Float32Array[]; buffer: ArrayBuffer | SharedArrayBuffer } {
  const dims = targetModules.map((m) => moduleDims(config, m));
  const floats = slotByteLength(config, targetModules, bucket) / 4;
  const buf = buffer ?? new ArrayBuffer(floats * 4);
  if (buf.byteLength !== floats * 4) {
    throw new ModelRuntimeError(
      "ADAPTER_SHAPE_MISMATCH",
      `prepared adapter holds ${buf.byteLength} bytes, expected ${floats * 4} for rank ${bucket}`,
    );
  }
  const a: Float32Array[] = [];
  const b: Float32Array[] = [];
  let at = 0;
  for (let l = 0; l < config.numLayers; l++) {
    for (const { inDim, outDim } of dims) {
      a.push(new Float32Array(buf, at * 4, inDim * bucket));
      at += inDim * bucket;
      b.push(new Float32Array(buf, at * 4, bucket * outDim));
      at += bucket * outDim;
    }
  }
  return { a, b, buffer: buf };
}

/** Bytes of one slot of rank `bucket` (A and B, every layer and target module). */
export function slotByteLength(
  config: LlamaConfig,
  targetModules: readonly LoraModule[],
  bucket: number,
): number {
  let n = 0;
  for (const m of targetModules) {
    const { inDim, outDim } = moduleDims(config, m);
    n += bucket * (inDim + outDim);
  }
  return n * config.numLayers * 4;
}

/**
 * Writes one stacked LoRA input's entry for an adapter in slot layout at `at`: its A ([in, r]) or
 * B ([r, out]) of each of the input's modules, one after another.
 */
function writeStackEntry(
  mods: readonly LoraModule[],
  input: LoraStackInput,
  p: { a: Float32Array[]; b: Float32Array[] },
  dst: Float32Array,
  at: number,
): void {
  for (const m of input.modules) {
    const src = (input.side === "a" ? p.a : p.b)[input.layer * mods.length + mods.indexOf(m)]!;
    dst.set(src, at);
    at += src.length;
  }
}

function checkSlotIndex(count: number, slot: number): void {
  if (!Number.isInteger(slot) || slot < 1 || slot >= count) {
    throw new ModelRuntimeError(
      "SLOT_OUT_OF_RANGE",
      `slot ${slot} is out of range: adapters go in slots 1..${count - 1} (slot 0 means no adapter)`,
    );
  }
}

/**
 * Checks a slot write (slot in 1..count-1, the adapter laid out for `layout`): the same errors
 * for `SlotTable.write` and for `WorkerRuntime`, which validates before posting to its thread.
 */
export function checkSlotWrite(
  config: LlamaConfig,
  layout: SlotLayout,
  count: number,
  slot: number,
  p: PreparedAdapter,
): void {
  checkSlotIndex(count, slot);
  const same =
    p.targetModules.length === layout.targetModules.length &&
    p.targetModules.every((m, i) => m === layout.targetModules[i]) &&
    layout.rankBuckets.includes(p.bucket) &&
    p.a.length === config.numLayers * layout.targetModules.length &&
    p.byteLength === slotByteLength(config, layout.targetModules, p.bucket);
  if (!same) {
    throw new ModelRuntimeError(
      "ADAPTER_SHAPE_MISMATCH",
      `prepared adapter layout (modules [${p.targetModules.join(", ")}], rank ${p.bucket}) does not match this runtime's slots (modules [${layout.targetModules.join(", ")}], ranks [${layout.rankBuckets.join(", ")}])`,
    );
  }
}

/**
 * The runtime's adapter slots, stored as per-bucket `SlotStack`s. Positions are handed out
 * lowest-free first, so the adapters loaded sit packed at the low end of their stack and a run's
 * range (from its lowest to its highest position) reads few entries it does not use.
 */
export class SlotTable {
  private readonly entries: (SlotEntry | undefined)[];
  private readonly stacks = new Map<number, SlotStack>();
  private readonly stackInputs: (bucket: number) => LoraStackInput[];

  constructor(
    readonly config: LlamaConfig,
    readonly targetModules: readonly LoraModule[],
    readonly rankBuckets: readonly number[],
    readonly count: number,
    /** The graph's stacked inputs of a bucket (default: segment mode's `loraStackInputs`). */
    stackInputs?: (bucket: number) => LoraStackInput[],
  ) {
    if (count < 1) throw new ModelRuntimeError("SLOT_OUT_OF_RANGE", "slot table needs at least slot 0");
    this.entries = new Array(count).fill(undefined);
    this.stackInputs =
      stackInputs ??
      ((bucket) => loraStackInputs(config, { targetModules: [...targetModules], mode: "segment" }, bucket));
  }

  /** Bytes one slot of `bucket` rank occupies (A and B, every layer and target module). */
  slotBytes(bucket: number): number {
    return slotByteLength(this.config, this.targetModules, bucket);
  }

  /** The layout slots of this table hold: what `prepareSlotAdapter` needs to match it. */
  get layout(): SlotLayout {
    return { targetModules: this.targetModules, rankBuckets: this.rankBuckets };
  }

  /**
   * Puts an adapter into `slot` (replacing the one there); returns the slot bytes it occupies.
   * Its bytes are copied once into its entry of the bucket's stack (the lowest free position);
   * the adapter passed in is not kept. A `LoraAdapter` is converted first.
   */
  write(slot: number, adapter: LoraAdapter | PreparedAdapter): number {
    checkSlotIndex(this.count, slot);
    const p = isPreparedAdapter(adapter) ? adapter : prepareSlotAdapter(this.config, this.layout, adapter);
    checkSlotWrite(this.config, this.layout, this.count, slot, p);
    this.clear(slot);
    const st = this.stack(p.bucket);
    let position = st.holders.indexOf(0);
    if (position < 0) {
      position = st.capacity;
      this.grow(st, Math.min(Math.max(this.count - 1, 1), 2 * st.capacity));
    }
    st.inputs.forEach((input, i) => {
      writeStackEntry(this.targetModules, input, p, st.parts[i]!, position * st.sizes[i]!);
    });
    st.holders[position] = slot;
    this.entries[slot] = {
      bucket: p.bucket,
      version: ++versionCounter,
      adapterRank: p.rank,
      position,
      ...this.entryViews(st, position),
    };
    return this.slotBytes(p.bucket);
  }

  clear(slot: number): void {
    const e = slot >= 1 && slot < this.count ? this.entries[slot] : undefined;
    if (!e) return;
    this.stacks.get(e.bucket)!.holders[e.position] = 0;
    this.entries[slot] = undefined;
  }

  get(slot: number): SlotEntry | undefined {
    return this.entries[slot];
  }

  isLoaded(slot: number): boolean {
    return this.entries[slot] !== undefined;
  }

  /** The bucket's stack (made on first use: a bucket no adapter has used yet still feeds one zero entry). */
  stack(bucket: number): SlotStack {
    let st = this.stacks.get(bucket);
    if (!st) {
      const inputs = this.stackInputs(bucket);
      st = {
        bucket,
        inputs,
        sizes: inputs.map((i) => i.dims.reduce((a, d) => a * d, 1)),
        parts: inputs.map(() => new Float32Array(0)),
        capacity: 0,
        holders: [],
        generation: 0,
      };
      this.stacks.set(bucket, st);
      this.grow(st, Math.min(Math.max(this.count - 1, 1), 4));
    }
    return st;
  }

  /** Bytes the slot stacks hold (allocated capacity, every bucket). */
  get stackBytes(): number {
    let n = 0;
    for (const st of this.stacks.values()) for (const part of st.parts) n += part.byteLength;
    return n;
  }

  /**
   * Reallocates a stack with room for `capacity` entries (a slot write into a full one): the entries
   * are copied over once and the slots' views rebuilt.
   */
  private grow(st: SlotStack, capacity: number): void {
    st.parts = st.parts.map((old, i) => {
      const grown = new Float32Array(capacity * st.sizes[i]!);
      grown.set(old);
      return grown;
    });
    while (st.holders.length < capacity) st.holders.push(0);
    st.capacity = capacity;
    st.generation += 1;
    st.holders.forEach((slot, position) => {
      const e = slot === 0 ? undefined : this.entries[slot];
      if (e) Object.assign(e, this.entryViews(st, position));
    });
  }

  /** A slot's per layer x module views into its entry (what the native decode step reads). */
  private entryViews(st: SlotStack, position: number): { a: Float32Array[]; b: Float32Array[] } {
    const mods = this.targetModules;
    const a: Float32Array[] = new Array(this.config.numLayers * mods.length);
    const b: Float32Array[] = new Array(this.config.numLayers * mods.length);
    st.inputs.forEach((input, i) => {
      const part = st.parts[i]!;
      let at = position * st.sizes[i]!;
      for (const m of input.modules) {
        const { inDim, outDim } = moduleDims(this.config, m);
        const n = st.bucket * (input.side === "a" ? inDim : outDim);
        const view = part.subarray(at, at + n);
        (input.side === "a" ? a : b)[input.layer * mods.length + mods.indexOf(m)] = view;
        at += n;
      }
    });
    return { a, b };
  }
}
