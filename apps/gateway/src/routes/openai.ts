import { randomUUID } from "node:crypto";
import type { GatewayConfig } from "@openledger/config";
import { AppError } from "@openledger/errors";
import { Sampler, StopCondition } from "@openledger/model-runtime";
import { AccountRateLimiter, isServingError, type RequestHandle } from "@openledger/serving-core";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { hasZodFastifySchemaValidationErrors } from "fastify-type-provider-zod";
import { z } from "zod";
import { SmallModelUnavailable } from "../lib/small-models.ts";
import { inferenceFee } from "../plugins/billing.ts";
import type { ServableModel } from "../plugins/catalog.ts";
import type { ApiKeys } from "../plugins/keys.ts";

/** An error in OpenAI's shape: `{ error: { message, type, param, code } }`. */
export class OpenAIError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type: string,
    readonly code: string | null,
    readonly param: string | null = null,
    readonly retryAfterS?: number,
  ) {
    super(message);
  }

  /** The same error in the platform's shape, for the non-OpenAI routes that share `authenticate`. */
  toPlatform(): { error: { code: string; message: string } } {
    return { error: { code: this.code?.toUpperCase() ?? "UNAUTHORIZED", message: this.message } };
  }
}

const APP_CODE_TYPE: Record<number, string> = {
  400: "invalid_request_error",
  401: "authentication_error",
  402: "insufficient_quota",
  403: "permission_error",
  404: "invalid_request_error",
  429: "rate_limit_error",
};

function toOpenAI(err: unknown): OpenAIError {
  if (err instanceof OpenAIError) return err;
  if (err instanceof SmallModelUnavailable) {
    // Not ready / unreachable is the server's state, not the caller's mistake: 503 + Retry-After.
    return new OpenAIError(
      err.retryable ? 503 : 500,
      err.message,
      "server_error",
      err.code.toLowerCase(),
      null,
      err.retryable ? 5 : undefined,
    );
  }
  if (err instanceof AppError) {
    const type = APP_CODE_TYPE[err.status] ?? (err.status >= 500 ? "server_error" : "invalid_request_error");
    const message = err.status >= 500 && err.code !== "SERVICE_UNAVAILABLE" ? "internal error" : err.message;
    return new OpenAIError(err.status, message, type, err.code.toLowerCase());
  }
  if (isServingError(err)) {
    const type =
      APP_CODE_TYPE[err.httpStatus] ?? (err.httpStatus >= 500 ? "server_error" : "invalid_request_error");
    const retry =
      err.retryAfterMs === undefined ? undefined : Math.max(1, Math.ceil(err.retryAfterMs / 1000));
    const param =
      err.code === "max_tokens_too_large" ? "max_tokens" : err.code === "prompt_too_long" ? "prompt" : null;
    return new OpenAIError(err.httpStatus, err.message, type, err.code, param, retry);
  }
  if (hasZodFastifySchemaValidationErrors(err)) {
    const first = err.validation[0];
    const param = first?.instancePath.replace(/^\//, "").replaceAll("/", ".") || null;
    const message = err.validation
      .map((v) => `${v.instancePath.replace(/^\//, "").replaceAll("/", ".") || "body"}: ${v.message}`)
      .join("; ");
    return new OpenAIError(400, message, "invalid_request_error", "invalid_value", param);
  }
  const e = err as { statusCode?: number; message?: string };
  if (e.statusCode && e.statusCode >= 400 && e.statusCode < 500) {
    return new OpenAIError(e.statusCode, e.message ?? "bad request", "invalid_request_error", null);
  }
  return new OpenAIError(500, "internal error", "server_error", null);
}

function sendOpenAIError(reply: FastifyReply, e: OpenAIError) {
  if (e.retryAfterS !== undefined) reply.header("retry-after", String(e.retryAfterS));
  return reply
    .status(e.status)
    .type("application/json")
    .send({ error: { message: e.message, type: e.type, param: e.param, code: e.code } });
}

const StopParam = z.union([z.string(), z.array(z.string()).max(4)]).nullish();
const Common = {
  model: z.string().min(1).max(128),
  max_tokens: z.number().int().min(1).nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().gt(0).max(1).nullish(),
  n: z.number().int().min(1).nullish(),
  stream: z.boolean().nullish(),
  stream_options: z.object({ include_usage: z.boolean().optional() }).nullish(),
  stop: StopParam,
  seed: z.number().int().nullish(),
  user: z.string().max(256).nullish(),
  presence_penalty: z.number().min(-2).max(2).nullish(),
  frequency_penalty: z.number().min(-2).max(2).nullish(),
  logprobs: z.union([z.boolean(), z.number()]).nullish(),
};
const CompletionBody = z.object({
  ...Common,
  prompt: z.union([z.string(), z.array(z.string()).length(1)]),
  echo: z.boolean().nullish(),
});
const ChatContent = z.union([z.string(), z.array(z.object({ type: z.literal("text"), text: z.string() }))]);
const ChatBody = z.object({
  ...Common,
  max_completion_tokens: z.number().int().min(1).nullish(),
  messages: z
    .array(
      z.object({
        role: z.enum(["system", "developer", "user", "assistant"]),
        content: ChatContent,
        name: z.string().optional(),
      }),
    )
    .min(1),
});
type CommonParams = z.infer<typeof CompletionBody> | z.infer<typeof ChatBody>;

declare module "fastify" {
  interface FastifyRequest {
    account?: string;
  }
}

/** `Authorization: Bearer sk-...` -> request.account, or 401. */
export async function authenticate(keys: ApiKeys, request: FastifyRequest): Promise<string> {
  const header = request.headers.authorization;
  const m = header ? /^Bearer\s+(\S+)$/i.exec(header) : null;
  if (!m) {
    throw new OpenAIError(
      401,
      "missing API key: send Authorization: Bearer sk-...",
      "authentication_error",
      "missing_api_key",
    );
  }
  const account = await keys.accountOf(m[1]!);
  if (!account) throw new OpenAIError(401, "invalid API key", "authentication_error", "invalid_api_key");
  return account;
}

interface Prepared {
  model: ServableModel;
  promptText: string;
  promptTokens: number[];
  maxTokens: number;
  stop: string[];
  sampling: { temperature: number; topP: number; seed: number | string };
}

function badParam(message: string, param: string, code = "invalid_value"): OpenAIError {
  return new OpenAIError(400, message, "invalid_request_error", code, param);
}

/**
 * OpenAI-compatible routes. Everything here answers errors in OpenAI's shape (a scoped
 * error handler), so the official client parses them.
 */
export async function openaiRoutes(app: FastifyInstance, { config: cfg }: { config: GatewayConfig }) {
  app.setErrorHandler((err, request, reply) => {
    const e = toOpenAI(err);
    if (e.status >= 500) request.log.error({ err }, "request failed");
    return sendOpenAIError(reply, e);
  });
  app.addHook("onRequest", async (request) => {
    request.account = await authenticate(app.apiKeys, request);
  });

  // Small models do not go through the engine's scheduler: their own per-account request bucket
  // (GATEWAY_RATE_REQUESTS_PER_MIN, separate from the engine's).
  const rpm = cfg.GATEWAY_RATE_REQUESTS_PER_MIN;
  const smallModelLimiter = new AccountRateLimiter(() =>
    rpm > 0 ? { requests: { capacity: rpm, refillPerMinute: rpm } } : undefined,
  );

  app.get(
    "/v1/models",
    {
      schema: {
        tags: ["openai"],
        summary: "Servable models: the base model, active adapters and active small models",
      },
    },
    async () => ({
      object: "list",
      data: [...app.catalog.models.values()].map((m) => ({
        id: m.id,
        object: "model",
        created: Math.floor(m.createdAt.getTime() / 1000),
        owned_by: m.kind === "base" ? "openledger" : m.ownerAddress,
      })),
    }),
  );

  function prepare(body: CommonParams, promptText: string, promptTokens: number[]): Prepared {
    const model = app.catalog.models.get(body.model);
    if (!model) {
      throw new OpenAIError(
        404,
        `The model '${body.model}' does not exist`,
        "invalid_request_error",
        "model_not_found",
        "model",
      );
    }
    if (body.n != null && body.n !== 1) throw badParam("only n=1 is supported", "n", "unsupported_value");
    if (body.logprobs) throw badParam("logprobs are not supported", "logprobs", "unsupported_value");
    if (body.presence_penalty || body.frequency_penalty) {
      throw badParam(
        "presence/frequency penalties are not supported",
        body.presence_penalty ? "presence_penalty" : "frequency_penalty",
        "unsupported_value",
      );
    }
    const maxTokens =
      ("max_completion_tokens" in body ? body.max_completion_tokens : undefined) ??
      body.max_tokens ??
      ("messages" in body ? cfg.GATEWAY_MAX_NEW_TOKENS : 16);
    if (maxTokens > cfg.GATEWAY_MAX_NEW_TOKENS) {
      throw badParam(
        `max_tokens ${maxTokens} is above the limit of ${cfg.GATEWAY_MAX_NEW_TOKENS}`,
        "max_tokens",
      );
    }
    if (promptTokens.length === 0) throw badParam("the prompt is empty", "prompt");
    if (promptTokens.length > cfg.GATEWAY_MAX_PROMPT_TOKENS) {
      throw badParam(
        `the prompt has ${promptTokens.length} tokens; the limit is ${cfg.GATEWAY_MAX_PROMPT_TOKENS}`,
        "messages" in body ? "messages" : "prompt",
        "context_length_exceeded",
      );
    }
    const ctxMax = app.host.model.config.maxPositionEmbeddings;
    if (promptTokens.length + maxTokens > ctxMax) {
      throw badParam(
        `prompt (${promptTokens.length}) + max_tokens (${maxTokens}) exceeds the context length ${ctxMax}`,
        "max_tokens",
        "context_length_exceeded",
      );
    }
    const stop = body.stop == null ? [] : typeof body.stop === "string" ? [body.stop] : body.stop;
    return {
      model,
      promptText,
      promptTokens,
      maxTokens,
      stop,
      sampling: {
        temperature: body.temperature ?? 1,
        topP: body.top_p ?? 1,
        seed: body.seed ?? randomUUID(),
      },
    };
  }

  async function run(
    request: FastifyRequest,
    reply: FastifyReply,
    body: CommonParams,
    p: Prepared,
    kind: "chat" | "completion",
  ) {
    const account = request.account!;
    const maxCost = inferenceFee(p.model, p.promptTokens.length, p.maxTokens);
    const reservation = await app.billing.reserve(account, maxCost);
    const id = `${kind === "chat" ? "chatcmpl" : "cmpl"}-${randomUUID()}`;
    let handle: RequestHandle;
    try {
      handle = app.host.engine.submit({
        id,
        account,
        adapterId: p.model.kind === "adapter" ? p.model.id : null,
        promptTokens: p.promptTokens,
        maxNewTokens: p.maxTokens,
        stopTokenIds: app.host.tokenizer.eosTokenIds,
        context: { sampler: new Sampler(p.sampling) },
      });
    } catch (err) {
      await app.billing.release(reservation);
      throw err;
    }
    // The client went away before the response ended: cancel (frees the slot pin, KV and budget).
    const onClose = () => {
      if (!reply.raw.writableFinished) handle.cancel();
    };
    reply.raw.on("close", onClose);

    const tok = app.host.tokenizer;
    const stopCond = new StopCondition({ maxTokens: Number.MAX_SAFE_INTEGER, stop: p.stop });
    const tokens: number[] = [];
    let text = "";
    let sent = 0;
    let stoppedByText = false;
    const created = Math.floor(Date.now() / 1000);
    const stream = body.stream === true;
    const includeUsage = stream && body.stream_options?.include_usage === true;
    let headersSent = false;
    const write = (obj: unknown) => {
      if (!reply.raw.writableEnded && !reply.raw.destroyed)
        reply.raw.write(`data: ${JSON.stringify(obj)}\n\n`);
    };
    const chunk = (delta: string | null, finish: string | null, first = false) =>
      kind === "chat"
        ? {
            id,
            object: "chat.completion.chunk",
            created,
            model: p.model.id,
            choices: [
              {
                index: 0,
                delta: finish
                  ? {}
                  : first
                    ? { role: "assistant", content: delta ?? "" }
                    : { content: delta ?? "" },
                logprobs: null,
                finish_reason: finish,
              },
            ],
            ...(includeUsage ? { usage: null } : {}),
          }
        : {
            id,
            object: "text_completion",
            created,
            model: p.model.id,
            choices: [{ index: 0, text: delta ?? "", logprobs: null, finish_reason: finish }],
            ...(includeUsage ? { usage: null } : {}),
          };
    const startStream = () => {
      if (headersSent) return;
      headersSent = true;
      reply.hijack();
      reply.raw.writeHead(200, {
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-cache",
        connection: "keep-alive",
        "x-request-id": request.id,
      });
      if (kind === "chat") write(chunk("", null, true));
    };

    let failure: unknown;
    try {
      for await (const token of handle) {
        if (stoppedByText) continue;
        tokens.push(token);
        text = tok.decode(tokens, { skipSpecialTokens: true });
        const check = stopCond.check(token, tokens.length, text);
        if (check.done) {
          text = check.text;
          stoppedByText = true;
          app.host.engine.stop(id);
        }
        if (stream) {
          startStream();
          let upto = stoppedByText ? text.length : stopCond.streamableLength(text);
          // Hold back an incomplete UTF-8 sequence (decoded as U+FFFD) until its next bytes arrive.
          while (!stoppedByText && upto > sent && text.charCodeAt(upto - 1) === 0xfffd) upto--;
          if (upto > sent) {
            write(chunk(text.slice(sent, upto), null));
            sent = upto;
          }
        }
      }
    } catch (err) {
      failure = err;
    }
    const result = await handle.result;
    reply.raw.off("close", onClose);

    let inferenceId: string | undefined;
    try {
      // Persist whatever was generated, including a request cancelled by a disconnect
      // after some tokens (the compute was spent; billing it prevents free-riding).
      if (result.completionTokens > 0 || (result.reason !== "cancelled" && result.reason !== "error")) {
        const t = result.timings;
        inferenceId = await app.inferences.persist(
          {
            modelId: p.model.id,
            account,
            prompt: p.promptText,
            output: text,
            inputTokens: result.promptTokens,
            outputTokens: result.completionTokens,
            ttftMs: t.firstTokenAt !== undefined ? Math.round(t.firstTokenAt - t.queuedAt) : null,
            durationMs: t.finishedAt !== undefined ? Math.round(t.finishedAt - t.queuedAt) : null,
          },
          reservation,
        );
      }
    } finally {
      // Nothing recorded (cancelled before any token, error, failed write): drop the reservation.
      await app.billing.release(reservation);
    }

    if (result.reason === "error" || (failure && result.reason !== "cancelled")) {
      const err = result.error ?? failure;
      if (!headersSent) throw err;
      const e = toOpenAI(err);
      write({ error: { message: e.message, type: e.type, param: e.param, code: e.code } });
      reply.raw.end();
      return reply;
    }
    if (result.reason === "cancelled") {
      if (headersSent) reply.raw.end();
      return reply;
    }
    const finishReason = stoppedByText || result.reason === "stop" ? "stop" : "length";
    const usage = {
      prompt_tokens: result.promptTokens,
      completion_tokens: result.completionTokens,
      total_tokens: result.promptTokens + result.completionTokens,
    };
    if (stream) {
      startStream();
      if (text.length > sent) write(chunk(text.slice(sent), null));
      write(chunk(null, finishReason));
      if (includeUsage) {
        write({
          id,
          object: kind === "chat" ? "chat.completion.chunk" : "text_completion",
          created,
          model: p.model.id,
          choices: [],
          usage,
        });
      }
      if (!reply.raw.writableEnded) reply.raw.end("data: [DONE]\n\n");
      return reply;
    }
    if (inferenceId) reply.header("x-openledger-inference-id", inferenceId);
    if (kind === "chat") {
      return {
        id,
        object: "chat.completion",
        created,
        model: p.model.id,
        choices: [
          {
            index: 0,
            message: { role: "assistant", content: text, refusal: null },
            logprobs: null,
            finish_reason: finishReason,
          },
        ],
        usage,
      };
    }
    return {
      id,
      object: "text_completion",
      created,
      model: p.model.id,
      choices: [{ index: 0, text, logprobs: null, finish_reason: finishReason }],
      usage,
    };
  }

  /**
   * A small model answers its predicted label as the completion. It is a classifier, so usage is
   * defined for it as: prompt_tokens = words the featurizer reads (what the prediction is computed
   * from), completion_tokens = 1 (the label). Those are the numbers stored with the inference and
   * priced by settlement. Sampling settings do not apply (the answer is the arg-max class).
   */
  async function runSmallModel(
    request: FastifyRequest,
    reply: FastifyReply,
    body: CommonParams,
    model: ServableModel,
    text: string,
    kind: "chat" | "completion",
  ) {
    if (body.n != null && body.n !== 1) throw badParam("only n=1 is supported", "n", "unsupported_value");
    if (body.logprobs) throw badParam("logprobs are not supported", "logprobs", "unsupported_value");
    if (body.presence_penalty || body.frequency_penalty) {
      throw badParam(
        "presence/frequency penalties are not supported",
        body.presence_penalty ? "presence_penalty" : "frequency_penalty",
        "unsupported_value",
      );
    }
    if (body.stop != null && (typeof body.stop === "string" || body.stop.length > 0)) {
      throw badParam(
        "a small model answers one label: stop sequences do not apply",
        "stop",
        "unsupported_value",
      );
    }
    const param = kind === "chat" ? "messages" : "prompt";
    const classifier = await app.catalog.classifier(model);
    const inputTokens = classifier.inputTokens(text);
    if (inputTokens === 0) throw badParam("the input has no words to classify", param);
    const account = request.account!;
    const maxCost = inferenceFee(model, inputTokens, 1);
    const reservation = await app.billing.reserve(account, maxCost);
    const started = performance.now();
    let inferenceId: string;
    let label: string;
    try {
      // After the balance check, as the engine admits adapters' requests (429 with Retry-After).
      smallModelLimiter.admit(account, 0, Date.now());
      label = (await classifier.classify(text)).label;
      const ms = Math.round(performance.now() - started);
      inferenceId = await app.inferences.persist(
        {
          modelId: model.id,
          account,
          prompt: text,
          output: label,
          inputTokens,
          outputTokens: 1,
          ttftMs: ms,
          durationMs: ms,
        },
        reservation,
      );
    } finally {
      await app.billing.release(reservation);
    }
    const id = `${kind === "chat" ? "chatcmpl" : "cmpl"}-${randomUUID()}`;
    const created = Math.floor(Date.now() / 1000);
    const usage = { prompt_tokens: inputTokens, completion_tokens: 1, total_tokens: inputTokens + 1 };
    reply.header("x-openledger-inference-id", inferenceId);
    if (body.stream === true) {
      const includeUsage = body.stream_options?.include_usage === true;
      const object = kind === "chat" ? "chat.completion.chunk" : "text_completion";
      const chunk = (delta: string | null, finish: string | null, first = false) => ({
        id,
        object,
        created,
        model: model.id,
        choices: [
          kind === "chat"
            ? {
                index: 0,
                delta: finish
                  ? {}
                  : first
                    ? { role: "assistant", content: delta ?? "" }
                    : { content: delta ?? "" },
                logprobs: null,
                finish_reason: finish,
              }
            : { index: 0, text: delta ?? "", logprobs: null, finish_reason: finish },
        ],
        ...(includeUsage ? { usage: null } : {}),
      });
      const events = [
        ...(kind === "chat" ? [chunk("", null, true)] : []),
        chunk(label, null),
        chunk(null, "stop"),
        ...(includeUsage ? [{ id, object, created, model: model.id, choices: [], usage }] : []),
      ];
      reply.hijack();
      reply.raw.writeHead(200, {
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-cache",
        connection: "keep-alive",
        "x-request-id": request.id,
        "x-openledger-inference-id": inferenceId,
      });
      reply.raw.end(`${events.map((e) => `data: ${JSON.stringify(e)}\n\n`).join("")}data: [DONE]\n\n`);
      return reply;
    }
    if (kind === "chat") {
      return {
        id,
        object: "chat.completion",
        created,
        model: model.id,
        choices: [
          {
            index: 0,
            message: { role: "assistant", content: label, refusal: null },
            logprobs: null,
            finish_reason: "stop",
          },
        ],
        usage,
      };
    }
    return {
      id,
      object: "text_completion",
      created,
      model: model.id,
      choices: [{ index: 0, text: label, logprobs: null, finish_reason: "stop" }],
      usage,
    };
  }

  app.post(
    "/v1/completions",
    { schema: { tags: ["openai"], summary: "Text completion (OpenAI-compatible)", body: CompletionBody } },
    async (request, reply) => {
      const body = request.body as z.infer<typeof CompletionBody>;
      if (body.echo) throw badParam("echo is not supported", "echo", "unsupported_value");
      const promptText = typeof body.prompt === "string" ? body.prompt : body.prompt[0]!;
      const small = await app.catalog.find(body.model);
      if (small?.kind === "small_model")
        return runSmallModel(request, reply, body, small, promptText, "completion");
      const tok = app.host.tokenizer;
      const ids = tok.encode(promptText, { addSpecialTokens: true });
      return run(request, reply, body, prepare(body, promptText, ids), "completion");
    },
  );

  app.post(
    "/v1/chat/completions",
    { schema: { tags: ["openai"], summary: "Chat completion (OpenAI-compatible)", body: ChatBody } },
    async (request, reply) => {
      const body = request.body as z.infer<typeof ChatBody>;
      const messages = body.messages.map((m) => ({
        role: m.role === "developer" ? "system" : m.role,
        content: typeof m.content === "string" ? m.content : m.content.map((c) => c.text).join(""),
      }));
      const small = await app.catalog.find(body.model);
      if (small?.kind === "small_model") {
        // A classifier labels one text: the last user message (instructions in system messages
        // would only add noise to its features). That text is what is stored and attributed.
        const last = messages.findLast((m) => m.role === "user");
        if (!last) throw badParam("a small model classifies the last user message: send one", "messages");
        return runSmallModel(request, reply, body, small, last.content, "chat");
      }
      const tok = app.host.tokenizer;
      const promptText = tok.applyChatTemplate(messages, { addGenerationPrompt: true });
      const ids = tok.encode(promptText, { addSpecialTokens: false });
      return run(request, reply, body, prepare(body, promptText, ids), "chat");
    },
  );
}
