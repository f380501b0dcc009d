import type { FastifyReply } from "fastify";

/**
 * A server-sent-events response in OpenAI's streaming format: `data: <json>\n\n` events, then
 * `data: [DONE]`, or an `error` event and the end. Opened lazily (the first event sends the
 * headers), so a failure before it is still an ordinary HTTP error. Whoever opens one must end
 * it: `close()` in a `finally` ends a stream that neither `done()` nor `fail()` ended, so no
 * response ever hangs.
 */
export class SseStream {
  #opened = false;
  #ended = false;

  constructor(
    private readonly reply: FastifyReply,
    private readonly headers: Record<string, string>,
  ) {}

  get opened(): boolean {
    return this.#opened;
  }

  /** The client is gone (or the stream ended): nothing more can be delivered. */
  get closed(): boolean {
    return this.#ended || this.reply.raw.destroyed || this.reply.raw.writableEnded;
  }

  open(): void {
    if (this.#opened) return;
    this.#opened = true;
    this.reply.hijack();
    this.reply.raw.writeHead(200, {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-cache",
      connection: "keep-alive",
      ...this.headers,
    });
  }

  /** Writes one event; false when the client is gone (nothing was delivered). */
  send(event: unknown): boolean {
    this.open();
    if (this.closed) return false;
    this.reply.raw.write(`data: ${JSON.stringify(event)}\n\n`);
    return true;
  }

  /** The normal end: `data: [DONE]`. */
  done(): void {
    this.open();
    if (!this.closed) this.reply.raw.end("data: [DONE]\n\n");
    this.#ended = true;
  }

  /** An error after the headers went out: one `error` event, then the end (no [DONE]). */
  fail(error: unknown): void {
    if (!this.#opened) throw new Error("fail() on a stream that never opened: answer an HTTP error instead");
    if (!this.closed) this.reply.raw.end(`data: ${JSON.stringify({ error })}\n\n`);
    this.#ended = true;
  }

  /** Ends an opened stream that is still open (a safety net for `finally`). */
  close(error: unknown): void {
    if (this.#opened && !this.#ended) this.fail(error);
  }
}
