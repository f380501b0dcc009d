/**
 * Export a trained logistic model as an ONNX graph and serve it with onnxruntime-node.
 *
 * Graph (opset 17): features float32 [N, D] -> MatMul W [D, C] -> Add b [C] -> Softmax(axis 1)
 * -> probabilities float32 [N, C]. Column 0 of W and b is the reference class (all zero).
 */
import onnxProto from "onnx-proto";
import * as ort from "onnxruntime-node";
import type { LogisticModel } from "./logistic.ts";

const { onnx } = onnxProto;

export const ONNX_INPUT = "features";
export const ONNX_OUTPUT = "probabilities";

function floatTensor(name: string, dims: number[], data: Float32Array) {
  return onnx.TensorProto.create({
    name,
    dims,
    dataType: onnx.TensorProto.DataType.FLOAT,
    rawData: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
  });
}

function valueInfo(name: string, dims: Array<number | string>) {
  return onnx.ValueInfoProto.create({
    name,
    type: {
      tensorType: {
        elemType: onnx.TensorProto.DataType.FLOAT,
        shape: { dim: dims.map((d) => (typeof d === "string" ? { dimParam: d } : { dimValue: d })) },
      },
    },
  });
}

/** Serialize the model as ONNX bytes (deterministic for a given model). */
export function exportLogisticOnnx(model: LogisticModel, name = "openledger-logistic"): Uint8Array {
  const { dim, classes, weights } = model;
  const d1 = dim + 1;
  const w = new Float32Array(dim * classes);
  const b = new Float32Array(classes);
  for (let k = 1; k < classes; k++) {
    for (let j = 0; j < dim; j++) w[j * classes + k] = weights[(k - 1) * d1 + j]!;
    b[k] = weights[(k - 1) * d1 + dim]!;
  }
  const graph = onnx.GraphProto.create({
    name,
    node: [
      onnx.NodeProto.create({
        opType: "MatMul",
        input: [ONNX_INPUT, "W"],
        output: ["logits_nobias"],
        name: "matmul",
      }),
      onnx.NodeProto.create({
        opType: "Add",
        input: ["logits_nobias", "b"],
        output: ["logits"],
        name: "add",
      }),
      onnx.NodeProto.create({
        opType: "Softmax",
        input: ["logits"],
        output: [ONNX_OUTPUT],
        name: "softmax",
        attribute: [
          onnx.AttributeProto.create({ name: "axis", type: onnx.AttributeProto.AttributeType.INT, i: 1 }),
        ],
      }),
    ],
    initializer: [floatTensor("W", [dim, classes], w), floatTensor("b", [classes], b)],
    input: [valueInfo(ONNX_INPUT, ["N", dim])],
    output: [valueInfo(ONNX_OUTPUT, ["N", classes])],
  });
  const m = onnx.ModelProto.create({
    irVersion: 8,
    opsetImport: [{ domain: "", version: 17 }],
    producerName: "@openledger/attribution-core",
    graph,
  });
  return onnx.ModelProto.encode(m).finish();
}

export interface OnnxPredictor {
  /** Probabilities [rows, classes] for dense float32 features [rows, dim]. */
  predict(features: Float32Array, rows: number): Promise<Float32Array>;
  close(): Promise<void>;
}

/** Load ONNX bytes into an onnxruntime-node session (CPU). */
export async function createOnnxPredictor(bytes: Uint8Array, dim: number): Promise<OnnxPredictor> {
  const session = await ort.InferenceSession.create(bytes, { executionProviders: ["cpu"] });
  return {
    async predict(features, rows) {
      if (features.length !== rows * dim) throw new RangeError(`expected ${rows}x${dim} features`);
      const out = await session.run({ [ONNX_INPUT]: new ort.Tensor("float32", features, [rows, dim]) });
      return out[ONNX_OUTPUT]!.data as Float32Array;
    },
    close: () => session.release(),
  };
}
