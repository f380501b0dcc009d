import { createHash } from "node:crypto";
import { openAsBlob } from "node:fs";
import { stat } from "node:fs/promises";
import { basename, join } from "node:path";
import { adapterFetchHeaders } from "@openledger/chain";
import type * as api from "@openledger/gateway/api";
import type OpenAI from "openai";
import type { LocalAccount } from "viem";
import type { z } from "zod";
import type { BodyOf, ReplyOf } from "./contract.ts";
import { enc } from "./datanets.ts";
import { OpenLedgerError } from "./errors.ts";
import {
  apiKeyAuth,
  errorFrom,
  type OnProgress,
  poll,
  progressBody,
  requireApiKey,
  type ServiceHttp,
} from "./http.ts";

export type ApiKeyRequest = BodyOf<typeof api.CreateApiKeyRoute>;
export type ApiKey = ReplyOf<typeof api.CreateApiKeyRoute, 201>;
export type Adapter = ReplyOf<typeof api.UploadAdapterRoute, 201>;
export type AdapterDetail = ReplyOf<typeof api.GetAdapterRoute>;
export type AdapterList = ReplyOf<typeof api.ListAdaptersRoute>;
export type SmallModelInput = BodyOf<typeof api.RegisterSmallModelRoute>;
export type SmallModel = ReplyOf<typeof api.RegisterSmallModelRoute, 201>;
export type SmallModelDetail = ReplyOf<typeof api.GetSmallModelRoute>;
export type SmallModelList = ReplyOf<typeof api.ListSmallModelsRoute>;
export type AdapterFileRequest = z.input<typeof api.AdapterFileParams>;
export type ChatRequest = z.input<typeof api.ChatBody>;
export type CompletionRequest = z.input<typeof api.CompletionBody>;

/**
 * Adapter files (PEFT): a folder holding adapter_config.json + adapter_model.safetensors, the two
 * paths, one .tar/.tar.gz holding both, or the two in memory.
 */
export type AdapterFiles =
  | { dir: string }
  | { config: string; weights: string }
  | { archive: string }
  | { adapterConfig: unknown; safetensors: Uint8Array };

export interface AdapterUpload {
  /** Model id clients will pass as `model` (default: derived from the content hash). */
  id?: string;
  files: AdapterFiles;
  priceInPer1kWei: bigint;
  priceOutPer1kWei: bigint;
  /** The published datanet versions it was trained on (its lineage; attribution indexes them). */
  datanetVersionIds?: readonly string[];
}

/** A chat or completion answer with the id the platform bills, attributes and settles it under. */
export interface Answered<T> {
  inferenceId: string;
  data: T;
}

/** The OpenLoRA gateway: API keys, adapters, small models, and OpenAI-compatible inference. */
export class GatewayClient {
  constructor(
    private readonly http: ServiceHttp,
    private readonly apiKey: () => string | undefined,
  ) {}

  /** Sends a request the account signed (see `signApiKeyRequest` in @openledger/chain); the key is shown once. */
  createApiKey(request: ApiKeyRequest): Promise<ApiKey> {
    return this.http.json("POST", "/v1/api-keys", { body: request, expect: [201] });
  }

  private auth(): Record<string, string> {
    return apiKeyAuth(this.apiKey);
  }

  /** Uploads and registers a LoRA adapter, streamed from disk; `onProgress` gets the bytes sent. */
  async uploadAdapter(upload: AdapterUpload, opts: { onProgress?: OnProgress } = {}): Promise<Adapter> {
    const form = new FormData();
    if (upload.id) form.append("id", upload.id);
    form.append("price_in_per_1k_wei", upload.priceInPer1kWei.toString());
    form.append("price_out_per_1k_wei", upload.priceOutPer1kWei.toString());
    if (upload.datanetVersionIds?.length)
      form.append("datanet_version_ids", upload.datanetVersionIds.join(","));
    let total = 0;
    const addPath = async (field: string, path: string, name = basename(path)) => {
      const s = await stat(path).catch(() => null);
      if (!s?.isFile()) throw new OpenLedgerError("FILE_NOT_FOUND", `no file at ${path}`);
      form.append(field, await openAsBlob(path), name);
      total += s.size;
    };
    const f = upload.files;
    if ("dir" in f) {
      await addPath("adapter_config", join(f.dir, "adapter_config.json"));
      await addPath("adapter_model", join(f.dir, "adapter_model.safetensors"));
    } else if ("archive" in f) {
      await addPath("adapter", f.archive);
    } else if ("config" in f) {
      await addPath("adapter_config", f.config, "adapter_config.json");
      await addPath("adapter_model", f.weights, "adapter_model.safetensors");
    } else {
      const cfg = new Blob([JSON.stringify(f.adapterConfig)]);
      const weights = new Blob([Buffer.from(f.safetensors)]);
      form.append("adapter_config", cfg, "adapter_config.json");
      form.append("adapter_model", weights, "adapter_model.safetensors");
      total += cfg.size + weights.size;
    }
    const { body, contentType } = progressBody(form, total, opts.onProgress);
    return this.http.json("POST", "/v1/adapters", {
      body,
      headers: { ...this.auth(), "content-type": contentType },
      expect: [201],
    });
  }
  async adapters(): Promise<AdapterList> {
    return this.http.json("GET", "/v1/adapters", { headers: this.auth() });
  }
  async adapter(id: string): Promise<AdapterDetail> {
    return this.http.json("GET", `/v1/adapters/${enc(id)}`, { headers: this.auth() });
  }
  async retireAdapter(id: string): Promise<ReplyOf<typeof api.RetireAdapterRoute>> {
    return this.http.json("DELETE", `/v1/adapters/${enc(id)}`, { headers: this.auth() });
  }

  /**
   * A registered adapter's file by content hash, for a validator: `validator` (an active validator's key)
   * signs the request; anyone else gets 401/403. The bytes are checked against the gateway's
   * x-content-sha256; check the two files against the content hash (`adapterContentHash` in
   * @openledger/model-runtime) before using them.
   */
  async adapterFile(
    request: AdapterFileRequest,
    validator: LocalAccount,
    opts: { signal?: AbortSignal } = {},
  ): Promise<{ bytes: Uint8Array; sha256: string }> {
    const res = await this.http.stream(
      "GET",
      `/v1/adapter-files/${enc(request.contentHash)}/${enc(request.file)}`,
      {
        headers: await adapterFetchHeaders(validator, request.contentHash, this.http.baseUrl),
        signal: opts.signal ?? AbortSignal.timeout(10 * 60_000),
      },
    );
    const bytes = new Uint8Array(await res.arrayBuffer());
    const sha256 = createHash("sha256").update(bytes).digest("hex");
    const declared = res.headers.get("x-content-sha256");
    if (declared && declared !== sha256) {
      throw new OpenLedgerError(
        "CORRUPT_DOWNLOAD",
        `${request.file}: received bytes hash to ${sha256}, not ${declared}`,
        {
          source: "gateway",
        },
      );
    }
    return { bytes, sha256 };
  }

  /** Registers a version's influence model as a small model (owner, or a builder the owner approved). */
  async registerSmallModel(input: SmallModelInput): Promise<SmallModel> {
    return this.http.json("POST", "/v1/small-models", { body: input, headers: this.auth(), expect: [201] });
  }
  /** Same, retrying while the influence model is still being built (409 INFLUENCE_MODEL_NOT_READY). */
  registerSmallModelWhenReady(
    input: SmallModelInput,
    opts: { timeoutMs?: number } = {},
  ): Promise<SmallModel> {
    return poll(
      `the influence model of ${input.datanet_version_id}`,
      () =>
        this.registerSmallModel(input).catch((err: unknown) => {
          if (err instanceof OpenLedgerError && err.code === "INFLUENCE_MODEL_NOT_READY") return undefined;
          throw err;
        }),
      { timeoutMs: opts.timeoutMs ?? 120_000, intervalMs: 1000 },
    );
  }
  async smallModels(): Promise<SmallModelList> {
    return this.http.json("GET", "/v1/small-models", { headers: this.auth() });
  }
  async smallModel(id: string): Promise<SmallModelDetail> {
    return this.http.json("GET", `/v1/small-models/${enc(id)}`, { headers: this.auth() });
  }
  async retireSmallModel(id: string): Promise<ReplyOf<typeof api.RetireSmallModelRoute>> {
    return this.http.json("DELETE", `/v1/small-models/${enc(id)}`, { headers: this.auth() });
  }

  /** Readiness and the base model (its id and Llama config). */
  status(): Promise<{ status: string; baseModel: { id: string; contentHash: string; config: unknown } }> {
    return this.http.json("GET", "/status");
  }

  /** The official `openai` client pointed at this gateway with the API key (what builders already use). */
  async openai(): Promise<OpenAI> {
    const key = requireApiKey(this.apiKey);
    // Loaded on first use: most commands never need it.
    const { default: Client } = await import("openai");
    return new Client({ baseURL: `${this.http.baseUrl}/v1`, apiKey: key, maxRetries: 0 });
  }

  /** A chat completion (not streamed) and its inference id. */
  async chat(request: ChatRequest & { stream?: false | null }): Promise<Answered<OpenAI.ChatCompletion>> {
    const { data, response } = await this.openaiCall(async () =>
      (await this.openai()).chat.completions
        .create({
          ...request,
          stream: false,
        } as OpenAI.ChatCompletionCreateParamsNonStreaming)
        .withResponse(),
    );
    return { inferenceId: inferenceIdOf(response.headers), data };
  }

  /** A streamed chat completion: `onDelta` gets each piece of text; answers the whole text and usage. */
  async chatStream(
    request: ChatRequest,
    onDelta: (text: string) => void,
  ): Promise<Answered<{ text: string; usage: OpenAI.CompletionUsage | null }>> {
    const { data, response } = await this.openaiCall(async () =>
      (await this.openai()).chat.completions
        .create({
          ...request,
          stream: true,
          stream_options: { include_usage: true },
        } as OpenAI.ChatCompletionCreateParamsStreaming)
        .withResponse(),
    );
    let text = "";
    let usage: OpenAI.CompletionUsage | null = null;
    for await (const chunk of data) {
      const delta = chunk.choices[0]?.delta?.content ?? "";
      if (delta) {
        text += delta;
        onDelta(delta);
      }
      if (chunk.usage) usage = chunk.usage;
    }
    return { inferenceId: inferenceIdOf(response.headers), data: { text, usage } };
  }

  /** A text completion (not streamed) and its inference id. */
  async complete(
    request: CompletionRequest & { stream?: false | null },
  ): Promise<Answered<OpenAI.Completion>> {
    const { data, response } = await this.openaiCall(async () =>
      (await this.openai()).completions
        .create({ ...request, stream: false } as OpenAI.CompletionCreateParamsNonStreaming)
        .withResponse(),
    );
    return { inferenceId: inferenceIdOf(response.headers), data };
  }

  /** The openai client's errors as OpenLedgerError (same {code, message} as every other call). */
  private async openaiCall<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      const { default: OpenAI } = await import("openai");
      if (err instanceof OpenAI.APIError && err.status !== undefined) {
        throw errorFrom("gateway", err.status, { error: err.error ?? { message: err.message } });
      }
      if (err instanceof OpenAI.APIConnectionError) {
        throw new OpenLedgerError("UNREACHABLE", `gateway at ${this.http.baseUrl} does not answer`, {
          source: "gateway",
        });
      }
      throw err;
    }
  }
}

function inferenceIdOf(headers: Headers): string {
  const id = headers.get("x-openledger-inference-id");
  if (!id) throw new OpenLedgerError("NO_INFERENCE_ID", "the gateway did not name the inference");
  return id;
}
