/**
 * The one error type of the model runtime. Codes are stable strings so the gateway can
 * map them to HTTP answers (e.g. ADAPTER_* -> 422) without parsing messages.
 */
export type ModelRuntimeErrorCode =
  | "SAFETENSORS_INVALID"
  | "MODEL_CONFIG_INVALID"
  | "MODEL_WEIGHTS_INVALID"
  | "ADAPTER_CONFIG_INVALID"
  | "ADAPTER_TARGET_UNSUPPORTED"
  | "ADAPTER_TENSOR_MISSING"
  | "ADAPTER_TENSOR_UNEXPECTED"
  | "ADAPTER_SHAPE_MISMATCH"
  | "ADAPTER_RANK_TOO_LARGE"
  | "SLOT_OUT_OF_RANGE"
  | "SEQUENCE_INVALID"
  | "TOKENIZER_INVALID";

export class ModelRuntimeError extends Error {
  readonly code: ModelRuntimeErrorCode;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ModelRuntimeErrorCode, message: string, details?: Record<string, unknown>) {
    super(message);
    this.name = "ModelRuntimeError";
    this.code = code;
    this.details = details;
  }
}
