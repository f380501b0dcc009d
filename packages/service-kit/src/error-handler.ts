import { isChainUnavailable } from "@openledger/chain";
import { AppError, type ErrorBody, type ErrorCode } from "@openledger/errors";
import type { FastifyError, FastifyInstance, FastifyReply } from "fastify";
import { hasZodFastifySchemaValidationErrors, isResponseSerializationError } from "fastify-type-provider-zod";

/** Fastify's own error codes that mean "the client sent something wrong". */
const FASTIFY_CLIENT_ERRORS: Record<string, ErrorCode> = {
  FST_ERR_CTP_BODY_TOO_LARGE: "PAYLOAD_TOO_LARGE",
  FST_ERR_CTP_INVALID_MEDIA_TYPE: "UNSUPPORTED_MEDIA_TYPE",
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: "BAD_REQUEST",
  FST_ERR_CTP_EMPTY_JSON_BODY: "BAD_REQUEST",
  FST_ERR_CTP_INVALID_JSON_BODY: "BAD_REQUEST",
  FST_ERR_VALIDATION: "VALIDATION_FAILED",
};

/** What an error becomes on the wire. `internal` = a 5xx whose cause must be logged, not shown. */
export interface ErrorReply {
  status: number;
  headers: Readonly<Record<string, string>>;
  body: ErrorBody;
  internal: boolean;
}

const NO_HEADERS: Readonly<Record<string, string>> = {};

/**
 * The one converter from anything thrown to an HTTP error: AppError (its code, status, headers),
 * zod validation failures (400 VALIDATION_FAILED naming each field), Fastify's client errors, and
 * everything else as a 500 that hides its internals. Services with another wire format (the
 * gateway's OpenAI-shaped errors) format this result instead of deciding statuses again.
 */
export function toErrorReply(err: unknown): ErrorReply {
  if (err instanceof AppError) {
    if (err.status >= 500)
      return { ...internal(err.code, err.status), status: err.status, headers: err.headers };
    return { status: err.status, headers: err.headers, body: err.toBody(), internal: false };
  }
  const e = err as FastifyError;
  if (hasZodFastifySchemaValidationErrors(e)) {
    const where = (e as { validationContext?: string }).validationContext ?? "request";
    const details = e.validation.map((v) => ({
      path: `${where}${v.instancePath.replaceAll("/", ".")}`,
      message: v.message,
    }));
    const message = details.map((d) => `${d.path}: ${d.message}`).join("; ");
    return {
      status: 400,
      headers: NO_HEADERS,
      body: { error: { code: "VALIDATION_FAILED", message, details } },
      internal: false,
    };
  }
  if (isResponseSerializationError(e)) return { ...internal("INTERNAL"), status: 500 };
  // A request-path chain read that got no answer in time (packages/chain's bound), wherever it
  // escaped from: the chain is unavailable, not the service broken.
  if (isChainUnavailable(err)) {
    return { ...internal("CHAIN_UNAVAILABLE", 503), status: 503, headers: { "retry-after": "1" } };
  }
  const mapped = e?.code ? FASTIFY_CLIENT_ERRORS[e.code] : undefined;
  if (mapped) return toErrorReply(new AppError(mapped, e.message));
  const statusCode = e?.statusCode;
  if (statusCode && statusCode >= 400 && statusCode < 500) {
    const code: ErrorCode =
      statusCode === 404
        ? "NOT_FOUND"
        : statusCode === 413
          ? "PAYLOAD_TOO_LARGE"
          : statusCode === 429
            ? "RATE_LIMITED"
            : "BAD_REQUEST";
    return {
      status: statusCode,
      headers: NO_HEADERS,
      body: { error: { code, message: e.message } },
      internal: false,
    };
  }
  return { ...internal("INTERNAL"), status: 500 };
}

/** A 5xx keeps its code (codes are not secrets) but never its message: that may carry internals
 *  (an RPC URL with its key, a SQL error). 503s say "retry". */
function internal(code: string, status = 500): Omit<ErrorReply, "status"> {
  const body: ErrorBody =
    status === 503
      ? { error: { code, message: "a dependency is unavailable; retry shortly" } }
      : { error: { code, message: "internal error" } };
  return { headers: NO_HEADERS, body, internal: true };
}

function send(reply: FastifyReply, r: ErrorReply) {
  return reply.status(r.status).headers(r.headers).type("application/json").send(r.body);
}

/**
 * One error shape for every service: `{ error: { code, message } }`. Client errors say
 * what was wrong; 5xx are logged with their context and answered without internals.
 */
export function registerErrorHandler(app: FastifyInstance): void {
  app.setErrorHandler((err, request, reply) => {
    const r = toErrorReply(err);
    if (r.internal) {
      const what = isResponseSerializationError(err as FastifyError)
        ? "response did not match its schema"
        : err instanceof AppError
          ? "request failed"
          : "unhandled error";
      request.log.error({ err, route: request.routeOptions.url }, what);
    }
    return send(reply, r);
  });

  app.setNotFoundHandler((request, reply) =>
    send(reply, {
      status: 404,
      headers: NO_HEADERS,
      body: { error: { code: "NOT_FOUND", message: `no route ${request.method} ${request.url}` } },
      internal: false,
    }),
  );
}
