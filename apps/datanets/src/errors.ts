import { AppError, type ErrorCode } from "@openledger/errors";

/**
 * An AppError with a service-specific code (e.g. INSUFFICIENT_STAKE): the HTTP status comes from
 * the generic `status` code, the body carries the precise one, so clients can branch on it.
 * The shared error handler answers it like any AppError.
 */
export class ServiceError extends AppError {
  readonly specificCode: string;

  constructor(status: ErrorCode, specificCode: string, message: string, details?: unknown) {
    super(status, message, details === undefined ? undefined : { details });
    this.specificCode = specificCode;
  }

  override toBody() {
    const body = super.toBody();
    body.error.code = this.specificCode;
    return body;
  }
}

export const unauthorized = (code: string, message: string) =>
  new ServiceError("UNAUTHORIZED", code, message);
export const forbidden = (code: string, message: string) => new ServiceError("FORBIDDEN", code, message);
export const notFound = (what: string) => new ServiceError("NOT_FOUND", "NOT_FOUND", `${what} not found`);
export const badRequest = (code: string, message: string) => new ServiceError("BAD_REQUEST", code, message);
export const conflict = (code: string, message: string) => new ServiceError("CONFLICT", code, message);
