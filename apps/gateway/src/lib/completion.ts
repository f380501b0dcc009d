import { randomUUID } from "node:crypto";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { ServableModel } from "../plugins/catalog.ts";
import type {} from "../plugins/host.ts"; // its `declare module "fastify"` (requestPhases)
import type {} from "../plugins/inferences.ts"; // its `declare module "fastify"` (inferences): in every program with this file
import type { Generation, GenerationOutcome } from "./generation.ts";
import { SseStream } from "./sse.ts";

/** The header every completion response carries, streamed or not: the id of its billed inference. */
export const INFERENCE_ID_HEADER = "x-openledger-inference-id";

export interface CompletionSpec {
  kind: "chat" | "completion";
  model: ServableModel;
  account: string;
  /** What is stored as the inference's prompt (the rendered chat, the completion prompt, the text classified). */
  promptText: string;
  /** The most this request can cost (its reservation). */
  maxCost: bigint;
  /** Billable input tokens (what a cut stream records with the tokens it delivered). */
  inputTokens: number;
  stream: boolean;
  includeUsage: boolean;
  /** Starts the generation (after the reservation); may throw a refusal before anything runs. */
  start(inferenceId: string): Generation;
  /** Converts an error to OpenAI's error object (for an error event inside a stream). */
  errorBody(err: unknown): unknown;
}

type Usage = { prompt_tokens: number; completion_tokens: number; total_tokens: number };

/**
 * The one path of every completion, for adapters, the base model and small models alike:
 * reserve the max cost → run → record what was delivered → release. Streamed or not, the response
 * carries its inference id (`x-openledger-inference-id`; also the suffix of the OpenAI `id`).
 *
 * Billing: a generation that finishes is billed as its usage says (all generated tokens). A stream
 * cut by the client, an engine error or a failed write is billed for the tokens whose text was
 * sent (`Generation.tokensWithin`); a non-streamed answer that never went out bills nothing.
 * A stream always ends: with its final chunks and `[DONE]`, or with an `error` event.
 */
/**
 * The most text one write-ahead of a stream covers beyond what was already sent: the bound on what
 * a client can be billed and never receive when its replica dies mid-stream (crash.test.ts).
 */
export const MAX_UNSENT_CHARS = 64;

const isHighSurrogate = (c: number) => c >= 0xd800 && c <= 0xdbff;

export async function serveCompletion(
  app: FastifyInstance,
  request: FastifyRequest,
  reply: FastifyReply,
  spec: CompletionSpec,
): Promise<unknown> {
  const inferenceId = randomUUID();
  const id = `${spec.kind === "chat" ? "chatcmpl" : "cmpl"}-${inferenceId}`;
  const created = Math.floor(Date.now() / 1000);
  const phases = request.phases;
  const balance = await app.billing.balance(spec.account);
  if (phases) phases.balanceAt = performance.now();
  const reservation = await app.billing.reserveWithin(
    {
      id: inferenceId,
      account: spec.account,
      maxCost: spec.maxCost,
      model: spec.model,
      prompt: spec.promptText,
      inputTokens: spec.inputTokens,
    },
    balance,
  );
  if (phases) phases.reservedAt = performance.now();
  let generation: Generation;
  try {
    generation = spec.start(inferenceId);
  } catch (err) {
    await app.billing.release(reservation);
    throw err;
  }
  if (phases) {
    phases.submittedAt = performance.now();
    app.requestPhases.observe(inferenceId, phases);
  }
  // The client went away before the response ended: cancel (frees the slot pin, KV and budget).
  const onClose = () => {
    if (!reply.raw.writableFinished) generation.cancel();
  };
  reply.raw.on("close", onClose);

  /** Records the inference (delivered tokens of a cut one); releases the reservation if nothing is. */
  const record = async (outcome: GenerationOutcome, delivered: { tokens: number; text: string }) => {
    try {
      if (delivered.tokens === 0 && outcome.status !== "finished") return false;
      await app.inferences.persist(
        {
          id: inferenceId,
          modelId: spec.model.id,
          account: spec.account,
          prompt: spec.promptText,
          output: delivered.text,
          inputTokens: spec.inputTokens,
          outputTokens: delivered.tokens,
          ttftMs: outcome.ttftMs,
          durationMs: outcome.durationMs,
        },
        reservation,
      );
      return true;
    } finally {
      // Nothing recorded (cancelled before any token, error, failed write): drop the reservation.
      await app.billing.release(reservation);
    }
  };
  const usageOf = (o: GenerationOutcome): Usage => ({
    prompt_tokens: o.promptTokens,
    completion_tokens: o.completionTokens,
    total_tokens: o.promptTokens + o.completionTokens,
  });

  if (!spec.stream) {
    let failure: unknown;
    try {
      for await (const _ of generation) {
        // Collected by the generation itself (outcome().text).
      }
    } catch (err) {
      failure = err;
    } finally {
      reply.raw.off("close", onClose);
    }
    const outcome = await generation.outcome();
    if (outcome.status !== "finished" || failure !== undefined) {
      await app.billing.release(reservation);
      if (outcome.status === "cancelled") return reply; // nobody to answer
      throw outcome.error ?? failure;
    }
    await record(outcome, { tokens: outcome.completionTokens, text: outcome.text });
    reply.header(INFERENCE_ID_HEADER, inferenceId);
    const choice =
      spec.kind === "chat"
        ? {
            index: 0,
            message: { role: "assistant", content: outcome.text, refusal: null },
            logprobs: null,
            finish_reason: outcome.finishReason,
          }
        : { index: 0, text: outcome.text, logprobs: null, finish_reason: outcome.finishReason };
    return {
      id,
      object: spec.kind === "chat" ? "chat.completion" : "text_completion",
      created,
      model: spec.model.id,
      choices: [choice],
      usage: usageOf(outcome),
    };
  }

  const sse = new SseStream(reply, { "x-request-id": request.id, [INFERENCE_ID_HEADER]: inferenceId });
  const object = spec.kind === "chat" ? "chat.completion.chunk" : "text_completion";
  const chunk = (text: string | null, finish: string | null, first = false) => ({
    id,
    object,
    created,
    model: spec.model.id,
    choices: [
      spec.kind === "chat"
        ? {
            index: 0,
            delta: finish ? {} : first ? { role: "assistant", content: text ?? "" } : { content: text ?? "" },
            logprobs: null,
            finish_reason: finish,
          }
        : { index: 0, text: text ?? "", logprobs: null, finish_reason: finish },
    ],
    ...(spec.includeUsage ? { usage: null } : {}),
  });
  let sent = "";
  // The first event goes out with the first token, whether or not its text can be sent yet (chat:
  // the role; a completion: empty text): the decoder holds back an incomplete UTF-8 character,
  // text that may become a stop string and special tokens, and a client must not wait for that
  // to learn that its generation runs. It carries no text, so nothing is billed for it.
  const open = () => {
    if (sse.opened) return;
    sse.open();
    sse.send(spec.kind === "chat" ? chunk("", null, true) : chunk("", null));
    if (phases) phases.firstSentAt = performance.now();
  };
  // Write-ahead: what is about to be sent is first written to the reservation row (with the tokens
  // it covers), so a replica that dies mid-stream leaves a bill for every token the client got.
  // Pieces arriving while a write is in flight go out together after it, at most
  // MAX_UNSENT_CHARS per write: that bounds what a replica dying between a write and its send can
  // bill beyond what the client received, however far a slow database lets the queue grow.
  let queued = "";
  let pumping: Promise<void> | undefined;
  let progressFailed: unknown;
  const pump = async () => {
    while (queued.length > 0 && progressFailed === undefined && !sse.closed) {
      let n = Math.min(queued.length, MAX_UNSENT_CHARS);
      // Never split a surrogate pair between two pieces.
      if (n < queued.length && isHighSurrogate(queued.charCodeAt(n - 1))) n--;
      const piece = queued.slice(0, n);
      queued = queued.slice(n);
      const text = sent + piece;
      await app.inferences.progress(reservation, text, generation.tokensWithin(text.length));
      if (sse.send(chunk(piece, null))) sent = text;
    }
  };
  const send = (piece: string) => {
    queued += piece;
    pumping ??= pump()
      .catch((err: unknown) => {
        // Nothing more may be sent unbilled: stop the generation, end the stream with an error.
        progressFailed = err;
        generation.cancel();
      })
      .finally(() => {
        pumping = undefined;
      });
  };
  try {
    let failure: unknown;
    try {
      for await (const piece of generation) {
        open();
        if (piece.length > 0) send(piece);
      }
      while (pumping) await pumping;
      if (queued.length > 0 && progressFailed === undefined) {
        send("");
        while (pumping) await pumping;
      }
      if (progressFailed !== undefined) failure = progressFailed;
    } catch (err) {
      failure = err;
    } finally {
      reply.raw.off("close", onClose);
    }
    const outcome = await generation.outcome();
    const finished =
      outcome.status === "finished" && failure === undefined && !sse.closed && sent === outcome.text;
    if (!sse.opened && !finished) {
      // Nothing was sent: an ordinary HTTP error (or nobody left to answer).
      await app.billing.release(reservation);
      if (outcome.status === "cancelled" || sse.closed) return reply;
      throw outcome.error ?? failure;
    }
    if (finished) {
      await record(outcome, { tokens: outcome.completionTokens, text: outcome.text });
      open();
      sse.send(chunk(null, outcome.finishReason));
      if (spec.includeUsage)
        sse.send({ id, object, created, model: spec.model.id, choices: [], usage: usageOf(outcome) });
      sse.done();
      return reply;
    }
    // Cut: billed for what was delivered, then an error event if anyone is still listening.
    await record(outcome, { tokens: generation.tokensWithin(sent.length), text: sent });
    if (!sse.closed) sse.fail(spec.errorBody(outcome.error ?? failure));
    return reply;
  } catch (err) {
    request.log.error({ err, inferenceId }, "streamed completion failed");
    sse.close(spec.errorBody(err));
    if (!sse.opened) throw err;
    return reply;
  }
}
