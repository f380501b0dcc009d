import onnxProto from "onnx-proto";
import * as ort from "onnxruntime-node";
import type { LoraAdapter } from "./adapter.ts";
import { type LoraModule, moduleDims, moduleWeightName } from "./config.ts";
import { type BaseModel, getWeight } from "./model.ts";

const { onnx } = onnxProto;

/**
 * Merges an adapter into the base weights, W' = W + scale * B A, for every layer of the
 * target modules in one onnxruntime call (batched GEMM over layers). This is the
 * "merged weights" serving baseline: one adapter at a time, re-merged when the adapter
 * changes. Output per `${layer}.${module}` is [out, in] (HF layout).
 */
export class AdapterMerger {
  private constructor(
    private readonly model: BaseModel,
    private readonly modules: LoraModule[],
    private readonly rank: number,
    private readonly session: ort.InferenceSession,
  ) {}

  static async create(
    model: BaseModel,
    modules: LoraModule[],
    rank: number,
    intraOpThreads: number,
  ): Promise<AdapterMerger> {
    const c = model.config;
    const L = c.numLayers;
    const nodes = [];
    const initializer = [];
    const input = [];
    const output = [];
    const info = (name: string, dims: number[]) => ({
      name,
      type: { tensorType: { elemType: 1, shape: { dim: dims.map((d) => ({ dimValue: d })) } } },
    });
    for (const m of modules) {
      const { inDim, outDim } = moduleDims(c, m);
      const w = new Float32Array(L * outDim * inDim);
      for (let l = 0; l < L; l++) w.set(getWeight(model, moduleWeightName(l, m)).data, l * outDim * inDim);
      initializer.push({
        name: `w.${m}`,
        dims: [L, outDim, inDim],
        dataType: 1,
        rawData: new Uint8Array(w.buffer),
      });
      input.push(info(`b.${m}`, [L, outDim, rank]), info(`a.${m}`, [L, rank, inDim]));
      nodes.push({ opType: "MatMul", input: [`b.${m}`, `a.${m}`], output: [`ba.${m}`], name: `ba.${m}` });
      nodes.push({
        opType: "Add",
        input: [`w.${m}`, `ba.${m}`],
        output: [`merged.${m}`],
        name: `merged.${m}`,
      });
      output.push(info(`merged.${m}`, [L, outDim, inDim]));
    }
    const bytes = onnx.ModelProto.encode(
      onnx.ModelProto.create({
        irVersion: 8,
        opsetImport: [{ domain: "", version: 17 }],
        graph: { name: "merge", node: nodes, initializer, input, output },
      }),
    ).finish();
    const session = await ort.InferenceSession.create(bytes, {
      intraOpNumThreads: intraOpThreads,
      interOpNumThreads: 1,
      graphOptimizationLevel: "all",
    });
    return new AdapterMerger(model, modules, rank, session);
  }

  async merge(adapter: LoraAdapter): Promise<Map<string, Float32Array>> {
    const c = this.model.config;
    const L = c.numLayers;
    const r = this.rank;
    const feeds: Record<string, ort.Tensor> = {};
    for (const m of this.modules) {
      const { inDim, outDim } = moduleDims(c, m);
      const a = new Float32Array(L * r * inDim);
      const b = new Float32Array(L * outDim * r);
      for (let l = 0; l < L; l++) {
        const w = adapter.modules.get(`${l}.${m}`);
        if (!w) continue;
        a.set(w.a, l * r * inDim); // rows beyond w.rank stay zero
        for (let o = 0; o < outDim; o++) {
          for (let k = 0; k < w.rank; k++) b[(l * outDim + o) * r + k] = w.scale * w.b[o * w.rank + k]!;
        }
      }
      feeds[`a.${m}`] = new ort.Tensor("float32", a, [L, r, inDim]);
      feeds[`b.${m}`] = new ort.Tensor("float32", b, [L, outDim, r]);
    }
    const out = await this.session.run(feeds);
    const merged = new Map<string, Float32Array>();
    for (const m of this.modules) {
      const { inDim, outDim } = moduleDims(c, m);
      const data = out[`merged.${m}`]!.data as Float32Array;
      for (let l = 0; l < L; l++)
        merged.set(`${l}.${m}`, data.subarray(l * outDim * inDim, (l + 1) * outDim * inDim));
    }
    return merged;
  }

  async dispose(): Promise<void> {
    await this.session.release();
  }
}
