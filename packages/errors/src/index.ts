/**
 * The one error type of the platform (documenso's `AppError` shape): an open string code, a
 * message for humans, an optional HTTP status and headers. Every service answers errors as
 * `{ error: { code, message } }`, converted in one place (service-kit's error handler).
 *
 * The generic codes below have a fixed status, so a code always means the same status
 * everywhere; a service-specific code (`INSUFFICIENT_STAKE`, `BAD_CURSOR`) must say its status:
 *
 *   throw new AppError("NOT_FOUND", `datanet ${id} not found`);
 *   throw new AppError("INSUFFICIENT_STAKE", "…", { status: 403, details: { requiredWei } });
 *   throw new AppError("INDEX_NOT_READY", "…", { status: 409, headers: { "retry-after": "5" } });
 */
export const ERROR_STATUS = {
  BAD_REQUEST: 400,
  VALIDATION_FAILED: 400,
  UNAUTHORIZED: 401,
  PAYMENT_REQUIRED: 402,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  CONFLICT: 409,
  GONE: 410,
  PAYLOAD_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  UNPROCESSABLE: 422,
  RATE_LIMITED: 429,
  INTERNAL: 500,
  SERVICE_UNAVAILABLE: 503,
} as const;

/** The generic codes, whose status is implied. */
export type ErrorCode = keyof typeof ERROR_STATUS;

export interface ErrorBody {
  error: { code: string; message: string; details?: unknown };
}

export interface AppErrorOptions {
  /** HTTP status; defaults to the generic code's (required for any other code). */
  status?: number;
  /** Response headers, e.g. `retry-after`. */
  headers?: Record<string, string>;
  /** Machine-readable specifics, sent as `error.details` (never on a 5xx). */
  details?: unknown;
  cause?: unknown;
}

export class AppError extends Error {
  readonly code: string;
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly details: unknown;

  constructor(code: ErrorCode, message: string, options?: AppErrorOptions);
  constructor(code: string, message: string, options: AppErrorOptions & { status: number });
  constructor(code: string, message: string, options: AppErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "AppError";
    this.code = code;
    this.status = options.status ?? ERROR_STATUS[code as ErrorCode] ?? 500;
    if (!Number.isInteger(this.status) || this.status < 400 || this.status > 599) {
      throw new RangeError(`AppError ${code}: status ${this.status} is not an HTTP error status`);
    }
    this.headers = options.headers ?? {};
    this.details = options.details;
  }

  toBody(): ErrorBody {
    const body: ErrorBody = { error: { code: this.code, message: this.message } };
    if (this.details !== undefined) body.error.details = this.details;
    return body;
  }
}

export function isAppError(value: unknown): value is AppError {
  return value instanceof AppError;
}
