/**
 * Blockwise weight quantization for the runtime's int8 / int4 formats: per output row,
 * blocks of 32 input weights share one f32 scale; values are stored unsigned with the
 * implicit zero point onnxruntime's MatMulNBits uses (128 for 8 bits, 8 for 4 bits). The
 * formulas are llama.cpp's Q8_0 / Q4_0 (d = amax/127; d = max/-8 with the value of largest
 * magnitude), so our int8/int4 and llama.cpp's Q8_0/Q4_0 carry the same information.
 */

/**
 * Base weight format of a runtime: f32 as loaded, blockwise-quantized int8 / int4
 * (MatMulNBits), or "int8c": int8 with one scale per output channel, run by onnxruntime's
 * integer GEMM (see `quantizePerChannel`).
 */
export type WeightFormat = "f32" | "int8" | "int4" | "int8c";

export const WEIGHT_FORMATS: readonly WeightFormat[] = ["f32", "int8", "int4", "int8c"];

/** Input weights per quantization block. */
export const QUANT_BLOCK = 32;

export interface QuantizedMatrix {
  /** [rows, blocks, 32 * bits / 8]: 8 bits one byte per value; 4 bits two per byte, low nibble first. */
  data: Uint8Array;
  /** [rows * blocks] */
  scales: Float32Array;
}

/**
 * Quantizes a row-major [rows, cols] matrix (HF linear layout [out, in]). A last block
 * shorter than 32 (cols not a multiple of 32) is padded with zeros.
 */
export function quantizeBlockwise(w: Float32Array, rows: number, cols: number, bits: 4 | 8): QuantizedMatrix {
  const blocks = Math.ceil(cols / QUANT_BLOCK);
  const blob = (QUANT_BLOCK * bits) / 8;
  const data = new Uint8Array(rows * blocks * blob);
  const scales = new Float32Array(rows * blocks);
  for (let r = 0; r < rows; r++) {
    for (let b = 0; b < blocks; b++) {
      const start = r * cols + b * QUANT_BLOCK;
      const len = Math.min(QUANT_BLOCK, cols - b * QUANT_BLOCK);
      let amax = 0;
      let max = 0;
      for (let j = 0; j < len; j++) {
        const v = w[start + j]!;
        if (Math.abs(v) > amax) {
          amax = Math.abs(v);
          max = v;
        }
      }
      const o = (r * blocks + b) * blob;
      if (bits === 8) {
        const d = amax / 127;
        const id = d !== 0 ? 1 / d : 0;
        scales[r * blocks + b] = d;
        for (let j = 0; j < QUANT_BLOCK; j++) {
          data[o + j] = j < len ? Math.round(w[start + j]! * id) + 128 : 128;
        }
      } else {
        const d = max / -8;
        const id = d !== 0 ? 1 / d : 0;
        scales[r * blocks + b] = d;
        for (let j = 0; j < QUANT_BLOCK; j += 2) {
          const q0 = j < len ? Math.min(15, Math.trunc(w[start + j]! * id + 8.5)) : 8;
          const q1 = j + 1 < len ? Math.min(15, Math.trunc(w[start + j + 1]! * id + 8.5)) : 8;
          data[o + (j >> 1)] = q0 | (q1 << 4);
        }
      }
    }
  }
  return { data, scales };
}

/** The f32 matrix a quantized one stands for (tests, reference forward). */
export function dequantizeBlockwise(
  q: QuantizedMatrix,
  rows: number,
  cols: number,
  bits: 4 | 8,
): Float32Array {
  const blocks = Math.ceil(cols / QUANT_BLOCK);
  const blob = (QUANT_BLOCK * bits) / 8;
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const b = Math.floor(c / QUANT_BLOCK);
      const j = c % QUANT_BLOCK;
      const o = (r * blocks + b) * blob;
      const d = q.scales[r * blocks + b]!;
      const v = bits === 8 ? q.data[o + j]! - 128 : ((q.data[o + (j >> 1)]! >> ((j & 1) * 4)) & 15) - 8;
      out[r * cols + c] = v * d;
    }
  }
  return out;
}

export interface ChannelQuantizedMatrix {
  /** [cols, rows] (the transpose of the HF [out, in] layout: MatMul's B), signed. */
  data: Int8Array;
  /** [rows]: one per output channel. */
  scales: Float32Array;
}

/**
 * Symmetric int8 with one f32 scale per output channel (d = amax/127 over the channel's
 * weights), laid out as MatMul's B [in, out]: what onnxruntime's `DynamicQuantizeMatMul`
 * takes (activations quantized to uint8 per call, int8 weights prepacked once for MLAS's
 * integer GEMM). ~1.0 byte per weight against 1.125 for the blockwise int8 above (llama.cpp's
 * Q8_0: 1.0625), and the integer GEMM streams it faster than MatMulNBits (bench/RESULTS.md).
 */
export function quantizePerChannel(w: Float32Array, rows: number, cols: number): ChannelQuantizedMatrix {
  const data = new Int8Array(rows * cols);
  const scales = new Float32Array(rows);
  for (let r = 0; r < rows; r++) {
    let amax = 0;
    for (let c = 0; c < cols; c++) amax = Math.max(amax, Math.abs(w[r * cols + c]!));
    const d = amax / 127;
    const id = d !== 0 ? 1 / d : 0;
    scales[r] = d;
    for (let c = 0; c < cols; c++) data[c * rows + r] = Math.round(w[r * cols + c]! * id);
  }
  return { data, scales };
}

/** The f32 [rows, cols] matrix a per-channel quantized one stands for (tests). */
export function dequantizePerChannel(q: ChannelQuantizedMatrix, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) out[r * cols + c] = q.data[c * rows + r]! * q.scales[r]!;
  }
  return out;
}
