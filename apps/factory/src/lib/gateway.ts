import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { AppError } from "@openledger/errors";
import { type GrantRequest, grantRequestBody } from "@openledger/service-kit";

/** The gateway's base model, as its /status reports it. */
export interface GatewayBaseModel {
  id: string;
  /** SHA-256 of its model.safetensors. */
  contentHash: string;
  maxPositionEmbeddings: number;
}

/** A training grant as the gateway returns it (the token is shown once). */
export interface Grant {
  id: string;
  token: string;
  maxFeeWei: string;
  expiresAt: string;
}

export interface AdapterRegistration {
  id: string;
  contentHash: string;
  chain: { status: string; chainModelId?: string; error?: string };
}

export interface TrainedAdapter {
  id: string;
  dir: string;
  priceInPer1kWei: bigint;
  priceOutPer1kWei: bigint;
  datanetVersionIds: string[];
  trainedTokens: number;
  tokensByContributor: Record<string, number>;
  trainingConfigHash: string;
  job: string;
}

/** How long a call to the gateway may take (a registration waits for its chain receipt). */
const TIMEOUT_MS = 120_000;
const STATUS_CACHE_MS = 30_000;

/**
 * The factory's client of the gateway: the base model it serves, training grants (created with the
 * builder's own API key, passed through from the builder's request; released with the grant's
 * token) and adapter registration through the gateway's existing upload path, authenticated by the
 * grant. Errors from the gateway keep its status and code.
 */
export class GatewayClient {
  #status: { at: number; base: GatewayBaseModel } | undefined;

  constructor(readonly baseUrl: string) {}

  async #call(path: string, init: RequestInit): Promise<unknown> {
    let res: Response;
    try {
      res = await fetch(`${this.baseUrl}${path}`, { ...init, signal: AbortSignal.timeout(TIMEOUT_MS) });
    } catch (err) {
      throw new AppError("GATEWAY_UNAVAILABLE", `the gateway at ${this.baseUrl} did not answer`, {
        status: 503,
        cause: err,
      });
    }
    const text = await res.text();
    let body: unknown;
    try {
      body = text ? JSON.parse(text) : undefined;
    } catch {
      body = undefined;
    }
    if (!res.ok) {
      const e = (body as { error?: { code?: string; message?: string } } | undefined)?.error;
      throw new AppError(
        (e?.code ?? "GATEWAY_ERROR").toUpperCase(),
        e?.message ?? `the gateway answered ${res.status}`,
        // The gateway's own failures are ours to retry; its refusals are the caller's to see.
        { status: res.status >= 500 ? 503 : res.status },
      );
    }
    return body;
  }

  /** The base model the gateway serves (cached briefly). */
  async baseModel(): Promise<GatewayBaseModel> {
    if (this.#status && Date.now() - this.#status.at < STATUS_CACHE_MS) return this.#status.base;
    const s = (await this.#call("/status", { method: "GET" })) as {
      baseModel: { id: string; contentHash: string; config: { maxPositionEmbeddings: number } };
    };
    const base = {
      id: s.baseModel.id,
      contentHash: s.baseModel.contentHash,
      maxPositionEmbeddings: s.baseModel.config.maxPositionEmbeddings,
    };
    this.#status = { at: Date.now(), base };
    return base;
  }

  /** A grant for one job, created by the builder's own credential (its Authorization header). */
  async createGrant(authorization: string, req: GrantRequest): Promise<Grant> {
    const body = (await this.#call("/v1/training-grants", {
      method: "POST",
      headers: { authorization, "content-type": "application/json" },
      body: JSON.stringify(grantRequestBody(req)),
    })) as { id: string; token: string; max_fee_wei: string; expires_at: string };
    return { id: body.id, token: body.token, maxFeeWei: body.max_fee_wei, expiresAt: body.expires_at };
  }

  /** Releases an unused grant's escrow hold (a no-op once used or released). */
  async releaseGrant(grant: { id: string; token: string }): Promise<void> {
    await this.#call(`/v1/training-grants/${grant.id}`, {
      method: "DELETE",
      headers: { authorization: `Bearer ${grant.token}` },
    });
  }

  /**
   * Registers the trained adapter through the gateway's upload path, authenticated by the job's
   * grant: the gateway validates it against its base model, stores it, registers it (Postgres and
   * ModelRegistry, with its lineage) and bills the training, in one transaction; sending it again
   * after a lost answer returns the same registration.
   */
  async registerAdapter(grantToken: string, a: TrainedAdapter): Promise<AdapterRegistration> {
    const form = new FormData();
    const config = await readFile(join(a.dir, "adapter_config.json"));
    const weights = await readFile(join(a.dir, "adapter_model.safetensors"));
    form.append("id", a.id);
    form.append("price_in_per_1k_wei", a.priceInPer1kWei.toString());
    form.append("price_out_per_1k_wei", a.priceOutPer1kWei.toString());
    form.append("datanet_version_ids", JSON.stringify(a.datanetVersionIds));
    form.append("trained_tokens", String(a.trainedTokens));
    form.append("trained_tokens_by_contributor", JSON.stringify(a.tokensByContributor));
    form.append("training_config_hash", a.trainingConfigHash);
    form.append("job", a.job);
    form.append("adapter_config", new Blob([config]), "adapter_config.json");
    form.append("adapter_model", new Blob([weights]), "adapter_model.safetensors");
    const body = (await this.#call("/v1/adapters", {
      method: "POST",
      headers: { authorization: `Bearer ${grantToken}` },
      body: form,
    })) as AdapterRegistration;
    return body;
  }
}
