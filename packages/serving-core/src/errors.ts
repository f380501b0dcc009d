/**
 * Typed errors of the serving core. The gateway maps `code` to an HTTP status (see
 * SERVING_ERROR_HTTP_STATUS) and to the OpenAI error shape; nothing here knows about HTTP.
 */
export type ServingErrorCode =
  /** Malformed request (empty prompt, non-positive max tokens, duplicate id...). 400. */
  | "invalid_request"
  /** Prompt longer than `maxPromptTokens`. 400. */
  | "prompt_too_long"
  /** Requested max new tokens above `maxNewTokens`. 400. */
  | "max_tokens_too_large"
  /** prompt + max new tokens above `maxContextTokens`. 400. */
  | "context_length_exceeded"
  /** Per-account token bucket empty; `retryAfterMs` says when to retry. 429. */
  | "rate_limited"
  /** Too many queued requests (per account or in total). 429. */
  | "queue_full"
  /** The adapter could not be read/decoded, or did not fit a device slot. 503 (retryable). */
  | "adapter_load_failed"
  /** The decoded adapter is larger than the whole RAM budget; it can never be served. 500. */
  | "adapter_too_large"
  /** The step executor threw while this request was in the batch. 500. */
  | "executor_failed"
  /** The engine was closed with the request still pending. 503. */
  | "shutting_down";

export const SERVING_ERROR_HTTP_STATUS: Readonly<Record<ServingErrorCode, number>> = {
  invalid_request: 400,
  prompt_too_long: 400,
  max_tokens_too_large: 400,
  context_length_exceeded: 400,
  rate_limited: 429,
  queue_full: 429,
  adapter_load_failed: 503,
  adapter_too_large: 500,
  executor_failed: 500,
  shutting_down: 503,
};

export class ServingError extends Error {
  readonly code: ServingErrorCode;
  readonly httpStatus: number;
  /** Only for `rate_limited` (and set for `queue_full` when known): milliseconds to wait. */
  readonly retryAfterMs: number | undefined;
  /** Set for adapter errors. */
  readonly adapterId: string | undefined;

  constructor(
    code: ServingErrorCode,
    message: string,
    options: { retryAfterMs?: number; adapterId?: string; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "ServingError";
    this.code = code;
    this.httpStatus = SERVING_ERROR_HTTP_STATUS[code];
    this.retryAfterMs = options.retryAfterMs;
    this.adapterId = options.adapterId;
  }
}

export function isServingError(value: unknown): value is ServingError {
  return value instanceof ServingError;
}
