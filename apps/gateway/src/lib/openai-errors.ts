import { AppError } from "@openledger/errors";
import { toOpenAIError } from "@openledger/service-kit";
import { isServingError, type ServingError } from "@openledger/serving-core";

export type { OpenAIErrorObject } from "@openledger/service-kit";

/**
 * Anything thrown on an OpenAI route, in OpenAI's wire format (service-kit's `toOpenAIError`, shared
 * with the factory's fine-tuning API), the serving engine's own refusals converted first.
 */
export function openAIError(err: unknown) {
  return toOpenAIError(isServingError(err) ? fromServingError(err) : err);
}

/** The serving engine's refusals (queue full, rate limit, adapter load failure) as the one AppError. */
export function fromServingError(err: ServingError): AppError {
  const param =
    err.code === "max_tokens_too_large"
      ? "max_tokens"
      : err.code === "prompt_too_long"
        ? "prompt"
        : undefined;
  return new AppError(err.code.toUpperCase(), err.message, {
    status: err.httpStatus,
    ...(err.retryAfterMs !== undefined
      ? { headers: { "retry-after": String(Math.max(1, Math.ceil(err.retryAfterMs / 1000))) } }
      : {}),
    ...(param ? { details: { param } } : {}),
    cause: err,
  });
}

/** A 400 naming the request field at fault (OpenAI's `param`). */
export function badParam(message: string, param: string, code = "INVALID_VALUE"): AppError {
  return new AppError(code, message, { status: 400, details: { param } });
}

export function modelNotFound(id: string): AppError {
  return new AppError("MODEL_NOT_FOUND", `The model '${id}' does not exist`, {
    status: 404,
    details: { param: "model" },
  });
}
