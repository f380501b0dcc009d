import path from "node:path";
import {
  decodeInfluenceModel,
  decodeSpanIndex,
  type LoraGradientArtifact,
  type LoraInfluenceModel,
  type SpanIndex,
  type TrainedInfluenceModel,
} from "@openledger/attribution-core";
import {
  type ChainConnection,
  type ChainConnector,
  PastValidatorQuorums,
  REPO_ROOT,
  readValidatorQuorum,
} from "@openledger/chain";
import type { AttributionConfig } from "@openledger/config";
import type { AnswerGradientGraph, BaseModel, TextTokenizer } from "@openledger/model-runtime";
import type { FastifyInstance } from "fastify";
import fp from "fastify-plugin";
import { Registry } from "prom-client";
import type { PrivateKeyAccount } from "viem/accounts";
import { type AdapterSource, DirAdapterSource, GatewayAdapterSource } from "./adapter-source.ts";
import { type BlobStore, FsBlobStore } from "./blob-store.ts";
import { baseModelDirs, type LoadedLora } from "./lora.ts";
import { type AttributionMetrics, attributionMetrics } from "./metrics.ts";
import type { ComputedAttribution } from "./scoring.ts";
import type { QuorumAt } from "./settlement-trigger.ts";
import { type AttributionTokenizer, loadAttributionTokenizer } from "./tokenizer.ts";

/** The chain as this service sees it: the kit's connection (reads, and validator accounts). */
export type ChainContext = ChainConnection;

/** A validator identity: its signing account (the key never leaves this object, never logged). */
export interface ValidatorIdentity {
  /** Lower-case 0x address. */
  address: string;
  account: PrivateKeyAccount;
}

/** Small LRU of decoded artifacts by blob hash (they are immutable, so never stale). */
class ArtifactCache<T> {
  readonly #map = new Map<string, Promise<T>>();
  constructor(
    readonly capacity: number,
    /** Called with an evicted entry (e.g. to release a native session once its runs are done). */
    readonly onEvict?: (value: Promise<T>) => void,
  ) {}
  get(key: string, load: () => Promise<T>): Promise<T> {
    let p = this.#map.get(key);
    if (p) {
      this.#map.delete(key);
      this.#map.set(key, p);
      return p;
    }
    p = load();
    p.catch(() => this.#map.delete(key));
    this.#map.set(key, p);
    while (this.#map.size > this.capacity) {
      const oldest = this.#map.keys().next().value!;
      const evicted = this.#map.get(oldest)!;
      this.#map.delete(oldest);
      this.onEvict?.(evicted);
    }
    return p;
  }
}

/**
 * What routes and workers of one app instance share (`app.attribution`): the blob store, the
 * tokenizer, decoded index/model caches, the chain (the kit's connector: lazy, so the HTTP API
 * works without it) and validator identities.
 */
export class AttributionContext {
  readonly store: BlobStore;
  /** Where adapters' files come from (ATTRIBUTION_ADAPTER_SOURCE): the gateway's disk, or the gateway over HTTP. */
  readonly adapters: AdapterSource;
  readonly spanIndexes = new ArtifactCache<SpanIndex>(8);
  readonly influenceModels = new ArtifactCache<TrainedInfluenceModel>(8);
  /** LoRA influence: prepared (Gram-factored) training-row gradients by blob hash; base models by directory. */
  readonly loraModels = new ArtifactCache<{ artifact: LoraGradientArtifact; model: LoraInfluenceModel }>(4);
  readonly baseModels = new ArtifactCache<{ model: BaseModel; tokenizer: TextTokenizer }>(2);
  /** Adapters checked against their content hash and parsed, by content hash and base model directory. */
  readonly loras = new ArtifactCache<LoadedLora>(4);
  /**
   * Results this process committed to and has not revealed for all its validators yet, by inference: the
   * validator scan tries their reveals on every pass, and recomputing each time would slow every pass (and
   * so every other validator's wait). Deterministic results, so a cached one is the recomputed one.
   */
  readonly unrevealed = new Map<string, ComputedAttribution>();
  /** Answer-gradient graphs by adapter and shape (building one costs more than running it). */
  readonly answerGraphs = new ArtifactCache<AnswerGradientGraph>(4, (g) => {
    g.then((graph) => graph.dispose()).catch(() => {});
  });
  #tokenizer: Promise<AttributionTokenizer> | undefined;
  #baseModelDirs: Promise<Map<string, string>> | undefined;

  constructor(
    readonly config: AttributionConfig,
    private readonly connector: ChainConnector,
    readonly metrics: AttributionMetrics = attributionMetrics(new Registry()),
  ) {
    this.store = new FsBlobStore(path.resolve(REPO_ROOT, config.ATTRIBUTION_BLOB_DIR));
    this.adapters =
      config.ATTRIBUTION_ADAPTER_SOURCE === "dir"
        ? new DirAdapterSource(path.resolve(REPO_ROOT, config.ATTRIBUTION_ADAPTER_DIR))
        : new GatewayAdapterSource({
            gatewayUrls: config.ATTRIBUTION_ADAPTER_SOURCE.split(","),
            cacheRoot: path.resolve(REPO_ROOT, config.ATTRIBUTION_BLOB_DIR),
            maxBytes: config.ATTRIBUTION_ADAPTER_MAX_BYTES,
            cacheBytes: config.ATTRIBUTION_ADAPTER_CACHE_BYTES,
            // One key per validator process; the first one signs where a dev process holds several.
            signer: async () => (await this.validators())[0]?.account,
            onOutcome: (outcome) => metrics.adapterFetches.inc({ outcome }),
          });
  }

  tokenizer(): Promise<AttributionTokenizer> {
    this.#tokenizer ??= loadAttributionTokenizer(this.config.ATTRIBUTION_TOKENIZER);
    return this.#tokenizer;
  }

  spanIndex(hash: string): Promise<SpanIndex> {
    return this.spanIndexes.get(hash, async () => decodeSpanIndex(await this.store.get(hash)));
  }

  influenceModel(hash: string): Promise<TrainedInfluenceModel> {
    return this.influenceModels.get(hash, async () => decodeInfluenceModel(await this.store.get(hash)));
  }

  loraInfluence(
    hash: string,
    load: () => Promise<{ artifact: LoraGradientArtifact; model: LoraInfluenceModel }>,
  ): Promise<{ artifact: LoraGradientArtifact; model: LoraInfluenceModel }> {
    return this.loraModels.get(hash, load);
  }

  baseModel(
    dir: string,
    load: () => Promise<{ model: BaseModel; tokenizer: TextTokenizer }>,
  ): Promise<{ model: BaseModel; tokenizer: TextTokenizer }> {
    return this.baseModels.get(dir, load);
  }

  /**
   * ATTRIBUTION_MODEL_DIRS — and the served model's directory when ATTRIBUTION_TOKENIZER names one — by the
   * SHA-256 of their weights (how a lineage names its base model).
   */
  baseModelDirs(): Promise<Map<string, string>> {
    const tokenizerDir =
      this.config.ATTRIBUTION_TOKENIZER === "byte" ? [] : [this.config.ATTRIBUTION_TOKENIZER];
    this.#baseModelDirs ??= baseModelDirs([this.config.ATTRIBUTION_MODEL_DIRS, ...tokenizerDir].join(","));
    return this.#baseModelDirs;
  }

  chain(): Promise<ChainContext> {
    return this.connector.get();
  }

  /** Past epochs' validator quorums, read once per block (immutable). */
  readonly #pastQuorums = new PastValidatorQuorums();

  /**
   * The quorum an inference is counted against (`QuorumAt`): the distributor's at its epoch's block (a
   * historical read, cached), or now when no epoch closed before it — the hand-off and the disputes alike.
   */
  quorumAt(chain: ChainContext): QuorumAt {
    const distributor = chain.addresses.contracts.RewardDistributor;
    return (block) =>
      block === null
        ? readValidatorQuorum(chain.publicClient, distributor)
        : this.#pastQuorums.at(chain.publicClient, distributor, block);
  }

  /**
   * The validators this process signs as: VALIDATOR_PRIVATE_KEYS, or in the dev profile the local
   * deployment's validators (Hardhat's public dev accounts #5-7). In production without keys, none.
   */
  async validators(): Promise<ValidatorIdentity[]> {
    const { validators } = await this.chain();
    return validators.map((account) => ({ address: account.address.toLowerCase(), account }));
  }
}

declare module "fastify" {
  interface FastifyInstance {
    attribution: AttributionContext;
  }
}

/** Decorates the app with its attribution context (state on the instance, not a module-level map). */
export const attributionContext = fp<{ config: AttributionConfig }>(
  async (app: FastifyInstance, { config }) => {
    app.decorate("attribution", new AttributionContext(config, app.chain, attributionMetrics(app.metrics)));
    // What a killed fetch left in the adapter cache goes now, and the cache's size is known from the start.
    await app.attribution.adapters.prepare();
  },
  { name: "attribution-context", dependencies: ["openledger-chain"] },
);
