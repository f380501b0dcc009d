/**
 * Everything a submission body can arrive as: a Node Readable (async iterable of Buffers), a WHATWG
 * ReadableStream (fetch/undici bodies), any async iterable of chunks, or an in-memory string/bytes.
 */
export type ByteSource =
  | AsyncIterable<Uint8Array | string>
  | Iterable<Uint8Array | string>
  | ReadableStream<Uint8Array>
  | Uint8Array
  | string;

const encoder = new TextEncoder();

function toBytes(chunk: Uint8Array | string): Uint8Array {
  return typeof chunk === "string" ? encoder.encode(chunk) : chunk;
}

function isWebStream(source: unknown): source is ReadableStream<Uint8Array> {
  return typeof (source as ReadableStream | null)?.getReader === "function";
}

/** Yields the source as byte chunks without buffering more than one chunk. */
export async function* byteChunks(source: ByteSource): AsyncGenerator<Uint8Array> {
  if (typeof source === "string" || source instanceof Uint8Array) {
    yield toBytes(source);
    return;
  }
  if (isWebStream(source)) {
    const reader = source.getReader();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return;
        if (value !== undefined) yield toBytes(value);
      }
    } finally {
      // Stops the producer when we bail out early (size limit, bad byte): no reading to the end.
      await reader.cancel().catch(() => {});
      reader.releaseLock();
    }
  }
  for await (const chunk of source as AsyncIterable<Uint8Array | string>) yield toBytes(chunk);
}
