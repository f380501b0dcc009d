import { toErrorReply } from "./error-handler.ts";

/** OpenAI's error object: `{ message, type, param, code }`, and the platform's `details` when there are any. */
export interface OpenAIErrorObject {
  message: string;
  type: string;
  param: string | null;
  code: string;
  /** The error's machine-readable specifics (e.g. `duplicate_job`'s existing `job`), as every service sends them. */
  details?: unknown;
}

const TYPE_OF_STATUS: Record<number, string> = {
  400: "invalid_request_error",
  401: "authentication_error",
  402: "insufficient_quota",
  403: "permission_error",
  404: "invalid_request_error",
  409: "invalid_request_error",
  413: "invalid_request_error",
  422: "invalid_request_error",
  429: "rate_limit_error",
};

/**
 * Anything thrown on an OpenAI-compatible route (the gateway's inference API, the factory's
 * fine-tuning API), in OpenAI's wire format. The platform's one converter (`toErrorReply`) decides
 * the status, the headers and what a 5xx may show; this only reshapes its answer: the code in lower
 * case (OpenAI's `model_not_found`, ours `MODEL_NOT_FOUND`), a `type` from the status, and `param`
 * from the error's `details.param` (or, for a schema failure, the first field named). The body keeps
 * the platform's `{error: {code, message, details?}}` too, so both kinds of client read it (the `openai`
 * client keeps the whole object as `APIError.error`, extra fields included).
 */
export function toOpenAIError(err: unknown): {
  status: number;
  headers: Readonly<Record<string, string>>;
  body: { error: OpenAIErrorObject };
} {
  const r = toErrorReply(err);
  const { code, message, details } = r.body.error;
  let param: string | null = null;
  let openaiCode = code.toLowerCase();
  if (code === "VALIDATION_FAILED" && Array.isArray(details)) {
    // The schema named the fields: `body.temperature` -> param "temperature".
    const path = (details[0] as { path?: string } | undefined)?.path;
    param = path?.replace(/^(body|params|querystring)\.?/, "") || null;
    openaiCode = "invalid_value";
  } else if (details && typeof details === "object" && "param" in details) {
    param = String((details as { param: unknown }).param);
  }
  const type = TYPE_OF_STATUS[r.status] ?? (r.status >= 500 ? "server_error" : "invalid_request_error");
  return {
    status: r.status,
    headers: r.headers,
    body: {
      error: { message, type, param, code: openaiCode, ...(details !== undefined ? { details } : {}) },
    },
  };
}
