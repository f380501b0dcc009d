import type { GatewayConfig } from "@openledger/config";
import { type Db, Prisma, toWei } from "@openledger/db";
import { AppError } from "@openledger/errors";
import type { FastifyInstance } from "fastify";
import fp from "fastify-plugin";
import { AdapterStore } from "../lib/adapter-store.ts";
import { type ModelHost, repoPath } from "../lib/model-host.ts";
import { type LoadedSmallModel, SmallModelRuntime, smallModelUnavailable } from "../lib/small-models.ts";
import type {} from "./host.ts"; // its `declare module "fastify"` (host): in every program with this file

export interface ServableModel {
  id: string;
  kind: "base" | "adapter" | "small_model";
  ownerAddress: string;
  contentHash: string;
  priceInPer1kWei: bigint;
  priceOutPer1kWei: bigint;
  createdAt: Date;
  /** Small models: the labelled datanet version whose influence model they serve. */
  datanetVersionId?: string;
  /** Small models: SHA-256 of that influence model's ONNX export (read from Postgres on first use). */
  onnxHash?: string;
}

/** A `models` row as the catalog reads it. */
export interface ModelRow {
  id: string;
  kind: string;
  ownerAddress: string;
  contentHash: string;
  priceInPer1kWei: Prisma.Decimal;
  priceOutPer1kWei: Prisma.Decimal;
  createdAt: Date;
}

/**
 * The models this replica serves: the base model, active adapters (their files live on this node,
 * in the content-addressed `store`) and active small models (their ONNX graphs fetched from the
 * attribution service on first use, `smallModels`). Mirrored from Postgres at start-up; a model
 * registered here is added by `remember`.
 */
export class ModelCatalog {
  readonly models = new Map<string, ServableModel>();
  readonly store: AdapterStore;
  readonly smallModels: SmallModelRuntime;

  constructor(
    readonly config: GatewayConfig,
    readonly db: Db,
  ) {
    this.store = new AdapterStore(repoPath(config.GATEWAY_DATA_DIR));
    this.smallModels = new SmallModelRuntime(
      repoPath(`${config.GATEWAY_DATA_DIR}/small-models`),
      config.GATEWAY_ATTRIBUTION_URL,
      config.GATEWAY_ATTRIBUTION_TOKEN,
    );
  }

  get baseModelId(): string {
    return this.config.GATEWAY_BASE_MODEL_ID;
  }

  /** Directory of a servable adapter's files (the runtime's disk tier). */
  adapterDir(id: string): string | undefined {
    const m = this.models.get(id);
    return m && m.kind === "adapter" ? this.store.dirOf(m.contentHash) : undefined;
  }

  /** Upserts the base model's row (inferences reference it) and loads active adapters and small models
   *  (a small model's ONNX graph is loaded on its first request). */
  async init(host: ModelHost): Promise<void> {
    const priceIn = new Prisma.Decimal(this.config.GATEWAY_BASE_PRICE_IN_PER_THOUSAND_WEI);
    const priceOut = new Prisma.Decimal(this.config.GATEWAY_BASE_PRICE_OUT_PER_THOUSAND_WEI);
    await this.db.model.upsert({
      where: { id: this.baseModelId },
      create: {
        id: this.baseModelId,
        kind: "base",
        ownerAddress: "0x0000000000000000000000000000000000000000",
        contentHash: host.contentHash,
        priceInPer1kWei: priceIn,
        priceOutPer1kWei: priceOut,
      },
      update: { contentHash: host.contentHash, priceInPer1kWei: priceIn, priceOutPer1kWei: priceOut },
    });
    const rows = await this.db.model.findMany({
      where: {
        OR: [
          { id: this.baseModelId },
          { kind: "adapter", baseModel: this.baseModelId, status: "active" },
          { kind: "small_model", status: "active" },
        ],
      },
      include: { trainingVersions: { select: { datanetVersionId: true } } },
    });
    for (const r of rows) this.remember(r, r.trainingVersions[0]?.datanetVersionId);
  }

  /** Adds a model row to the servable map (after its registration committed). */
  remember(r: ModelRow, datanetVersionId?: string): ServableModel {
    const m: ServableModel = {
      id: r.id,
      kind: r.kind === "base" ? "base" : r.kind === "small_model" ? "small_model" : "adapter",
      ownerAddress: r.ownerAddress,
      contentHash: r.contentHash,
      priceInPer1kWei: toWei(r.priceInPer1kWei),
      priceOutPer1kWei: toWei(r.priceOutPer1kWei),
      createdAt: r.createdAt,
      ...(datanetVersionId !== undefined && r.kind === "small_model" ? { datanetVersionId } : {}),
    };
    this.models.set(m.id, m);
    return m;
  }

  /**
   * A servable model by id. A small model registered through another gateway replica is not in
   * this process's map yet: it is looked up in Postgres and remembered (any replica can serve it,
   * its graph comes from the attribution service). Adapters need their files on this node, so
   * they are only found here after an upload to this node (or a restart).
   * A remembered small model is still checked in Postgres on each request (one primary-key read):
   * another replica may have retired it, and a retired model must not be served (or billed).
   */
  async find(id: string): Promise<ServableModel | undefined> {
    const hit = this.models.get(id);
    if (hit && hit.kind !== "small_model") return hit;
    if (hit) {
      const row = await this.db.model.findUnique({ where: { id }, select: { status: true } });
      if (row?.status === "active") return hit;
      this.models.delete(id);
      return undefined;
    }
    const row = await this.db.model.findFirst({
      where: { id, kind: "small_model", status: "active" },
      include: { trainingVersions: { select: { datanetVersionId: true } } },
    });
    return row ? this.remember(row, row.trainingVersions[0]?.datanetVersionId) : undefined;
  }

  /**
   * The loaded classifier of a small model (its ONNX graph fetched and hash-checked on first use).
   * For the caller of a registered model, a graph that cannot be had now is the server's state, not
   * their mistake: 503 with Retry-After (registration answers the same conditions with their own codes).
   */
  async classifier(m: ServableModel): Promise<LoadedSmallModel> {
    try {
      return await this.#classifier(m);
    } catch (err) {
      if (err instanceof AppError && err.status < 500) {
        throw new AppError(err.code, err.message, {
          status: 503,
          headers: { "retry-after": "5" },
          cause: err,
        });
      }
      throw err;
    }
  }

  async #classifier(m: ServableModel): Promise<LoadedSmallModel> {
    if (m.kind !== "small_model" || !m.datanetVersionId) throw new Error(`${m.id} is not a small model`);
    if (!m.onnxHash) {
      const row = await this.db.attributionIndex.findUnique({
        where: { datanetVersionId_kind: { datanetVersionId: m.datanetVersionId, kind: "influence" } },
      });
      if (row?.status !== "ready" || !row.onnxBlobHash) {
        throw smallModelUnavailable(
          409,
          "INFLUENCE_MODEL_NOT_READY",
          `the influence model of datanet version ${m.datanetVersionId} is not ready on this platform`,
          true,
        );
      }
      m.onnxHash = row.onnxBlobHash;
    }
    return this.smallModels.load(m.datanetVersionId, m.onnxHash);
  }

  /** Stops serving a model at once (running requests finish) and marks it retired. */
  async retire(id: string): Promise<void> {
    await this.db.model.update({ where: { id }, data: { status: "retired" } });
    this.models.delete(id);
  }
}

declare module "fastify" {
  interface FastifyInstance {
    /** Servable models of this replica (base, adapters, small models). */
    catalog: ModelCatalog;
  }
}

/** Decorates `catalog`, mirrors servable models from Postgres and points the engine's disk tier at it. */
export const catalogPlugin = fp<{ config: GatewayConfig }>(
  async (app: FastifyInstance, { config }) => {
    const catalog = new ModelCatalog(config, app.db);
    await catalog.init(app.host);
    app.host.hooks.locator = { dirOf: (id) => catalog.adapterDir(id) };
    app.decorate("catalog", catalog);
    app.addHook("onClose", async () => {
      await catalog.smallModels.close();
    });
  },
  { name: "gateway-catalog", dependencies: ["gateway-host"] },
);
