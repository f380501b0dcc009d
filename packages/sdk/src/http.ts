import { OpenLedgerError } from "./errors.ts";

/** Progress of a long step, for bars: `done` of `total` (`total` null when unknown). */
export interface Progress {
  /** What is progressing: "upload", "validate", "index:span-index", "fine-tune", ... */
  stage: string;
  done: number;
  total: number | null;
  /** Unit of done/total: "bytes", "rows", "percent", "steps". */
  unit: string;
  /** Figures beside the count, for a bar's label (a fine-tune's loss, tokens/s, ETA). */
  detail?: string;
}
export type OnProgress = (p: Progress) => void;

export interface RequestOptions {
  body?: unknown;
  query?: Record<string, string | number | boolean | undefined>;
  headers?: Record<string, string>;
  /** Statuses that count as success (default: any 2xx). */
  expect?: readonly number[];
  signal?: AbortSignal;
}

export interface HttpResponse<T> {
  data: T;
  status: number;
  headers: Headers;
}

export interface ServiceHttpOptions {
  /** e.g. "datanets": named in errors. */
  service: string;
  baseUrl: string;
  /** Headers added to every request (the session or API key), read at each call. */
  headers?: () => Record<string, string>;
  /** Per request, unless the caller passes a signal (default 60 s; uploads are not limited). */
  timeoutMs?: number;
  fetch?: typeof fetch;
}

/** A JSON-over-HTTP client of one service: errors become OpenLedgerError with the service's {code, message}. */
export class ServiceHttp {
  readonly service: string;
  readonly baseUrl: string;
  private readonly opts: ServiceHttpOptions;

  constructor(opts: ServiceHttpOptions) {
    this.opts = opts;
    this.service = opts.service;
    this.baseUrl = opts.baseUrl.replace(/\/+$/, "");
  }

  url(path: string, query?: RequestOptions["query"]): string {
    const u = new URL(this.baseUrl + path);
    for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined) u.searchParams.set(k, String(v));
    return u.toString();
  }

  async request<T>(method: string, path: string, options: RequestOptions = {}): Promise<HttpResponse<T>> {
    const res = await this.send(method, path, options);
    const text = await res.text();
    let data: unknown;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch {
        data = text;
      }
    }
    const ok = options.expect ? options.expect.includes(res.status) : res.ok;
    if (!ok) throw errorFrom(this.service, res.status, data);
    return { data: data as T, status: res.status, headers: res.headers };
  }

  /** A request whose body the caller reads (binary files): a non-2xx answer is the service's error. */
  async stream(method: string, path: string, options: RequestOptions = {}): Promise<Response> {
    const res = await this.send(method, path, options);
    if (res.ok) return res;
    const text = await res.text();
    let data: unknown = text;
    try {
      data = JSON.parse(text);
    } catch {
      // not JSON: the text is the message
    }
    throw errorFrom(this.service, res.status, data);
  }

  private async send(method: string, path: string, options: RequestOptions): Promise<Response> {
    const headers: Record<string, string> = { ...this.opts.headers?.(), ...options.headers };
    const init: RequestInit & { duplex?: "half" } = { method, headers };
    const { body } = options;
    if (body instanceof ReadableStream) {
      init.body = body;
      init.duplex = "half"; // a streamed request body (uploads)
    } else if (body instanceof FormData) {
      init.body = body;
    } else if (body !== undefined) {
      init.body = JSON.stringify(body);
      headers["content-type"] = "application/json";
    }
    init.signal =
      options.signal ??
      (body instanceof ReadableStream ? undefined : AbortSignal.timeout(this.opts.timeoutMs ?? 60_000));
    const url = this.url(path, options.query);
    let res: Response;
    try {
      res = await (this.opts.fetch ?? fetch)(url, init);
    } catch (err) {
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      const timedOut = (err as Error).name === "TimeoutError";
      throw new OpenLedgerError(
        timedOut ? "TIMEOUT" : "UNREACHABLE",
        `${this.service} at ${this.baseUrl} ${timedOut ? "did not answer in time" : `does not answer (${cause?.code ?? cause?.message ?? (err as Error).message})`}`,
        { source: this.service },
      );
    }
    return res;
  }

  async json<T>(method: string, path: string, options?: RequestOptions): Promise<T> {
    return (await this.request<T>(method, path, options)).data;
  }
}

/**
 * The account's gateway API key as a bearer header (the gateway's and the factory's calls take it),
 * or API_KEY_REQUIRED naming what needed it.
 */
export function apiKeyAuth(apiKey: () => string | undefined, what = "this call"): Record<string, string> {
  return { authorization: `Bearer ${requireApiKey(apiKey, what)}` };
}

/** The account's gateway API key, or API_KEY_REQUIRED naming what needed it. */
export function requireApiKey(apiKey: () => string | undefined, what = "this call"): string {
  const key = apiKey();
  if (!key)
    throw new OpenLedgerError("API_KEY_REQUIRED", `${what} needs an API key (create one with keys create)`);
  return key;
}

/** The service's `{ error: { code, message, details? } }` (OpenAI-style errors have the same two keys). */
export function errorFrom(service: string, status: number, data: unknown): OpenLedgerError {
  const e = (data as { error?: { code?: unknown; message?: unknown; details?: unknown } } | undefined)?.error;
  if (e && typeof e.message === "string") {
    return new OpenLedgerError(typeof e.code === "string" && e.code ? e.code : `HTTP_${status}`, e.message, {
      status,
      details: e.details,
      source: service,
    });
  }
  return new OpenLedgerError(
    `HTTP_${status}`,
    `${service} answered ${status}${typeof data === "string" && data ? `: ${data.slice(0, 200)}` : ""}`,
    { status, source: service },
  );
}

/**
 * A multipart body as a stream that reports how much of it was read by the connection (backpressure
 * keeps that close to what was sent). Built with the platform's own FormData encoder (undici), so
 * nothing is buffered: file parts stream from disk (`fs.openAsBlob`).
 */
export function progressBody(
  form: FormData,
  totalBytes: number,
  onProgress?: OnProgress,
): { body: ReadableStream<Uint8Array>; contentType: string } {
  const encoded = new Response(form);
  const contentType = encoded.headers.get("content-type");
  if (!encoded.body || !contentType) throw new OpenLedgerError("SDK_BUG", "could not encode the form");
  let sent = 0;
  const report = (done: number) =>
    onProgress?.({ stage: "upload", done: Math.min(done, totalBytes), total: totalBytes, unit: "bytes" });
  report(0);
  const counter = new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, controller) {
      sent += chunk.byteLength;
      report(sent);
      controller.enqueue(chunk);
    },
    flush() {
      report(totalBytes);
    },
  });
  return { body: encoded.body.pipeThrough(counter), contentType };
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `fn` until it returns a value; `TIMEOUT` (naming `what`) after `timeoutMs`. */
export async function poll<T>(
  what: string,
  fn: () => Promise<T | undefined>,
  { timeoutMs = 120_000, intervalMs = 300 }: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline)
      throw new OpenLedgerError(
        "TIMEOUT",
        `timed out after ${Math.round(timeoutMs / 1000)} s waiting for ${what}`,
      );
    await sleep(intervalMs);
  }
}
