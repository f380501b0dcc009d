import onnxProto from "onnx-proto";
import { type LlamaConfig, type LoraModule, moduleDims, moduleWeightName } from "./config.ts";
import { FLOAT, GraphBuilder, INT64 } from "./graph.ts";
import { type BaseModel, expectedWeightShapes, getWeight } from "./model.ts";

const { onnx } = onnxProto;

/**
 * Training graphs for the Llama architecture: one ONNX graph computes the forward pass,
 * the loss and — written out by hand, op by op — the backward pass, so onnxruntime-node
 * (which has no training API in its npm build) runs a whole training step on the CPU.
 * Why hand-derived: no maintained npm library trains a transformer on the CPU offline
 * (tfjs-node downloads its native backend at install and is unmaintained; onnxruntime-web
 * dropped its training build in 1.20), and ONNX has no autodiff of its own. Each block's
 * gradient below is the textbook one (RMSNorm, RoPE, GQA softmax attention, SwiGLU, the
 * tied/untied LM head with cross-entropy, the embedding) and is checked against finite
 * differences in `train-graph.test.ts`.
 *
 * Shapes are static (batch B, sequence T fixed when the graph is built): a trainer runs
 * one shape, pads a short batch with zero-weight rows, and onnxruntime plans memory once.
 */
export type TrainMode = "lora" | "full";

export interface LoraTrainSpec {
  rank: number;
  alpha: number;
  targetModules: LoraModule[];
}

export interface TrainGraphOptions {
  mode: TrainMode;
  batch: number;
  seq: number;
  /** Required in "lora" mode: rank, alpha and the adapted projections (base frozen). */
  lora?: LoraTrainSpec;
  /** false: forward and loss only (evaluation). Default true. */
  gradients?: boolean;
  /**
   * Also output each example's own LoRA gradients (`grad_ex.<param>`, [B, ...shape]), for
   * gradient-based influence (issue #19): the batch's gradient is their sum, computed by
   * the same batched MatMuls, so they cost one more MatMul per LoRA factor, not B passes.
   */
  perExampleGrads?: boolean;
}

/** A trainable tensor of the graph: name (HF / PEFT style), shape. */
export interface TrainParam {
  name: string;
  shape: number[];
}

export interface BuiltTrainGraph {
  bytes: Uint8Array;
  params: TrainParam[];
  inputNames: string[];
  outputNames: string[];
}

/** Graph input name of a trainable parameter, and of its gradient output. */
export const paramInput = (name: string): string => `param:${name}`;
export const gradOutput = (name: string): string => `grad:${name}`;
export const exampleGradOutput = (name: string): string => `grad_ex:${name}`;

/** PEFT tensor names of a LoRA factor (layer, module, "A" | "B"). */
export function loraParamName(layer: number, module: LoraModule, factor: "A" | "B"): string {
  const base = moduleWeightName(layer, module).replace(/\.weight$/, "");
  return `base_model.model.${base}.lora_${factor}.weight`;
}

/** The trainable parameters of a run, in a fixed order (the optimizer and checkpoints use it). */
export function trainParams(config: LlamaConfig, mode: TrainMode, lora?: LoraTrainSpec): TrainParam[] {
  if (mode === "full") {
    return [...expectedWeightShapes(config)].map(([name, shape]) => ({ name, shape }));
  }
  if (!lora) throw new Error("lora mode needs a LoraTrainSpec");
  const out: TrainParam[] = [];
  for (let l = 0; l < config.numLayers; l++) {
    for (const m of lora.targetModules) {
      const { inDim, outDim } = moduleDims(config, m);
      out.push({ name: loraParamName(l, m, "A"), shape: [lora.rank, inDim] });
      out.push({ name: loraParamName(l, m, "B"), shape: [outDim, lora.rank] });
    }
  }
  return out;
}

/**
 * Inputs: `input_ids` [B,T] int64, `position_ids` [B,T] int64, `attn_bias` [B,T,T]
 * (additive: 0 or -1e9; the trainer passes causal masks), `labels` [B,T] int64 (any valid
 * id where the weight is 0), `label_weights` [B,T] f32, then `param:<name>` per trainable
 * tensor. Outputs: `loss` (scalar, Σ weight·nll), `nll` [B,T] (unweighted per-token
 * negative log-likelihood), and `grad:<name>` per trainable tensor (d loss / d param).
 * Frozen weights are initializers.
 */
export function buildTrainGraph(model: BaseModel, options: TrainGraphOptions): BuiltTrainGraph {
  const c = model.config;
  const { batch: B, seq: T } = options;
  const N = B * T;
  const H = c.hiddenSize;
  const D = c.headDim;
  const nH = c.numHeads;
  const kvH = c.numKvHeads;
  const G = nH / kvH;
  const V = c.vocabSize;
  const full = options.mode === "full";
  const withGrads = options.gradients ?? true;
  const lora = full ? undefined : options.lora;
  if (!full && !lora) throw new Error("lora mode needs options.lora");
  const loraScale = lora ? lora.alpha / lora.rank : 0;
  const perExample = withGrads && (options.perExampleGrads ?? false);
  const g = new GraphBuilder();
  const params = trainParams(c, options.mode, lora);

  g.input("input_ids", INT64, [B, T]);
  g.input("position_ids", INT64, [B, T]);
  g.input("attn_bias", FLOAT, [B, T, T]);
  g.input("labels", INT64, [B, T]);
  g.input("label_weights", FLOAT, [B, T]);
  for (const p of params) g.input(paramInput(p.name), FLOAT, p.shape);

  const shape = (dims: number[]) => g.int64Init(dims);
  const reshape = (t: string, dims: number[]) => g.op("Reshape", [t, shape(dims)]);
  const transpose = (t: string, perm: number[]) => g.op("Transpose", [t], { perm });
  const add = (a: string, b: string) => g.op("Add", [a, b]);
  const sub = (a: string, b: string) => g.op("Sub", [a, b]);
  const mul = (a: string, b: string) => g.op("Mul", [a, b]);
  const matmul = (a: string, b: string) => g.op("MatMul", [a, b]);
  const reduceSum = (t: string, axes: number[], keepdims: 0 | 1) =>
    g.op("ReduceSum", [t, g.int64Init(axes)], { keepdims });
  const scalar = (v: number) => g.floatConst([v], []);
  const scalar2 = (v: [number, number]) => g.floatConst(v, [2]);

  const grads = new Map<string, string>();
  const accumulate = (name: string, grad: string) => {
    const prev = grads.get(name);
    grads.set(name, prev ? add(prev, grad) : grad);
  };
  const exampleGrads = new Map<string, string>();

  /** A weight: a graph input when trained, else an initializer. */
  const weight = (name: string): string => {
    if (full) return paramInput(name);
    const w = getWeight(model, name);
    return g.floatInit(name, w.shape, w.data);
  };

  // ---- forward -------------------------------------------------------------------------
  const embed = weight("model.embed_tokens.weight");
  const x0 = reshape(g.op("Gather", [embed, "input_ids"], { axis: 0 }), [N, H]);

  const invFreq = Array.from({ length: D / 2 }, (_, i) => 1 / c.ropeTheta ** ((2 * i) / D));
  const pos = g.op("Unsqueeze", [g.op("Cast", ["position_ids"], { to: FLOAT }), g.int64Init([2])]);
  const freqs = mul(pos, g.floatConst(invFreq));
  const emb = g.op("Unsqueeze", [g.op("Concat", [freqs, freqs], { axis: -1 }), g.int64Init([2])]);
  const cos = g.op("Cos", [emb]); // [B,T,1,D]
  const sin = g.op("Sin", [emb]);
  const h0 = g.int64Init([0]);
  const hMid = g.int64Init([D / 2]);
  const hEnd = g.int64Init([D]);
  const ax3 = g.int64Init([3]);
  const halves = (t: string): [string, string] => [
    g.op("Slice", [t, h0, hMid, ax3]),
    g.op("Slice", [t, hMid, hEnd, ax3]),
  ];
  // rope(t) = t·cos + rot(t)·sin with rot([t1, t2]) = [-t2, t1]
  const rope = (t: string): string => {
    const [t1, t2] = halves(t);
    return add(mul(t, cos), mul(g.op("Concat", [g.op("Neg", [t2]), t1], { axis: 3 }), sin));
  };
  // its transpose: dt = u·cos + rotᵀ(u·sin), rotᵀ([z1, z2]) = [z2, -z1]
  const ropeBack = (u: string): string => {
    const [z1, z2] = halves(mul(u, sin));
    return add(mul(u, cos), g.op("Concat", [z2, g.op("Neg", [z1])], { axis: 3 }));
  };

  const eps = scalar(c.rmsNormEps);
  interface Norm {
    out: string;
    x: string;
    inv: string;
    xhat: string;
    w: string;
    wName: string;
  }
  const rmsNorm = (x: string, wName: string): Norm => {
    const w = weight(wName);
    const ms = g.op("ReduceMean", [mul(x, x)], { axes: [-1], keepdims: 1 });
    const inv = g.op("Reciprocal", [g.op("Sqrt", [add(ms, eps)])]); // [N,1]
    const xhat = mul(x, inv);
    return { out: mul(xhat, w), x, inv, xhat, w, wName };
  };
  // y = x̂·w, x̂ = x·r, r = (mean x² + eps)^-½:  dx = r·(g − x·r²·mean(g·x)), g = dy·w; dw = Σ dy·x̂
  const rmsNormBack = (n: Norm, dy: string): string => {
    const gw = mul(dy, n.w);
    const m = g.op("ReduceMean", [mul(gw, n.x)], { axes: [-1], keepdims: 1 });
    const r2m = mul(mul(n.inv, n.inv), m);
    if (full) accumulate(n.wName, reduceSum(mul(dy, n.xhat), [0], 0));
    return mul(sub(gw, mul(n.x, r2m)), n.inv);
  };

  interface Lin {
    x: string;
    w: string;
    wName: string;
    lora?: { a: string; b: string; xas: string; aName: string; bName: string; r: number };
    inDim: number;
    outDim: number;
  }
  const linear = (x: string, layer: number, m: LoraModule): [string, Lin] => {
    const wName = moduleWeightName(layer, m);
    const { inDim, outDim } = moduleDims(c, m);
    const w = weight(wName);
    let y = g.op("Gemm", [x, w], { transB: 1 });
    const lin: Lin = { x, w, wName, inDim, outDim };
    if (lora?.targetModules.includes(m)) {
      const aName = loraParamName(layer, m, "A");
      const bName = loraParamName(layer, m, "B");
      const a = paramInput(aName);
      const b = paramInput(bName);
      const xas = mul(g.op("Gemm", [x, a], { transB: 1 }), scalar(loraScale)); // s·x·Aᵀ [N,r]
      y = add(y, g.op("Gemm", [xas, b], { transB: 1 }));
      lin.lora = { a, b, xas, aName, bName, r: lora.rank };
    }
    return [y, lin];
  };
  // y = x·Wᵀ + s·(x·Aᵀ)·Bᵀ:  dx = dy·W + s·(dy·B)·A;  dB = dyᵀ·(s·x·Aᵀ);  dA = (s·dy·B)ᵀ·x;  dW = dyᵀ·x
  const linearBack = (lin: Lin, dy: string): string => {
    let dx = matmul(dy, lin.w);
    if (full) accumulate(lin.wName, g.op("Gemm", [dy, lin.x], { transA: 1 }));
    if (lin.lora) {
      const { a, b, xas, aName, bName, r } = lin.lora;
      const ts = mul(matmul(dy, b), scalar(loraScale)); // [N,r]
      dx = add(dx, matmul(ts, a));
      if (perExample) {
        // Per example: [B, out, T]·[B, T, r] and [B, r, T]·[B, T, in]; the batch gradient is their sum.
        const dy3 = transpose(reshape(dy, [B, T, lin.outDim]), [0, 2, 1]);
        const ts3 = transpose(reshape(ts, [B, T, r]), [0, 2, 1]);
        const gB = matmul(dy3, reshape(xas, [B, T, r]));
        const gA = matmul(ts3, reshape(lin.x, [B, T, lin.inDim]));
        exampleGrads.set(bName, gB);
        exampleGrads.set(aName, gA);
        accumulate(bName, reduceSum(gB, [0], 0));
        accumulate(aName, reduceSum(gA, [0], 0));
      } else {
        accumulate(bName, g.op("Gemm", [dy, xas], { transA: 1 }));
        accumulate(aName, g.op("Gemm", [ts, lin.x], { transA: 1 }));
      }
    }
    return dx;
  };

  const qScale = scalar(1 / Math.sqrt(D));
  const mask5 = g.op("Unsqueeze", ["attn_bias", g.int64Init([1, 2])]); // [B,1,1,T,T]

  interface LayerTape {
    n1: Norm;
    n2: Norm;
    q: Lin;
    k: Lin;
    v: Lin;
    o: Lin;
    gate: Lin;
    up: Lin;
    down: Lin;
    qg: string;
    kt: string; // [B,kvH,T,D] (roped keys)
    vt: string; // [B,kvH,T,D]
    p4: string; // [B,kvH,G*T,T]
    gt: string;
    sg: string;
    silu: string;
    upOut: string;
  }
  const tapes: LayerTape[] = [];
  let x = x0;
  for (let l = 0; l < c.numLayers; l++) {
    const p = `model.layers.${l}`;
    const n1 = rmsNorm(x, `${p}.input_layernorm.weight`);
    const [qy, q] = linear(n1.out, l, "q_proj");
    const [ky, k] = linear(n1.out, l, "k_proj");
    const [vy, v] = linear(n1.out, l, "v_proj");
    const qs = mul(rope(reshape(qy, [B, T, nH, D])), qScale);
    const qg = reshape(transpose(qs, [0, 2, 1, 3]), [B, kvH, G * T, D]);
    const kt = transpose(rope(reshape(ky, [B, T, kvH, D])), [0, 2, 1, 3]); // [B,kvH,T,D]
    const vt = transpose(reshape(vy, [B, T, kvH, D]), [0, 2, 1, 3]);
    const s4 = matmul(qg, transpose(kt, [0, 1, 3, 2])); // [B,kvH,G*T,T]
    const p5 = g.op("Softmax", [add(reshape(s4, [B, kvH, G, T, T]), mask5)], { axis: -1 });
    const p4 = reshape(p5, [B, kvH, G * T, T]);
    const ctx = matmul(p4, vt); // [B,kvH,G*T,D]
    const attn = reshape(transpose(reshape(ctx, [B, nH, T, D]), [0, 2, 1, 3]), [N, nH * D]);
    const [oy, o] = linear(attn, l, "o_proj");
    const x1 = add(x, oy);
    const n2 = rmsNorm(x1, `${p}.post_attention_layernorm.weight`);
    const [gt, gate] = linear(n2.out, l, "gate_proj");
    const [upOut, up] = linear(n2.out, l, "up_proj");
    const sg = g.op("Sigmoid", [gt]);
    const silu = mul(gt, sg);
    const [dn, down] = linear(mul(silu, upOut), l, "down_proj");
    x = add(x1, dn);
    tapes.push({ n1, n2, q, k, v, o, gate, up, down, qg, kt, vt, p4, gt, sg, silu, upOut });
  }
  const nf = rmsNorm(x, "model.norm.weight");
  const headName = c.tieWordEmbeddings ? "model.embed_tokens.weight" : "lm_head.weight";
  const head = c.tieWordEmbeddings ? embed : weight("lm_head.weight");
  const logits = g.op("Gemm", [nf.out, head], { transB: 1 }); // [N,V]
  // One LogSoftmax over [N,V] rather than ReduceLogSumExp + a broadcast Sub: the vocabulary-wide
  // passes are the costliest elementwise work of a step (bench/factory.ts --profile).
  const logp = g.op("LogSoftmax", [logits], { axis: 1 }); // [N,V]
  const labels = reshape("labels", [N, 1]);
  const wts = reshape("label_weights", [N, 1]);
  const nll = g.op("Neg", [g.op("GatherElements", [logp, labels], { axis: 1 })]); // [N,1]
  g.op("Reshape", [nll, shape([B, T])], {}, "nll");
  g.op("ReduceSum", [mul(nll, wts)], { keepdims: 0 }, "loss");
  g.output("loss", FLOAT, []);
  g.output("nll", FLOAT, [B, T]);

  if (withGrads) {
    // ---- backward ----------------------------------------------------------------------
    const one = scalar(1);
    // d loss / d logits = w·(softmax − onehot(y)): scale the softmax, then overwrite the label column.
    const probs = g.op("Exp", [logp]);
    const pY = g.op("Exp", [g.op("Neg", [nll])]);
    const dLogits = g.op("ScatterElements", [mul(probs, wts), labels, mul(sub(pY, one), wts)], { axis: 1 });
    let dx = matmul(dLogits, head); // [N,H]
    if (full) accumulate(headName, g.op("Gemm", [dLogits, nf.out], { transA: 1 }));
    dx = rmsNormBack(nf, dx);
    for (let l = c.numLayers - 1; l >= 0; l--) {
      const t = tapes[l]!;
      // MLP: act = silu(gate)·up, silu'(z) = σ(z)·(1 + z·(1 − σ(z)))
      const dAct = linearBack(t.down, dx);
      const dUp = mul(dAct, t.silu);
      const dSilu = mul(dAct, t.upOut);
      const dGate = mul(dSilu, mul(t.sg, add(one, mul(t.gt, sub(one, t.sg)))));
      const dh2 = add(linearBack(t.gate, dGate), linearBack(t.up, dUp));
      const dx1 = add(dx, rmsNormBack(t.n2, dh2));
      // attention
      const dAttn = linearBack(t.o, dx1); // [N, nH*D]
      const dCtx = reshape(transpose(reshape(dAttn, [B, T, nH, D]), [0, 2, 1, 3]), [B, kvH, G * T, D]);
      const dP = matmul(dCtx, transpose(t.vt, [0, 1, 3, 2])); // [B,kvH,G*T,T]
      const dVt = matmul(transpose(t.p4, [0, 1, 3, 2]), dCtx); // [B,kvH,T,D]
      const dS = mul(t.p4, sub(dP, reduceSum(mul(dP, t.p4), [-1], 1)));
      const dQg = matmul(dS, t.kt); // [B,kvH,G*T,D]
      const dKt = matmul(transpose(dS, [0, 1, 3, 2]), t.qg); // [B,kvH,T,D]
      const dQ = ropeBack(mul(transpose(reshape(dQg, [B, nH, T, D]), [0, 2, 1, 3]), qScale));
      const dK = ropeBack(transpose(dKt, [0, 2, 1, 3]));
      const dV = transpose(dVt, [0, 2, 1, 3]);
      const dh = add(
        add(linearBack(t.q, reshape(dQ, [N, nH * D])), linearBack(t.k, reshape(dK, [N, kvH * D]))),
        linearBack(t.v, reshape(dV, [N, kvH * D])),
      );
      dx = add(dx1, rmsNormBack(t.n1, dh));
    }
    if (full) {
      // Embedding rows: each token's gradient summed into its row, as onehot(ids)^T · dx. Not a
      // ScatterND(reduction "add"): onnxruntime's multi-threaded ScatterND adds rows of repeated
      // ids in whatever order its threads get there, so the sums (and a pretrained model's bytes)
      // changed from run to run; a Gemm has a fixed reduction order per output element. Its cost,
      // N·V·H multiply-adds, is that of the tied head's gradient Gemm, already in the step.
      const onehot = g.op("OneHot", [reshape("input_ids", [N]), shape([V]), scalar2([0, 1])], { axis: -1 });
      accumulate("model.embed_tokens.weight", g.op("Gemm", [onehot, dx], { transA: 1 }));
    }
    for (const p of params) {
      const grad = grads.get(p.name);
      if (!grad) throw new Error(`no gradient reached ${p.name}`);
      g.op("Identity", [grad], {}, gradOutput(p.name));
      g.output(gradOutput(p.name), FLOAT, p.shape);
      const ex = exampleGrads.get(p.name);
      if (ex) {
        g.op("Identity", [ex], {}, exampleGradOutput(p.name));
        g.output(exampleGradOutput(p.name), FLOAT, [B, ...p.shape]);
      }
    }
  }

  const modelProto = onnx.ModelProto.create({
    irVersion: 8,
    producerName: "openledger-model-runtime-train",
    opsetImport: [{ domain: "", version: 17 }],
    graph: {
      name: "llama_train",
      node: g.nodes,
      initializer: g.initializers,
      input: g.inputs,
      output: g.outputs,
    },
  });
  return {
    bytes: onnx.ModelProto.encode(modelProto).finish(),
    params,
    inputNames: g.inputs.map((i) => i.name!),
    outputNames: g.outputs.map((o) => o.name!),
  };
}
