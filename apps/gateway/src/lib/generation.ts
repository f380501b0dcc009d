import type { CompletionResult, RequestHandle } from "@openledger/serving-core";
import { OutputText } from "./decoder.ts";
import type { ModelHost } from "./model-host.ts";
import type { LoadedSmallModel } from "./small-models.ts";

/** How a generation ended. */
export interface GenerationOutcome {
  /** finished = ran to its end (stop or length); cancelled = the client left; failed = an error. */
  status: "finished" | "cancelled" | "failed";
  finishReason: "stop" | "length";
  error?: unknown;
  promptTokens: number;
  /** Output tokens generated (what a finished generation is billed for, as its usage says). */
  completionTokens: number;
  /** The whole output text (stop strings cut). */
  text: string;
  ttftMs: number | null;
  durationMs: number | null;
}

/**
 * One running generation, the same for every kind of model: iterate it for the text that may be
 * sent now (one piece per step, possibly empty; ends when the generation ends, throws on an error),
 * cancel it when the client leaves, then read its outcome.
 */
export interface Generation extends AsyncIterable<string> {
  cancel(): void;
  outcome(): Promise<GenerationOutcome>;
  /** Output tokens whose text lies within the first `chars` characters (a cut stream's bill). */
  tokensWithin(chars: number): number;
}

export interface EngineRequest {
  id: string;
  account: string;
  adapterId: string | null;
  promptTokens: number[];
  maxTokens: number;
  stop: string[];
  sampling: { temperature: number; topP: number; seed: number | string };
}

/**
 * A request on the engine (base model or an adapter): tokens are decoded incrementally, stop
 * strings end it early (`engine.stop`), and text that could still become a stop string or an
 * incomplete character is held back until it is decided. `submit` throws the engine's refusals
 * (queue full, prompt too long) before anything runs.
 */
export function engineGeneration(host: ModelHost, req: EngineRequest): Generation {
  const handle: RequestHandle = host.engine.submit({
    id: req.id,
    account: req.account,
    adapterId: req.adapterId,
    promptTokens: req.promptTokens,
    maxNewTokens: req.maxTokens,
    stopTokenIds: host.tokenizer.eosTokenIds,
    context: { sampling: req.sampling },
  });
  const out = new OutputText(host.tokenizer, req.stop);
  let streamed = 0;
  const take = () => {
    const upto = out.streamableLength();
    const piece = upto > streamed ? out.text.slice(streamed, upto) : "";
    streamed = Math.max(streamed, upto);
    return piece;
  };
  return {
    async *[Symbol.asyncIterator]() {
      for await (const token of handle) {
        if (out.stopped) continue;
        if (out.push(token).stopped) host.engine.stop(req.id);
        yield take();
      }
      // The end: everything left, held-back text included (it can no longer become a stop string).
      out.finish();
      const rest = out.text.slice(streamed);
      streamed = out.text.length;
      yield rest;
    },
    cancel: () => handle.cancel(),
    async outcome() {
      const r: CompletionResult = await handle.result;
      out.finish();
      const t = r.timings;
      return {
        status: r.reason === "cancelled" ? "cancelled" : r.reason === "error" ? "failed" : "finished",
        finishReason: out.stopped || r.reason === "stop" ? "stop" : "length",
        ...(r.error ? { error: r.error } : {}),
        promptTokens: r.promptTokens,
        completionTokens: r.completionTokens,
        text: out.text,
        ttftMs: t.firstTokenAt !== undefined ? Math.round(t.firstTokenAt - t.queuedAt) : null,
        durationMs: t.finishedAt !== undefined ? Math.round(t.finishedAt - t.queuedAt) : null,
      };
    },
    tokensWithin: (chars) => out.tokensWithin(chars),
  };
}

/**
 * A small model: the answer is the predicted label, one piece. Usage of a classifier:
 * prompt tokens = the words the featurizer reads, completion tokens = 1 (the label).
 */
export function classifierGeneration(classifier: LoadedSmallModel, text: string): Generation {
  const started = performance.now();
  const promptTokens = classifier.inputTokens(text);
  let label: string | undefined;
  let error: unknown;
  let cancelled = false;
  const run = classifier.classify(text).then(
    (c) => {
      label = c.label;
    },
    (err: unknown) => {
      error = err;
    },
  );
  return {
    async *[Symbol.asyncIterator]() {
      await run;
      if (error !== undefined) throw error;
      if (!cancelled) yield label!;
    },
    cancel: () => {
      cancelled = true;
    },
    async outcome() {
      await run;
      const ms = Math.round(performance.now() - started);
      return {
        status: error !== undefined ? "failed" : cancelled ? "cancelled" : "finished",
        finishReason: "stop",
        ...(error !== undefined ? { error } : {}),
        promptTokens,
        completionTokens: label === undefined ? 0 : 1,
        text: label ?? "",
        ttftMs: ms,
        durationMs: ms,
      };
    },
    tokensWithin: (chars) => (label !== undefined && chars >= label.length ? 1 : 0),
  };
}
