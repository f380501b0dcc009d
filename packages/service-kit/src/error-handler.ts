import { AppError, type ErrorBody, type ErrorCode } from "@openledger/errors";
import type { FastifyError, FastifyInstance } from "fastify";
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

function send(reply: import("fastify").FastifyReply, status: number, body: ErrorBody) {
  return reply.status(status).type("application/json").send(body);
}

/**
 * One error shape for every service: `{ error: { code, message } }`. Client errors say
 * what was wrong; 5xx are logged with their context and answered without internals.
 */
export function registerErrorHandler(app: FastifyInstance): void {
  app.setErrorHandler((err: FastifyError | AppError | Error, request, reply) => {
    if (err instanceof AppError) {
      if (err.status >= 500) request.log.error({ err }, "request failed");
      return send(reply, err.status, err.status >= 500 ? internalBody(err.code) : err.toBody());
    }
    if (hasZodFastifySchemaValidationErrors(err)) {
      const where = (err as { validationContext?: string }).validationContext ?? "request";
      const details = err.validation.map((v) => ({
        path: `${where}${v.instancePath.replaceAll("/", ".")}`,
        message: v.message,
      }));
      const message = details.map((d) => `${d.path}: ${d.message}`).join("; ");
      return send(reply, 400, { error: { code: "VALIDATION_FAILED", message, details } });
    }
    if (isResponseSerializationError(err)) {
      request.log.error({ err, route: request.routeOptions.url }, "response did not match its schema");
      return send(reply, 500, internalBody("INTERNAL"));
    }
    const fastifyCode = (err as FastifyError).code;
    const mapped = fastifyCode ? FASTIFY_CLIENT_ERRORS[fastifyCode] : undefined;
    const statusCode = (err as FastifyError).statusCode;
    if (mapped) {
      const e = new AppError(mapped, err.message);
      return send(reply, e.status, e.toBody());
    }
    if (statusCode && statusCode >= 400 && statusCode < 500) {
      const code: ErrorCode =
        statusCode === 404
          ? "NOT_FOUND"
          : statusCode === 413
            ? "PAYLOAD_TOO_LARGE"
            : statusCode === 429
              ? "RATE_LIMITED"
              : "BAD_REQUEST";
      return send(reply, statusCode, { error: { code, message: err.message } });
    }
    request.log.error({ err }, "unhandled error");
    return send(reply, 500, internalBody("INTERNAL"));
  });

  app.setNotFoundHandler((request, reply) =>
    send(reply, 404, { error: { code: "NOT_FOUND", message: `no route ${request.method} ${request.url}` } }),
  );
}

function internalBody(code: ErrorCode): ErrorBody {
  if (code === "SERVICE_UNAVAILABLE") {
    return { error: { code, message: "a dependency is unavailable; retry shortly" } };
  }
  return { error: { code: "INTERNAL", message: "internal error" } };
}

/** OpenAPI description of the error body, for route schemas. */
export const errorBodySchemaDescription = "{ error: { code, message } }";
