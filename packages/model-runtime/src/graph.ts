import type { onnx as OnnxTypes } from "onnx-proto";
import onnxProto from "onnx-proto";
import { type LlamaConfig, type LoraModule, moduleDims, moduleWeightName } from "./config.ts";
import { type BaseModel, getWeight } from "./model.ts";
import {
  type ChannelQuantizedMatrix,
  QUANT_BLOCK,
  quantizeBlockwise,
  quantizePerChannel,
  type WeightFormat,
} from "./quantize.ts";

const { onnx } = onnxProto;

export const FLOAT = 1;
const UINT8 = 2;
const INT8 = 3;
const BOOL = 9;
export const INT64 = 7;
const MS_DOMAIN = "com.microsoft";
/** Attributes written as FLOAT even when their value is a whole number. */
const FLOAT_ATTRS = new Set(["epsilon", "alpha", "beta", "scale"]);
/** Initializers at least this large go to the external weights file (when one is given). */
const EXTERNAL_MIN_BYTES = 4096;

/**
 * Where the graph's large initializers are written instead of the protobuf: one file that
 * onnxruntime reads while it creates the session (`session.model_external_initializers_file_folder_path`),
 * so the model bytes stay small and no second copy of the weights is built in JS.
 */
export interface ExternalDataSink {
  /** File name relative to the folder the session is given. */
  location: string;
  /** Appends initializer `name`'s bytes; returns their offset in the file. */
  write(bytes: Uint8Array, name: string): number;
}

/**
 * Multi-LoRA layout inside the graph. For every rank bucket `k` and target module the
 * graph takes the *active* adapters' stacks `lora_a.k.l.m` [U, in, r] and
 * `lora_b.k.l.m` [U, r, out] (U = distinct adapters of that bucket in this step; the
 * runtime builds them from the slots and caches them while the set is unchanged), plus
 * `lora_rows.k` [U, L] (token indices of each adapter's segment, padded to L) and
 * `lora_scatter.k` [N] (where each token's delta sits in the [U*L + 1] result; the last
 * row is zeros for tokens without an adapter in that bucket). Each distinct adapter's
 * weights are read once per step, by one batched MatMul over its segment (BGMV with
 * rows sorted by adapter) — never copied per row. When q, k and v are all targeted, their
 * stacks are one A input [U, 3, in, r] and one B input per run of equal output width
 * ([U, n, r, out]) per layer (`loraStackInputs`).
 */
export interface LoraGraphOptions {
  targetModules: LoraModule[];
  rankBuckets: number[];
  /**
   * "segment" (default): the layout above. "row": the textbook per-row BGMV, kept for
   * comparison — `lora_a.k.l.m` is the full slot stack [S, in, r], `lora_idx.k` [N] each
   * token's slot, and A[idx]/B[idx] are gathered (copied) per token.
   */
  mode?: "segment" | "row";
  /** Deltas inside an `If` on `lora_on` (default true); false = always computed (for comparison). */
  skipWhenUnused?: boolean;
}

export interface GraphOptions {
  lora: LoraGraphOptions | null;
  /** Modules whose base weights are graph inputs `w.l.m` instead of initializers (merged-weights baseline). */
  externalWeights?: LoraModule[];
  /**
   * Base weight format of the linear layers and the LM head (default "f32"): "int8" / "int4"
   * are symmetric blockwise (32 per block) weights run by onnxruntime's MatMulNBits with
   * int8 activations (accuracy level 4); "int8c" is int8 with one scale per output channel run
   * by DynamicQuantizeMatMul (uint8 activations, quantized per call). Embedding, norms and LoRA
   * stay f32.
   */
  weights?: WeightFormat;
  /** Large initializers go to this file instead of the protobuf (see ExternalDataSink). */
  externalData?: ExternalDataSink;
  /**
   * int8c only: called with each linear layer's quantized weights as the graph takes them (fused
   * q+k+v, o, gate+up, down per layer, then the head), so the native decode step serves the very
   * same bytes without quantizing again.
   */
  onQuantized?: (name: string, rows: number, cols: number, q: ChannelQuantizedMatrix) => void;
  /**
   * How attention runs (default "fused"): "fused" = one ONNX `Attention` node (opset 23: grouped
   * KV heads, past + new K/V, our additive mask) per layer; "ops" = the same computation as
   * MatMul / Softmax / Reshape / Transpose / Concat nodes (about 20 per layer; kept for comparison,
   * bench:decode-profile).
   */
  attention?: AttentionImpl;
}

export type AttentionImpl = "fused" | "ops";

export interface BuiltGraph {
  bytes: Uint8Array;
  inputNames: string[];
  outputNames: string[];
}

type Attr = number | number[] | string;

/** Appends ONNX nodes and initializers; shared by the inference graph and `train-graph.ts`. */
export class GraphBuilder {
  readonly nodes: OnnxTypes.INodeProto[] = [];
  readonly initializers: OnnxTypes.ITensorProto[] = [];
  readonly inputs: OnnxTypes.IValueInfoProto[] = [];
  readonly outputs: OnnxTypes.IValueInfoProto[] = [];
  private counter = 0;

  constructor(private readonly external: ExternalDataSink | null = null) {}

  op(opType: string, inputs: string[], attrs: Record<string, Attr> = {}, name?: string): string {
    return this.opN(opType, inputs, 1, attrs, name)[0]!;
  }

  /** A node with `outputs` outputs (names derived from `name`); `domain` for contrib ops. */
  opN(
    opType: string,
    inputs: string[],
    outputs: number,
    attrs: Record<string, Attr> = {},
    name?: string,
    domain = "",
  ): string[] {
    const out = name ?? `${opType.toLowerCase()}_${this.counter++}`;
    const outs = Array.from({ length: outputs }, (_, i) => (i === 0 ? out : `${out}:${i}`));
    return this.opNamed(opType, inputs, outs, attrs, domain);
  }

  /** A node whose outputs carry the given names (e.g. graph outputs). */
  opNamed(
    opType: string,
    inputs: string[],
    outs: string[],
    attrs: Record<string, Attr> = {},
    domain = "",
  ): string[] {
    const attribute: OnnxTypes.IAttributeProto[] = Object.entries(attrs).map(([k, v]) => {
      if (Array.isArray(v)) return { name: k, type: onnx.AttributeProto.AttributeType.INTS, ints: v };
      if (typeof v === "string") {
        return { name: k, type: onnx.AttributeProto.AttributeType.STRING, s: new TextEncoder().encode(v) };
      }
      return Number.isInteger(v) && !FLOAT_ATTRS.has(k)
        ? { name: k, type: onnx.AttributeProto.AttributeType.INT, i: v }
        : { name: k, type: onnx.AttributeProto.AttributeType.FLOAT, f: v };
    });
    this.nodes.push({
      opType,
      input: inputs,
      output: outs,
      name: outs[0]!,
      attribute,
      ...(domain ? { domain } : {}),
    });
    return outs;
  }

  /** A contrib (com.microsoft) node. */
  msOp(opType: string, inputs: string[], attrs: Record<string, Attr> = {}, outputs = 1): string[] {
    return this.opN(opType, inputs, outputs, attrs, undefined, MS_DOMAIN);
  }

  init(name: string, dims: number[], dataType: number, bytes: Uint8Array): string {
    if (this.external && bytes.byteLength >= EXTERNAL_MIN_BYTES) {
      const offset = this.external.write(bytes, name);
      this.initializers.push({
        name,
        dims,
        dataType,
        dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
        externalData: [
          { key: "location", value: this.external.location },
          { key: "offset", value: String(offset) },
          { key: "length", value: String(bytes.byteLength) },
        ],
      });
    } else {
      this.initializers.push({ name, dims, dataType, rawData: bytes });
    }
    return name;
  }

  floatInit(name: string, dims: number[], data: Float32Array): string {
    return this.init(name, dims, FLOAT, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  }

  int64Init(values: number[], dims: number[] = [values.length]): string {
    const name = `const_i64_${this.counter++}`;
    const data = new BigInt64Array(values.map((v) => BigInt(v)));
    this.initializers.push({ name, dims, dataType: INT64, rawData: new Uint8Array(data.buffer) });
    return name;
  }

  floatConst(values: number[], dims: number[] = [values.length]): string {
    return this.floatInit(`const_f32_${this.counter++}`, dims, Float32Array.from(values));
  }

  input(name: string, elemType: number, dims: (number | string)[]): string {
    this.inputs.push(valueInfo(name, elemType, dims));
    return name;
  }

  output(name: string, elemType: number, dims: (number | string)[]): void {
    this.outputs.push(valueInfo(name, elemType, dims));
  }
}

function valueInfo(name: string, elemType: number, dims: (number | string)[]): OnnxTypes.IValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType,
        shape: { dim: dims.map((d) => (typeof d === "number" ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}

/** Graph output: this step's keys and values of every layer, [B, T, layers·2·kvH·D] (see buildLlamaGraph). */
export const NEW_KV = "new_kv";

/** Graph input (bool scalar) of a LoRA graph: false = no row of this step has an adapter (deltas skipped). */
export const LORA_ON = "lora_on";

export const loraInputName = {
  rows: (bucket: number) => `lora_rows.${bucket}`,
  scatter: (bucket: number) => `lora_scatter.${bucket}`,
  idx: (bucket: number) => `lora_idx.${bucket}`,
  a: (bucket: number, layer: number, m: LoraModule) => `lora_a.${bucket}.${layer}.${m}`,
  b: (bucket: number, layer: number, m: LoraModule) => `lora_b.${bucket}.${layer}.${m}`,
};
export const externalWeightName = (layer: number, m: LoraModule) => `w.${layer}.${m}`;

const QKV: LoraModule[] = ["q_proj", "k_proj", "v_proj"];

/**
 * One stacked LoRA input of a layer: its adapters' A ([in, r] per module) or B ([r, out]) for
 * `modules`, after the leading U axis `dims`. q/k/v (same input, one fused matmul) share their
 * stacks in segment mode when all three are targeted: one A input [U, 3, in, r] and one B input
 * per run of equal output width ([U, 1, r, q] and [U, 2, r, kv] with grouped KV heads) — one
 * batched MatMul for A and one per B group instead of six, and 5 inputs per layer instead of 8:
 * each fed input costs a step ~1.5–3 µs in onnxruntime-node whether or not the step reads it
 * (bench/RESULTS.md, "Peers", 2026-12-04 evening).
 */
export interface LoraStackInput {
  name: string;
  layer: number;
  side: "a" | "b";
  modules: LoraModule[];
  dims: number[];
}

/** q, k, v in runs of equal output width ([q], [k, v] with grouped KV heads; [q, k, v] without). */
function qkvOutGroups(c: LlamaConfig): LoraModule[][] {
  const groups: LoraModule[][] = [];
  for (const m of QKV) {
    const last = groups.at(-1);
    if (last && moduleDims(c, last[0]!).outDim === moduleDims(c, m).outDim) last.push(m);
    else groups.push([m]);
  }
  return groups;
}

export function loraStackInputs(
  c: LlamaConfig,
  lora: Pick<LoraGraphOptions, "targetModules" | "mode">,
  bucket: number,
): LoraStackInput[] {
  const packed = lora.mode !== "row" && QKV.every((m) => lora.targetModules.includes(m));
  const out: LoraStackInput[] = [];
  for (let layer = 0; layer < c.numLayers; layer++) {
    if (packed) {
      const inDim = moduleDims(c, "q_proj").inDim;
      out.push({
        name: `lora_a.${bucket}.${layer}.${QKV.join("+")}`,
        layer,
        side: "a",
        modules: QKV,
        dims: [3, inDim, bucket],
      });
      for (const group of qkvOutGroups(c)) {
        out.push({
          name: `lora_b.${bucket}.${layer}.${group.join("+")}`,
          layer,
          side: "b",
          modules: group,
          dims: [group.length, bucket, moduleDims(c, group[0]!).outDim],
        });
      }
    }
    for (const m of lora.targetModules) {
      if (packed && QKV.includes(m)) continue;
      const { inDim, outDim } = moduleDims(c, m);
      out.push({
        name: loraInputName.a(bucket, layer, m),
        layer,
        side: "a",
        modules: [m],
        dims: [inDim, bucket],
      });
      out.push({
        name: loraInputName.b(bucket, layer, m),
        layer,
        side: "b",
        modules: [m],
        dims: [bucket, outDim],
      });
    }
  }
  return out;
}

/**
 * Builds the ONNX (opset 23 + com.microsoft contrib ops) Llama decoder. Inputs: `input_ids`
 * [B,T], `position_ids` [B,T], `attn_bias` [B,T,P+T] (additive mask: 0 or -1e9, built by the
 * runtime so rows of different lengths and padded KV batch together), `past_key.l` and
 * `past_value.l` [B,P,kvH*D] (sequence-major). Outputs: `logits` [B,V] for each row's last
 * position and `new_kv` [B,T,layers·2·kvH*D], each layer's new keys then values (`new_key.l`,
 * `new_value.l` [B,T,kvH*D] inside the graph) side by side: the runtime appends them to its
 * cache, so the cache never leaves onnxruntime as a whole (outputs are copied out by
 * onnxruntime-node; inputs are not).
 *
 * Fewer, fused nodes (a decode step at batch 1 is mostly per-node overhead once the weights
 * are small): activations stay [B,T,hidden] (no reshapes between layers), RMSNorm and
 * residual adds are onnxruntime's (Skip)SimplifiedLayerNormalization, q/k/v and gate/up are one
 * matmul each over row-concatenated weights, RoPE is the contrib RotaryEmbedding (rotate_half
 * layout, as HF Llama) with 1/sqrt(head_dim) folded into the query's cos/sin tables, and
 * attention is one ONNX `Attention` node.
 */
export function buildLlamaGraph(model: BaseModel, options: GraphOptions): BuiltGraph {
  const c = model.config;
  const g = new GraphBuilder(options.externalData ?? null);
  const D = c.headDim;
  const H = c.hiddenSize;
  const G = c.numHeads / c.numKvHeads;
  const external = new Set(options.externalWeights ?? []);
  const format: WeightFormat = options.weights ?? "f32";
  const attention: AttentionImpl = options.attention ?? "fused";

  g.input("input_ids", INT64, ["batch", "seq"]);
  g.input("position_ids", INT64, ["batch", "seq"]);
  g.input("attn_bias", FLOAT, ["batch", "seq", "total"]);
  for (let l = 0; l < c.numLayers; l++) {
    g.input(`past_key.${l}`, FLOAT, ["batch", "past", c.numKvHeads * D]);
    g.input(`past_value.${l}`, FLOAT, ["batch", "past", c.numKvHeads * D]);
  }
  const lora = options.lora;
  if (lora) {
    if (lora.skipWhenUnused !== false) g.input(LORA_ON, BOOL, []);
    for (const k of lora.rankBuckets) {
      if (lora.mode === "row") g.input(loraInputName.idx(k), INT64, ["tokens"]);
      else {
        g.input(loraInputName.rows(k), INT64, [`u${k}`, `l${k}`]);
        g.input(loraInputName.scatter(k), INT64, ["tokens"]);
      }
      for (const input of loraStackInputs(c, lora, k)) g.input(input.name, FLOAT, [`u${k}`, ...input.dims]);
    }
  }
  for (let l = 0; l < c.numLayers; l++) {
    for (const m of external) {
      const { inDim, outDim } = moduleDims(c, m);
      g.input(externalWeightName(l, m), FLOAT, [outDim, inDim]);
    }
  }

  const embed = getWeight(model, "model.embed_tokens.weight");
  const embedName = g.floatInit("model.embed_tokens.weight", [c.vocabSize, H], embed.data);
  const bt = g.op("Shape", ["input_ids"]); // [B, T]
  // Shape tensors, made once in the main graph (an If branch may read them, not define them).
  const memo = (make: (width: number) => string) => {
    const made = new Map<number, string>();
    return (width: number) => {
      let s = made.get(width);
      if (!s) {
        s = make(width);
        made.set(width, s);
      }
      return s;
    };
  };
  const shapeFlat = memo((width) => g.op("Concat", [g.int64Init([-1]), g.int64Init([width])], { axis: 0 }));
  const shapeBT = memo((width) => g.op("Concat", [bt, g.int64Init([width])], { axis: 0 }));
  const shapeHeads = memo((heads) => g.op("Concat", [bt, g.int64Init([heads, D])], { axis: 0 }));
  for (const m of lora?.targetModules ?? []) shapeFlat(moduleDims(c, m).outDim);

  // x: [N, H] token-major, N = B*T
  let x = g.op("Reshape", [g.op("Gather", [embedName, "input_ids"], { axis: 0 }), shapeFlat(H)]);

  // RoPE tables [maxPos, D/2] (rotate_half convention); the query's carry 1/sqrt(D).
  const invFreq = Array.from({ length: D / 2 }, (_, i) => 1 / c.ropeTheta ** ((2 * i) / D));
  const maxPos = c.maxPositionEmbeddings;
  const cosT = new Float32Array(maxPos * (D / 2));
  const sinT = new Float32Array(maxPos * (D / 2));
  for (let p = 0; p < maxPos; p++) {
    for (let i = 0; i < D / 2; i++) {
      const a = p * invFreq[i]!;
      cosT[p * (D / 2) + i] = Math.cos(a);
      sinT[p * (D / 2) + i] = Math.sin(a);
    }
  }
  const qs = 1 / Math.sqrt(D);
  const cosK = g.floatInit("rope_cos", [maxPos, D / 2], cosT);
  const sinK = g.floatInit("rope_sin", [maxPos, D / 2], sinT);
  const cosQ = g.floatInit(
    "rope_cos_q",
    [maxPos, D / 2],
    cosT.map((v) => v * qs),
  );
  const sinQ = g.floatInit(
    "rope_sin_q",
    [maxPos, D / 2],
    sinT.map((v) => v * qs),
  );
  const rope = (t: string, heads: number, q: boolean, outName?: string): string =>
    g.opN(
      "RotaryEmbedding",
      [t, "position_ids", q ? cosQ : cosK, q ? sinQ : sinK],
      1,
      { interleaved: 0, num_heads: heads },
      outName,
      MS_DOMAIN,
    )[0]!;

  const eps = c.rmsNormEps;
  const normWeight = (name: string) => g.floatInit(name, [H], getWeight(model, name).data);
  const rmsNorm = (t: string, weightName: string): string =>
    g.op("SimplifiedLayerNormalization", [t, normWeight(weightName)], { axis: -1, epsilon: eps });
  /** Residual add + RMSNorm in one node: returns [normed, sum]. */
  const addNorm = (t: string, skip: string, weightName: string): [string, string] => {
    const [y, , , sum] = g.msOp(
      "SkipSimplifiedLayerNormalization",
      [t, skip, normWeight(weightName)],
      { epsilon: eps },
      4,
    );
    return [y!, sum!];
  };

  // Shared LoRA plumbing per bucket: a zero row appended so tokens outside the bucket gather 0.
  const zeroRows = new Map<number, string>();
  const zeroRow = (outDim: number): string => {
    let z = zeroRows.get(outDim);
    if (!z) {
      z = g.floatInit(`zero_row_${outDim}`, [1, outDim], new Float32Array(outDim));
      zeroRows.set(outDim, z);
    }
    return z;
  };

  /** x·Wᵀ for weights [out, in] (row-major, HF layout): f32 Gemm, DynamicQuantizeMatMul or MatMulNBits. */
  const linear = (
    t: string,
    name: string,
    rows: number,
    cols: number,
    data: () => Float32Array,
    outName?: string,
  ): string => {
    if (format === "f32")
      return g.op("Gemm", [t, g.floatInit(name, [rows, cols], data())], { transB: 1 }, outName);
    if (format === "int8c") {
      const q = quantizePerChannel(data(), rows, cols);
      options.onQuantized?.(name, rows, cols, q);
      const wq = g.init(`${name}.q8c`, [cols, rows], INT8, new Uint8Array(q.data.buffer));
      const sc = g.floatInit(`${name}.scales`, [rows], q.scales);
      return g.opN("DynamicQuantizeMatMul", [t, wq, sc], 1, {}, outName, MS_DOMAIN)[0]!;
    }
    const bits = format === "int8" ? 8 : 4;
    const q = quantizeBlockwise(data(), rows, cols, bits);
    const blocks = Math.ceil(cols / QUANT_BLOCK);
    const wq = g.init(`${name}.q${bits}`, [rows, blocks, (QUANT_BLOCK * bits) / 8], UINT8, q.data);
    const sc = g.floatInit(`${name}.scales`, [rows * blocks], q.scales);
    const attrs = { K: cols, N: rows, bits, block_size: QUANT_BLOCK, accuracy_level: 4 };
    return g.opN("MatMulNBits", [t, wq, sc], 1, attrs, outName, MS_DOMAIN)[0]!;
  };
  const weightOf = (layer: number, m: LoraModule) => getWeight(model, moduleWeightName(layer, m)).data;
  /** Row-concatenation of modules' weights (one matmul for q/k/v, one for gate/up). */
  const concatRows = (layer: number, mods: LoraModule[]): Float32Array => {
    const parts = mods.map((m) => weightOf(layer, m));
    const out = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
    let o = 0;
    for (const p of parts) {
      out.set(p, o);
      o += p.length;
    }
    return out;
  };

  const segmentRows = new Map<string, string>();
  const loraDelta = (t: string, layer: number, m: LoraModule, y: string): string => {
    if (!lora?.targetModules.includes(m)) return y;
    const { outDim } = moduleDims(c, m);
    for (const k of lora.rankBuckets) {
      if (lora.mode === "row") {
        const ga = g.op("Gather", [loraInputName.a(k, layer, m), loraInputName.idx(k)], { axis: 0 }); // [N,in,r]
        const gb = g.op("Gather", [loraInputName.b(k, layer, m), loraInputName.idx(k)], { axis: 0 }); // [N,r,out]
        const x3 = g.op("Unsqueeze", [t, g.int64Init([1])]); // [N,1,in]
        const yr = g.op("MatMul", [g.op("MatMul", [x3, ga]), gb]); // [N,1,out]
        y = g.op("Add", [y, g.op("Reshape", [yr, shapeFlat(outDim)])]);
        continue;
      }
      // q, k and v read the same normed input: gather its segment rows once for all three.
      const xsKey = `${t}|${k}`;
      let xs = segmentRows.get(xsKey);
      if (!xs) {
        xs = g.op("Gather", [t, loraInputName.rows(k)], { axis: 0 }); // [U, L, in]
        segmentRows.set(xsKey, xs);
      }
      const xa = g.op("MatMul", [xs, loraInputName.a(k, layer, m)]); // [U, L, r]
      const xab = g.op("MatMul", [xa, loraInputName.b(k, layer, m)]); // [U, L, out]
      const flat = g.op("Concat", [g.op("Reshape", [xab, shapeFlat(outDim)]), zeroRow(outDim)], {
        axis: 0,
      });
      y = g.op("Add", [y, g.op("Gather", [flat, loraInputName.scatter(k)], { axis: 0 })]);
    }
    return y;
  };
  /**
   * The LoRA deltas of one projection group (q/k/v, or o), inside an `If` on `lora_on`: a step in
   * which no row has an adapter skips the group's ~7 nodes per module (about a fifth of a batch-1
   * step's nodes; their compute is tiny then, the per-node cost is not) and takes the base
   * outputs as they are. One session, one set of weights: the branch reads the outer graph's
   * values and holds no weights of its own.
   */
  const loraGroup = (t: string, layer: number, mods: LoraModule[], ys: string[]): string[] => {
    const targets = mods.flatMap((m, i) => (lora?.targetModules.includes(m) ? [i] : []));
    if (targets.length === 0) return ys;
    const name = `lora_if.${layer}.${targets.map((i) => mods[i]).join("+")}`;
    const outs = loraIf(
      name,
      targets.map((i) => ys[i]!),
      () => targets.map((i) => loraDelta(t, layer, mods[i]!, ys[i]!)),
    );
    const result = [...ys];
    targets.forEach((j, i) => {
      result[j] = outs[i]!;
    });
    return result;
  };
  /** `ys` with the deltas `withDeltas` builds, inside an `If` on `lora_on` (else: `ys` as they are). */
  const loraIf = (name: string, ys: string[], withDeltas: () => string[]): string[] => {
    if (lora?.skipWhenUnused === false) return withDeltas();
    const start = g.nodes.length;
    const withDelta = withDeltas();
    const thenNodes = g.nodes.splice(start);
    const branch = (name: string, nodes: OnnxTypes.INodeProto[], outs: string[]): OnnxTypes.IGraphProto => ({
      name,
      node: nodes,
      output: outs.map((o) => ({ name: o, type: { tensorType: { elemType: FLOAT } } })),
    });
    // Branch outputs need names of their own (SSA across the whole model).
    const elseNodes = ys.map((y, i) => ({
      opType: "Identity",
      input: [y],
      output: [`${withDelta[i]}.base`],
      name: `${withDelta[i]}.base`,
    }));
    const outs = ys.map((_, i) => `${name}:${i}`);
    g.nodes.push({
      opType: "If",
      input: [LORA_ON],
      output: outs,
      name,
      attribute: [
        {
          name: "then_branch",
          type: onnx.AttributeProto.AttributeType.GRAPH,
          g: branch(`${name}.then`, thenNodes, withDelta),
        },
        {
          name: "else_branch",
          type: onnx.AttributeProto.AttributeType.GRAPH,
          g: branch(
            `${name}.else`,
            elseNodes,
            elseNodes.map((n) => n.output[0]!),
          ),
        },
      ],
    });
    return outs;
  };
  /**
   * q/k/v's deltas from the packed stacks (`loraStackInputs`), added to the fused projection
   * [N, q+k+v]: per bucket one batched MatMul with A ([U,1,L,in]·[U,3,in,r]), one per B group
   * ([U,n,L,r]·[U,n,r,out]), laid out as the fused output's columns, scattered back to the tokens.
   */
  const qkvGroups = qkvOutGroups(c);
  const qkvWidth = QKV.reduce((a, m) => a + moduleDims(c, m).outDim, 0);
  const packedQkvDelta = (t: string, layer: number, fused: string): string => {
    let y = fused;
    for (const k of lora!.rankBuckets) {
      const [a, ...bs] = loraStackInputs(c, lora!, k).filter(
        (i) => i.layer === layer && QKV.includes(i.modules[0]!),
      );
      const xs = g.op("Unsqueeze", [
        g.op("Gather", [t, loraInputName.rows(k)], { axis: 0 }),
        g.int64Init([1]),
      ]); // [U, 1, L, in]
      const xa = g.op("MatMul", [xs, a!.name]); // [U, 3, L, r]
      const parts =
        qkvGroups.length > 1
          ? g.opN("Split", [xa, g.int64Init(qkvGroups.map((gr) => gr.length))], qkvGroups.length, { axis: 1 })
          : [xa];
      // Per group [U, n, L, out] -> [U, L, n * out]: the fused output's column order.
      const cols = parts.map((part, i) => {
        const n = qkvGroups[i]!.length;
        const out = bs[i]!.dims[2]!;
        const xab = g.op("MatMul", [part, bs[i]!.name]);
        return g.op("Reshape", [
          n === 1 ? xab : g.op("Transpose", [xab], { perm: [0, 2, 1, 3] }),
          g.int64Init([-1, n * out]),
        ]);
      });
      const rowsOut = cols.length > 1 ? g.op("Concat", cols, { axis: 1 }) : cols[0]!; // [U*L, q+k+v]
      const flat = g.op("Concat", [rowsOut, zeroRow(qkvWidth)], { axis: 0 });
      y = g.op("Add", [y, g.op("Gather", [flat, loraInputName.scatter(k)], { axis: 0 })]);
    }
    return y;
  };
  const packsQkv = (mods: LoraModule[]) =>
    lora !== null &&
    lora !== undefined &&
    mods.join() === QKV.join() &&
    loraStackInputs(c, lora, lora.rankBuckets[0]!).some((i) => i.modules.length === QKV.length);
  /** Projections of `mods` (same input): fused into one matmul + Split when all are initializers. */
  const projGroup = (t: string, layer: number, mods: LoraModule[]): string[] => {
    const dims = mods.map((m) => moduleDims(c, m));
    const inDim = dims[0]!.inDim;
    let ys: string[];
    if (mods.length > 1 && !mods.some((m) => external.has(m))) {
      const rows = dims.reduce((a, d) => a + d.outDim, 0);
      const fused = linear(t, `model.layers.${layer}.${mods.join("+")}`, rows, inDim, () =>
        concatRows(layer, mods),
      );
      // Packed q/k/v stacks: the deltas go on the fused output, one If output instead of three.
      const [y] = packsQkv(mods)
        ? loraIf(`lora_if.${layer}.${mods.join("+")}`, [fused], () => [packedQkvDelta(t, layer, fused)])
        : [fused];
      ys = g.opN("Split", [y!, g.int64Init(dims.map((d) => d.outDim))], mods.length, { axis: 1 });
      if (packsQkv(mods)) return ys;
    } else {
      ys = mods.map((m, i) =>
        external.has(m)
          ? g.op("Gemm", [t, externalWeightName(layer, m)], { transB: 1 })
          : linear(t, moduleWeightName(layer, m), dims[i]!.outDim, inDim, () => weightOf(layer, m)),
      );
    }
    return loraGroup(t, layer, mods, ys);
  };

  const qWidth = c.numHeads * D;
  const kvWidth = c.numKvHeads * D;
  /**
   * One layer's attention over q/k/v [N, width] (RoPE applied here): the attention output
   * [N, qWidth]. The layer's new keys and values [B, T, kvH*D] (`new_key.l`, `new_value.l`)
   * go out in `new_kv`; the past comes in sequence-major [B, P, kvH*D], so the runtime appends the
   * new columns instead of taking the whole cache out of onnxruntime every step.
   */
  let attend: (l: number, q2: string, k2: string, v2: string) => string;
  /** RoPE'd keys and values of this step, [B, T, kvH*D], named as the graph's outputs. */
  const newKv = (l: number, k2: string, v2: string): [string, string] => [
    rope(g.op("Reshape", [k2, shapeBT(kvWidth)]), c.numKvHeads, false, `new_key.${l}`),
    g.op("Reshape", [v2, shapeBT(kvWidth)], {}, `new_value.${l}`),
  ];
  if (attention === "fused") {
    const mask = g.op("Unsqueeze", ["attn_bias", g.int64Init([1])]); // [B,1,T,P+T]: the same for every head
    attend = (l, q2, k2, v2) => {
      // RoPE on [B, T, heads*D]; Attention takes [B, T, width] queries and [B, P+T, width] K/V.
      const q = rope(g.op("Reshape", [q2, shapeBT(qWidth)]), c.numHeads, true);
      const [k, v] = newKv(l, k2, v2);
      const kAll = g.op("Concat", [`past_key.${l}`, k], { axis: 1 });
      const vAll = g.op("Concat", [`past_value.${l}`, v], { axis: 1 });
      // The query's tables carry 1/sqrt(D): scale 1.
      const y = g.op("Attention", [q, kAll, vAll, mask], {
        q_num_heads: c.numHeads,
        kv_num_heads: c.numKvHeads,
        scale: 1,
      });
      return g.op("Reshape", [y, shapeFlat(qWidth)]);
    };
  } else {
    const bias = g.op("Unsqueeze", ["attn_bias", g.int64Init([1, 2])]); // [B,1,1,T,P+T]
    const batchDim = g.op("Slice", [bt, g.int64Init([0]), g.int64Init([1])]);
    const shapeGqa = g.op("Concat", [batchDim, g.int64Init([c.numKvHeads, -1, D])], { axis: 0 });
    const shapeScores5 = g.op(
      "Concat",
      [
        batchDim,
        g.int64Init([c.numKvHeads, G]),
        g.op("Slice", [bt, g.int64Init([1]), g.int64Init([2])]),
        g.int64Init([-1]),
      ],
      { axis: 0 },
    );
    const shapeHeadsOut = g.op("Concat", [batchDim, g.int64Init([c.numHeads, -1, D])], { axis: 0 });
    const shapeKvHeads = g.op("Concat", [batchDim, g.int64Init([-1, c.numKvHeads, D])], { axis: 0 });
    attend = (l, q2, k2, v2) => {
      // RoPE on [B, T, heads*D], then heads apart.
      const q = g.op("Reshape", [
        rope(g.op("Reshape", [q2, shapeBT(qWidth)]), c.numHeads, true),
        shapeHeads(c.numHeads),
      ]);
      const qr = g.op("Transpose", [q], { perm: [0, 2, 1, 3] }); // [B,nH,T,D]
      // Past + new, [B, P+T, kvH*D] -> [B, kvH, P+T, D]
      const [k, v] = newKv(l, k2, v2);
      const heads = (past: string, fresh: string) =>
        g.op("Transpose", [g.op("Reshape", [g.op("Concat", [past, fresh], { axis: 1 }), shapeKvHeads])], {
          perm: [0, 2, 1, 3],
        });
      const presentK = heads(`past_key.${l}`, k);
      const presentV = heads(`past_value.${l}`, v);
      // Grouped-query attention without repeating K/V: fold the G query heads sharing a KV head into rows.
      const qg = g.op("Reshape", [qr, shapeGqa]); // [B,kvH,G*T,D]
      const kT = g.op("Transpose", [presentK], { perm: [0, 1, 3, 2] }); // fused into the MatMul by onnxruntime
      const scores4 = g.op("MatMul", [qg, kT]); // [B,kvH,G*T,P+T]
      const scores = g.op("Reshape", [scores4, shapeScores5]); // [B,kvH,G,T,P+T]
      const probs = g.op("Softmax", [g.op("Add", [scores, bias])], { axis: -1 });
      const probs4 = g.op("Reshape", [probs, g.op("Shape", [scores4])]);
      const ctx = g.op("MatMul", [probs4, presentV]); // [B,kvH,G*T,D]
      const ctxHeads = g.op("Reshape", [ctx, shapeHeadsOut]); // [B,nH,T,D]
      return g.op("Reshape", [g.op("Transpose", [ctxHeads], { perm: [0, 2, 1, 3] }), shapeFlat(qWidth)]);
    };
  }

  let h = rmsNorm(x, "model.layers.0.input_layernorm.weight");
  for (let l = 0; l < c.numLayers; l++) {
    const p = `model.layers.${l}`;
    const [q2, k2, v2] = projGroup(h, l, ["q_proj", "k_proj", "v_proj"]) as [string, string, string];
    const attn = attend(l, q2, k2, v2);
    const [o] = projGroup(attn, l, ["o_proj"]);
    const [h2, x2] = addNorm(o!, x, `${p}.post_attention_layernorm.weight`);
    x = x2;
    const [gate, up] = projGroup(h2, l, ["gate_proj", "up_proj"]) as [string, string];
    // SiLU(gate) = gate * sigmoid(gate): the contrib QuickGelu with alpha 1, one node instead of two.
    const act = g.op("Mul", [g.msOp("QuickGelu", [gate], { alpha: 1 })[0]!, up]);
    const [down] = projGroup(act, l, ["down_proj"]);
    if (l + 1 < c.numLayers) {
      [h, x] = addNorm(down!, x, `model.layers.${l + 1}.input_layernorm.weight`);
    } else {
      x = g.op("Add", [x, down!]);
    }
  }
  // Every layer's new keys and values as one output (layer 0 keys, layer 0 values, layer 1 keys,
  // ...): onnxruntime-node copies each output into a new JS buffer at ~2.7 µs apiece, so one
  // output instead of 2 per layer saves ~0.16 ms per step at 30 layers; the Concat copies
  // B·T·2·layers·kvH·D floats (46 KB per decode row for SmolLM).
  g.opNamed(
    "Concat",
    Array.from({ length: c.numLayers }, (_, l) => [`new_key.${l}`, `new_value.${l}`]).flat(),
    [NEW_KV],
    { axis: 2 },
  );
  g.output(NEW_KV, FLOAT, ["batch", "seq", 2 * c.numLayers * kvWidth]);

  // Only each row's last position reaches the head (the runtime left-pads new tokens).
  const x3 = g.op("Reshape", [x, shapeBT(H)]);
  const last = g.op("Squeeze", [
    g.op("Slice", [x3, g.int64Init([-1]), g.int64Init([Number.MAX_SAFE_INTEGER]), g.int64Init([1])]),
    g.int64Init([1]),
  ]);
  const normed = rmsNorm(last, "model.norm.weight");
  const headName = c.tieWordEmbeddings ? "model.embed_tokens.weight" : "lm_head.weight";
  if (format === "f32" && c.tieWordEmbeddings) g.op("Gemm", [normed, embedName], { transB: 1 }, "logits");
  else linear(normed, `${headName}.head`, c.vocabSize, H, () => getWeight(model, headName).data, "logits");
  g.output("logits", FLOAT, ["batch", c.vocabSize]);

  const modelProto = onnx.ModelProto.create({
    irVersion: 10,
    producerName: "openledger-model-runtime",
    opsetImport: [
      { domain: "", version: 23 },
      { domain: MS_DOMAIN, version: 1 },
    ],
    graph: {
      name: "llama",
      node: g.nodes,
      initializer: g.initializers,
      input: g.inputs,
      output: g.outputs,
    },
  });
  const bytes = onnx.ModelProto.encode(modelProto).finish();
  return {
    bytes,
    inputNames: g.inputs.map((i) => i.name!),
    outputNames: g.outputs.map((o) => o.name!),
  };
}
