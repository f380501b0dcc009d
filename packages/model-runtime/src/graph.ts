import type { onnx as OnnxTypes } from "onnx-proto";
import onnxProto from "onnx-proto";
import { type LoraModule, moduleDims, moduleWeightName } from "./config.ts";
import { type BaseModel, getWeight } from "./model.ts";

const { onnx } = onnxProto;

export const FLOAT = 1;
export const INT64 = 7;

/**
 * Multi-LoRA layout inside the graph. For every rank bucket `k` and target module the
 * graph takes the *active* adapters' stacks `lora_a.k.l.m` [U, in, r] and
 * `lora_b.k.l.m` [U, r, out] (U = distinct adapters of that bucket in this step; the
 * runtime builds them from the slots and caches them while the set is unchanged), plus
 * `lora_rows.k` [U, L] (token indices of each adapter's segment, padded to L) and
 * `lora_scatter.k` [N] (where each token's delta sits in the [U*L + 1] result; the last
 * row is zeros for tokens without an adapter in that bucket). Each distinct adapter's
 * weights are read once per step, by one batched MatMul over its segment (BGMV with
 * rows sorted by adapter) — never copied per row.
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
}

export interface GraphOptions {
  lora: LoraGraphOptions | null;
  /** Modules whose base weights are graph inputs `w.l.m` instead of initializers (merged-weights baseline). */
  externalWeights?: LoraModule[];
}

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

  op(opType: string, inputs: string[], attrs: Record<string, Attr> = {}, name?: string): string {
    const out = name ?? `${opType.toLowerCase()}_${this.counter++}`;
    const attribute: OnnxTypes.IAttributeProto[] = Object.entries(attrs).map(([k, v]) => {
      if (Array.isArray(v)) return { name: k, type: onnx.AttributeProto.AttributeType.INTS, ints: v };
      if (typeof v === "string") {
        return { name: k, type: onnx.AttributeProto.AttributeType.STRING, s: new TextEncoder().encode(v) };
      }
      return Number.isInteger(v) && !(k === "epsilon" || k === "alpha" || k === "beta")
        ? { name: k, type: onnx.AttributeProto.AttributeType.INT, i: v }
        : { name: k, type: onnx.AttributeProto.AttributeType.FLOAT, f: v };
    });
    this.nodes.push({ opType, input: inputs, output: [out], name: out, attribute });
    return out;
  }

  floatInit(name: string, dims: number[], data: Float32Array): string {
    this.initializers.push({
      name,
      dims,
      dataType: FLOAT,
      rawData: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
    });
    return name;
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

export const loraInputName = {
  rows: (bucket: number) => `lora_rows.${bucket}`,
  scatter: (bucket: number) => `lora_scatter.${bucket}`,
  idx: (bucket: number) => `lora_idx.${bucket}`,
  a: (bucket: number, layer: number, m: LoraModule) => `lora_a.${bucket}.${layer}.${m}`,
  b: (bucket: number, layer: number, m: LoraModule) => `lora_b.${bucket}.${layer}.${m}`,
};
export const externalWeightName = (layer: number, m: LoraModule) => `w.${layer}.${m}`;

/**
 * Builds the ONNX (opset 17) Llama decoder. Inputs: `input_ids` [B,T], `position_ids`
 * [B,T], `attn_bias` [B,T,P+T] (additive mask: 0 or -1e9, built by the runtime so rows
 * of different lengths and padded KV batch together), `past_key.l` [B,kvH,D,P]
 * (keys stored transposed so Q·Kᵀ needs no per-step transpose) and `past_value.l`
 * [B,kvH,P,D]. Outputs: `logits` [B,V] for each row's last position and the presents.
 */
export function buildLlamaGraph(model: BaseModel, options: GraphOptions): BuiltGraph {
  const c = model.config;
  const g = new GraphBuilder();
  const D = c.headDim;
  const H = c.hiddenSize;
  const G = c.numHeads / c.numKvHeads;
  const external = new Set(options.externalWeights ?? []);

  g.input("input_ids", INT64, ["batch", "seq"]);
  g.input("position_ids", INT64, ["batch", "seq"]);
  g.input("attn_bias", FLOAT, ["batch", "seq", "total"]);
  for (let l = 0; l < c.numLayers; l++) {
    g.input(`past_key.${l}`, FLOAT, ["batch", c.numKvHeads, D, "past"]);
    g.input(`past_value.${l}`, FLOAT, ["batch", c.numKvHeads, "past", D]);
  }
  const lora = options.lora;
  if (lora) {
    for (const k of lora.rankBuckets) {
      if (lora.mode === "row") g.input(loraInputName.idx(k), INT64, ["tokens"]);
      else {
        g.input(loraInputName.rows(k), INT64, [`u${k}`, `l${k}`]);
        g.input(loraInputName.scatter(k), INT64, ["tokens"]);
      }
      for (let l = 0; l < c.numLayers; l++) {
        for (const m of lora.targetModules) {
          const { inDim, outDim } = moduleDims(c, m);
          g.input(loraInputName.a(k, l, m), FLOAT, [`u${k}`, inDim, k]);
          g.input(loraInputName.b(k, l, m), FLOAT, [`u${k}`, k, outDim]);
        }
      }
    }
  }
  for (let l = 0; l < c.numLayers; l++) {
    for (const m of external) {
      const { inDim, outDim } = moduleDims(c, m);
      g.input(externalWeightName(l, m), FLOAT, [outDim, inDim]);
    }
  }

  const embedName = g.floatInit(
    "model.embed_tokens.weight",
    [c.vocabSize, H],
    getWeight(model, "model.embed_tokens.weight").data,
  );
  const bt = g.op("Shape", ["input_ids"]); // [B, T]
  const shapeFlat = (width: number) => g.op("Concat", [g.int64Init([-1]), g.int64Init([width])], { axis: 0 });
  const shapeHeads = (heads: number) => g.op("Concat", [bt, g.int64Init([heads, D])], { axis: 0 });

  // x: [N, H] token-major, N = B*T
  let x = g.op("Reshape", [g.op("Gather", [embedName, "input_ids"], { axis: 0 }), shapeFlat(H)]);

  // RoPE tables, shared by every layer: cos/sin [B, T, 1, D] (rotate_half convention, as in HF Llama)
  const invFreq = Array.from({ length: D / 2 }, (_, i) => 1 / c.ropeTheta ** ((2 * i) / D));
  const pos = g.op("Unsqueeze", [g.op("Cast", ["position_ids"], { to: FLOAT }), g.int64Init([2])]);
  const freqs = g.op("Mul", [pos, g.floatConst(invFreq)]);
  const emb = g.op("Unsqueeze", [g.op("Concat", [freqs, freqs], { axis: -1 }), g.int64Init([2])]);
  const cos = g.op("Cos", [emb]);
  const sin = g.op("Sin", [emb]);
  const halfStarts = g.int64Init([0]);
  const halfMid = g.int64Init([D / 2]);
  const halfEnd = g.int64Init([D]);
  const axis3 = g.int64Init([3]);
  const rope = (t: string): string => {
    const x1 = g.op("Slice", [t, halfStarts, halfMid, axis3]);
    const x2 = g.op("Slice", [t, halfMid, halfEnd, axis3]);
    const rot = g.op("Concat", [g.op("Neg", [x2]), x1], { axis: 3 });
    return g.op("Add", [g.op("Mul", [t, cos]), g.op("Mul", [rot, sin])]);
  };

  const eps = g.floatConst([c.rmsNormEps], []);
  const rmsNorm = (t: string, weightName: string): string => {
    const w = g.floatInit(weightName, [H], getWeight(model, weightName).data);
    const ms = g.op("ReduceMean", [g.op("Mul", [t, t])], { axes: [-1], keepdims: 1 });
    const inv = g.op("Reciprocal", [g.op("Sqrt", [g.op("Add", [ms, eps])])]);
    return g.op("Mul", [g.op("Mul", [t, inv]), w]);
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

  const segmentRows = new Map<string, string>();
  const proj = (t: string, layer: number, m: LoraModule): string => {
    const name = moduleWeightName(layer, m);
    const { outDim } = moduleDims(c, m);
    const w = external.has(m)
      ? externalWeightName(layer, m)
      : g.floatInit(name, getWeight(model, name).shape, getWeight(model, name).data);
    let y = g.op("Gemm", [t, w], { transB: 1 });
    if (lora?.targetModules.includes(m)) {
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
    }
    return y;
  };

  const bias = g.op("Unsqueeze", ["attn_bias", g.int64Init([1, 2])]); // [B,1,1,T,P+T]
  const qScale = g.floatConst([1 / Math.sqrt(D)], []);
  const shapeGqa = g.op(
    "Concat",
    [g.op("Slice", [bt, g.int64Init([0]), g.int64Init([1])]), g.int64Init([c.numKvHeads, -1, D])],
    {
      axis: 0,
    },
  );
  const shapeScores5 = g.op(
    "Concat",
    [
      g.op("Slice", [bt, g.int64Init([0]), g.int64Init([1])]),
      g.int64Init([c.numKvHeads, G]),
      g.op("Slice", [bt, g.int64Init([1]), g.int64Init([2])]),
      g.int64Init([-1]),
    ],
    { axis: 0 },
  );
  const shapeHeadsOut = g.op(
    "Concat",
    [g.op("Slice", [bt, g.int64Init([0]), g.int64Init([1])]), g.int64Init([c.numHeads, -1, D])],
    {
      axis: 0,
    },
  );

  for (let l = 0; l < c.numLayers; l++) {
    const p = `model.layers.${l}`;
    const h = rmsNorm(x, `${p}.input_layernorm.weight`);
    const q = g.op("Reshape", [proj(h, l, "q_proj"), shapeHeads(c.numHeads)]); // [B,T,nH,D]
    const k = g.op("Reshape", [proj(h, l, "k_proj"), shapeHeads(c.numKvHeads)]);
    const v = g.op("Reshape", [proj(h, l, "v_proj"), shapeHeads(c.numKvHeads)]);
    const qr = g.op("Transpose", [g.op("Mul", [rope(q), qScale])], { perm: [0, 2, 1, 3] }); // [B,nH,T,D]
    const kr = g.op("Transpose", [rope(k)], { perm: [0, 2, 3, 1] }); // [B,kvH,D,T]
    const vt = g.op("Transpose", [v], { perm: [0, 2, 1, 3] }); // [B,kvH,T,D]
    const presentK = g.op("Concat", [`past_key.${l}`, kr], { axis: 3 }, `present_key.${l}`);
    const presentV = g.op("Concat", [`past_value.${l}`, vt], { axis: 2 }, `present_value.${l}`);
    // Grouped-query attention without repeating K/V: fold the G query heads sharing a KV head into rows.
    const qg = g.op("Reshape", [qr, shapeGqa]); // [B,kvH,G*T,D]
    const scores4 = g.op("MatMul", [qg, presentK]); // [B,kvH,G*T,P+T]
    const scores = g.op("Reshape", [scores4, shapeScores5]); // [B,kvH,G,T,P+T]
    const probs = g.op("Softmax", [g.op("Add", [scores, bias])], { axis: -1 });
    const probs4 = g.op("Reshape", [probs, g.op("Shape", [scores4])]);
    const ctx = g.op("MatMul", [probs4, presentV]); // [B,kvH,G*T,D]
    const ctxHeads = g.op("Reshape", [ctx, shapeHeadsOut]); // [B,nH,T,D]
    const attn = g.op("Reshape", [
      g.op("Transpose", [ctxHeads], { perm: [0, 2, 1, 3] }),
      shapeFlat(c.numHeads * D),
    ]);
    x = g.op("Add", [x, proj(attn, l, "o_proj")]);
    const h2 = rmsNorm(x, `${p}.post_attention_layernorm.weight`);
    const gate = proj(h2, l, "gate_proj");
    const act = g.op("Mul", [g.op("Mul", [gate, g.op("Sigmoid", [gate])]), proj(h2, l, "up_proj")]);
    x = g.op("Add", [x, proj(act, l, "down_proj")]);
    g.output(`present_key.${l}`, FLOAT, ["batch", c.numKvHeads, D, "total"]);
    g.output(`present_value.${l}`, FLOAT, ["batch", c.numKvHeads, "total", D]);
  }

  // Only each row's last position reaches the head (the runtime left-pads new tokens).
  const x3 = g.op("Reshape", [x, g.op("Concat", [bt, g.int64Init([H])], { axis: 0 })]);
  const last = g.op("Squeeze", [
    g.op("Slice", [x3, g.int64Init([-1]), g.int64Init([Number.MAX_SAFE_INTEGER]), g.int64Init([1])]),
    g.int64Init([1]),
  ]);
  const normed = rmsNorm(last, "model.norm.weight");
  const head = c.tieWordEmbeddings
    ? embedName
    : g.floatInit("lm_head.weight", [c.vocabSize, H], getWeight(model, "lm_head.weight").data);
  g.op("Gemm", [normed, head], { transB: 1 }, "logits");
  g.output("logits", FLOAT, ["batch", c.vocabSize]);

  const modelProto = onnx.ModelProto.create({
    irVersion: 8,
    producerName: "openledger-model-runtime",
    opsetImport: [{ domain: "", version: 17 }],
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
