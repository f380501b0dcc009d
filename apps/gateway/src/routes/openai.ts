import { randomUUID } from "node:crypto";
import type { GatewayConfig } from "@openledger/config";
import { safeText, storableJson } from "@openledger/service-kit";
import { AccountRateLimiter } from "@openledger/serving-core";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { z } from "zod";
import { type CompletionSpec, serveCompletion } from "../lib/completion.ts";
import { classifierGeneration, engineGeneration } from "../lib/generation.ts";
import { badParam, modelNotFound, openAIError } from "../lib/openai-errors.ts";
import type {} from "../lib/request-phases.ts"; // its `declare module "fastify"` (request.phases)
import { inferenceFee } from "../plugins/billing.ts";
import type { ServableModel } from "../plugins/catalog.ts";
import type {} from "../plugins/host.ts"; // its `declare module "fastify"` (host): in every program with this file
import type {} from "../plugins/keys.ts"; // its `declare module "fastify"` (apiKeys): in every program with this file

const StopParam = z.union([z.string(), z.array(z.string()).max(4)]).nullish();
const Common = {
  // Text that reaches Postgres (the model id is looked up, prompts are stored) refuses what
  // Postgres cannot store (U+0000, lone surrogates): a 400 naming the field, never a 500.
  model: safeText().min(1).max(128),
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
export const CompletionBody = z.object({
  ...Common,
  prompt: storableJson(z.union([z.string(), z.array(z.string()).length(1)])),
  echo: z.boolean().nullish(),
});
const ChatContent = z.union([z.string(), z.array(z.object({ type: z.literal("text"), text: z.string() }))]);
export const ChatBody = z.object({
  ...Common,
  max_completion_tokens: z.number().int().min(1).nullish(),
  messages: storableJson(
    z
      .array(
        z.object({
          role: z.enum(["system", "developer", "user", "assistant"]),
          content: ChatContent,
          name: z.string().optional(),
        }),
      )
      .min(1),
  ),
});
type CommonParams = z.infer<typeof CompletionBody> | z.infer<typeof ChatBody>;
const ModelParams = z.object({ id: safeText().min(1).max(128) });

/** OpenAI's model object. */
function modelObject(m: ServableModel) {
  return {
    id: m.id,
    object: "model" as const,
    created: Math.floor(m.createdAt.getTime() / 1000),
    owned_by: m.kind === "base" ? "openledger" : m.ownerAddress,
  };
}

/** Parameters no model here supports: refused rather than silently ignored. */
function refuseUnsupported(body: CommonParams): void {
  if (body.n != null && body.n !== 1) throw badParam("only n=1 is supported", "n", "UNSUPPORTED_VALUE");
  if (body.logprobs) throw badParam("logprobs are not supported", "logprobs", "UNSUPPORTED_VALUE");
  if (body.presence_penalty || body.frequency_penalty) {
    throw badParam(
      "presence/frequency penalties are not supported",
      body.presence_penalty ? "presence_penalty" : "frequency_penalty",
      "UNSUPPORTED_VALUE",
    );
  }
}

/**
 * OpenAI-compatible routes. Everything here answers errors in OpenAI's shape (a scoped
 * error handler), so the official client parses them. Adapters, the base model and small models
 * share one completion path (`serveCompletion`); only how a generation runs differs.
 */
export async function openaiRoutes(app: FastifyInstance, { config: cfg }: { config: GatewayConfig }) {
  app.setErrorHandler((err, request, reply) => {
    const e = openAIError(err);
    if (e.status >= 500) request.log.error({ err }, "request failed");
    return reply.status(e.status).headers(e.headers).type("application/json").send(e.body);
  });
  app.addHook("onRequest", async (request) => {
    request.phases = { arrivedAt: performance.now() };
    request.account = await app.apiKeys.authenticate(request);
    request.phases.authedAt = performance.now();
  });

  // One per-account request bucket (GATEWAY_RATE_REQUESTS_PER_MIN) for every kind of model, decided
  // in memory before any database work: a burst of refusals costs no lock, no query, no connection.
  const rpm = cfg.GATEWAY_RATE_REQUESTS_PER_MIN;
  const limiter = new AccountRateLimiter(() =>
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
    async () => ({ object: "list", data: [...app.catalog.models.values()].map(modelObject) }),
  );

  app.get(
    "/v1/models/:id",
    {
      schema: {
        tags: ["openai"],
        summary: "One servable model (OpenAI's models.retrieve); 404 model_not_found otherwise",
        params: ModelParams,
      },
    },
    async (request) => {
      const { id } = request.params as z.infer<typeof ModelParams>;
      const model = await app.catalog.find(id);
      if (!model) throw modelNotFound(id);
      return modelObject(model);
    },
  );

  /** A request on the engine (base model or adapter): limits checked, then the shared path. */
  function onEngine(
    request: FastifyRequest,
    reply: FastifyReply,
    body: CommonParams,
    model: ServableModel,
    kind: "chat" | "completion",
    promptText: string,
    promptTokens: number[],
  ) {
    refuseUnsupported(body);
    const maxTokens =
      ("max_completion_tokens" in body ? body.max_completion_tokens : undefined) ??
      body.max_tokens ??
      (kind === "chat" ? cfg.GATEWAY_MAX_NEW_TOKENS : 16);
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
        kind === "chat" ? "messages" : "prompt",
        "CONTEXT_LENGTH_EXCEEDED",
      );
    }
    const ctxMax = app.host.model.config.maxPositionEmbeddings;
    if (promptTokens.length + maxTokens > ctxMax) {
      throw badParam(
        `prompt (${promptTokens.length}) + max_tokens (${maxTokens}) exceeds the context length ${ctxMax}`,
        "max_tokens",
        "CONTEXT_LENGTH_EXCEEDED",
      );
    }
    const stop = body.stop == null ? [] : typeof body.stop === "string" ? [body.stop] : body.stop;
    const sampling = {
      temperature: body.temperature ?? 1,
      topP: body.top_p ?? 1,
      seed: body.seed ?? randomUUID(),
    };
    limiter.admit(request.account!, 0, Date.now());
    if (request.phases) request.phases.foundAt = performance.now();
    return serveCompletion(app, request, reply, {
      ...specOf(request, body, model, kind, promptText),
      maxCost: inferenceFee(model, promptTokens.length, maxTokens),
      inputTokens: promptTokens.length,
      start: (inferenceId) =>
        engineGeneration(app.host, {
          id: inferenceId,
          account: request.account!,
          adapterId: model.kind === "adapter" ? model.id : null,
          promptTokens,
          maxTokens,
          stop,
          sampling,
        }),
    });
  }

  /**
   * A small model answers its predicted label as the completion. It is a classifier, so usage is
   * defined for it as: prompt_tokens = words the featurizer reads (what the prediction is computed
   * from), completion_tokens = 1 (the label). Those are the numbers stored with the inference and
   * priced by settlement. Sampling settings do not apply (the answer is the arg-max class).
   */
  async function onSmallModel(
    request: FastifyRequest,
    reply: FastifyReply,
    body: CommonParams,
    model: ServableModel,
    kind: "chat" | "completion",
    text: string,
  ) {
    refuseUnsupported(body);
    if (body.stop != null && (typeof body.stop === "string" || body.stop.length > 0)) {
      throw badParam(
        "a small model answers one label: stop sequences do not apply",
        "stop",
        "UNSUPPORTED_VALUE",
      );
    }
    const classifier = await app.catalog.classifier(model);
    const inputTokens = classifier.inputTokens(text);
    if (inputTokens === 0)
      throw badParam("the input has no words to classify", kind === "chat" ? "messages" : "prompt");
    limiter.admit(request.account!, 0, Date.now());
    return serveCompletion(app, request, reply, {
      ...specOf(request, body, model, kind, text),
      maxCost: inferenceFee(model, inputTokens, 1),
      inputTokens,
      start: () => classifierGeneration(classifier, text),
    });
  }

  function specOf(
    request: FastifyRequest,
    body: CommonParams,
    model: ServableModel,
    kind: "chat" | "completion",
    promptText: string,
  ): Omit<CompletionSpec, "maxCost" | "inputTokens" | "start"> {
    return {
      kind,
      model,
      account: request.account!,
      promptText,
      stream: body.stream === true,
      includeUsage: body.stream === true && body.stream_options?.include_usage === true,
      errorBody: (err) => openAIError(err).body.error,
    };
  }

  app.post(
    "/v1/completions",
    { schema: { tags: ["openai"], summary: "Text completion (OpenAI-compatible)", body: CompletionBody } },
    async (request, reply) => {
      if (request.phases) request.phases.handlerAt = performance.now();
      const body = request.body as z.infer<typeof CompletionBody>;
      if (body.echo) throw badParam("echo is not supported", "echo", "UNSUPPORTED_VALUE");
      const promptText = typeof body.prompt === "string" ? body.prompt : body.prompt[0]!;
      const model = await app.catalog.find(body.model);
      if (!model) throw modelNotFound(body.model);
      if (model.kind === "small_model")
        return onSmallModel(request, reply, body, model, "completion", promptText);
      const ids = app.host.tokenizer.encode(promptText, { addSpecialTokens: true });
      return onEngine(request, reply, body, model, "completion", promptText, ids);
    },
  );

  app.post(
    "/v1/chat/completions",
    { schema: { tags: ["openai"], summary: "Chat completion (OpenAI-compatible)", body: ChatBody } },
    async (request, reply) => {
      if (request.phases) request.phases.handlerAt = performance.now();
      const body = request.body as z.infer<typeof ChatBody>;
      const messages = body.messages.map((m) => ({
        role: m.role === "developer" ? "system" : m.role,
        content: typeof m.content === "string" ? m.content : m.content.map((c) => c.text).join(""),
      }));
      const model = await app.catalog.find(body.model);
      if (!model) throw modelNotFound(body.model);
      if (model.kind === "small_model") {
        // A classifier labels one text: the last user message (instructions in system messages
        // would only add noise to its features). That text is what is stored and attributed.
        const last = messages.findLast((m) => m.role === "user");
        if (!last) throw badParam("a small model classifies the last user message: send one", "messages");
        return onSmallModel(request, reply, body, model, "chat", last.content);
      }
      const tok = app.host.tokenizer;
      const promptText = tok.applyChatTemplate(messages, { addGenerationPrompt: true });
      const ids = tok.encode(promptText, { addSpecialTokens: false });
      return onEngine(request, reply, body, model, "chat", promptText, ids);
    },
  );
}
