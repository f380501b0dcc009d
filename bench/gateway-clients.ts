/**
 * The bench's HTTP clients (bench/gateway.ts), runnable on a worker thread: closed-loop streaming
 * `/v1/completions` clients, TTFT measured client-side. On their own thread they do not share the
 * gateway's event loop, so the loop delay the bench reports is the gateway's own (a deployed
 * gateway does not host its clients); `--clients-in-process` runs them on the gateway's thread.
 */
import { parentPort } from "node:worker_threads";

export interface DriveLoad {
  clients: number;
  requests: number;
  maxTokens: number;
}

export interface ClientRequest {
  id: string;
  model: string;
  /** Request sent -> first bytes of the response body (the first SSE event). */
  ttftMs: number;
  /** Request sent -> first event carrying non-empty text (-1: none did). */
  firstTextMs: number;
  totalMs: number;
  /** Tokens the request generated (the stream's usage). */
  completionTokens: number;
  /** The start of the streamed text (JSON-escaped by the log), to tell held-back or empty outputs. */
  head: string;
}

export interface LoadResult {
  tokens: number;
  seconds: number;
  ttfts: number[];
  /** The three requests with the longest TTFT, slowest first: model, TTFT, total (for the slowest-requests log). */
  slow: { model: string; ttftMs: number; totalMs: number }[];
  /** Every request: its inference id (the gateway's `x-openledger-inference-id`), to join with the gateway's own timings. */
  requests: ClientRequest[];
  errors: number;
  /** The first few failures (status and body). */
  failures: string[];
}

/** Closed loop: `clients` streaming clients, `requests` in total, the i-th request for `models[i]`. */
export async function drive(
  baseURL: string,
  keys: string[],
  load: DriveLoad,
  models: string[],
): Promise<LoadResult> {
  let issued = 0;
  let tokens = 0;
  let errors = 0;
  const failures: string[] = [];
  const ttfts: number[] = [];
  const slow: LoadResult["slow"] = [];
  const requests: ClientRequest[] = [];
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: load.clients }, async (_, c) => {
      while (issued < load.requests) {
        const i = issued++;
        const start = performance.now();
        const model = models[i]!;
        let ttft = 0;
        const res = await fetch(`${baseURL}/v1/completions`, {
          method: "POST",
          headers: { "content-type": "application/json", authorization: `Bearer ${keys[c % keys.length]}` },
          body: JSON.stringify({
            model,
            prompt: `Note ${i % 100}:`,
            max_tokens: load.maxTokens,
            temperature: 0,
            stream: true,
            stream_options: { include_usage: true },
          }),
        });
        if (!res.ok || !res.body) {
          errors++;
          if (failures.length < 5) failures.push(`${res.status} ${await res.text()}`);
          continue;
        }
        let first = true;
        let firstText = -1;
        let head = "";
        let completionTokens = 0;
        let buf = "";
        const decoder = new TextDecoder();
        for await (const part of res.body) {
          if (first) {
            ttft = performance.now() - start;
            ttfts.push(ttft);
            first = false;
          }
          buf += decoder.decode(part as Uint8Array, { stream: true });
          let at = buf.indexOf("\n\n");
          while (at >= 0) {
            const line = buf.slice(0, at);
            buf = buf.slice(at + 2);
            if (line.startsWith("data: {")) {
              const event = JSON.parse(line.slice(6)) as {
                usage?: { completion_tokens: number } | null;
                choices?: { text?: string }[];
              };
              if (event.usage) {
                tokens += event.usage.completion_tokens;
                completionTokens = event.usage.completion_tokens;
              }
              const text = event.choices?.[0]?.text ?? "";
              if (text.length > 0 && firstText < 0) firstText = performance.now() - start;
              if (head.length < 24) head += text.slice(0, 24 - head.length);
            }
            at = buf.indexOf("\n\n");
          }
        }
        const totalMs = performance.now() - start;
        slow.push({ model, ttftMs: ttft, totalMs });
        requests.push({
          id: res.headers.get("x-openledger-inference-id") ?? "",
          model,
          ttftMs: ttft,
          firstTextMs: firstText,
          totalMs,
          completionTokens,
          head,
        });
      }
    }),
  );
  slow.sort((x, y) => y.ttftMs - x.ttftMs);
  return {
    tokens,
    seconds: (performance.now() - t0) / 1000,
    ttfts,
    slow: slow.slice(0, 3),
    requests,
    errors,
    failures,
  };
}

export interface DriveRequest {
  id: number;
  baseURL: string;
  keys: string[];
  load: DriveLoad;
  models: string[];
}

// On a worker thread (gateway-clients-entry.cjs): one drive per message, answered with its result.
parentPort?.on("message", (msg: DriveRequest) => {
  drive(msg.baseURL, msg.keys, msg.load, msg.models).then(
    (result) => parentPort!.postMessage({ id: msg.id, result }),
    (err: unknown) => parentPort!.postMessage({ id: msg.id, error: String((err as Error)?.stack ?? err) }),
  );
});
