import path from "node:path";
import {
  decodeInfluenceModel,
  decodeSpanIndex,
  type SpanIndex,
  type TrainedInfluenceModel,
} from "@openledger/attribution-core";
import {
  type ChainPublicClient,
  createChainPublicClient,
  defaultAddressesPath,
  loadAddresses,
  type PlatformAddresses,
  REPO_ROOT,
  rpcChainId,
} from "@openledger/chain";
import { localAccounts } from "@openledger/chain/testing";
import type { AttributionConfig } from "@openledger/config";
import type { Hex } from "viem";
import { type PrivateKeyAccount, privateKeyToAccount } from "viem/accounts";
import { type BlobStore, FsBlobStore } from "./blob-store.ts";
import { type AttributionTokenizer, loadAttributionTokenizer } from "./tokenizer.ts";

export interface ChainContext {
  chainId: number;
  addresses: PlatformAddresses;
  publicClient: ChainPublicClient;
}

/** A validator identity: its signing account (the key never leaves this object, never logged). */
export interface ValidatorIdentity {
  /** Lower-case 0x address. */
  address: string;
  account: PrivateKeyAccount;
}

/** Small LRU of decoded artifacts by blob hash (they are immutable, so never stale). */
class ArtifactCache<T> {
  readonly #map = new Map<string, Promise<T>>();
  constructor(readonly capacity: number) {}
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
    while (this.#map.size > this.capacity) this.#map.delete(this.#map.keys().next().value!);
    return p;
  }
}

/**
 * What routes and workers of one app instance share: the blob store, the tokenizer, decoded
 * index/model caches, the chain (lazy: the HTTP API works without it) and validator identities.
 */
export class AttributionContext {
  readonly store: BlobStore;
  readonly spanIndexes = new ArtifactCache<SpanIndex>(8);
  readonly influenceModels = new ArtifactCache<TrainedInfluenceModel>(8);
  #tokenizer: Promise<AttributionTokenizer> | undefined;
  #chain: Promise<ChainContext> | undefined;
  #validators: Promise<ValidatorIdentity[]> | undefined;

  constructor(readonly config: AttributionConfig) {
    this.store = new FsBlobStore(path.resolve(REPO_ROOT, config.ATTRIBUTION_BLOB_DIR));
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

  chain(): Promise<ChainContext> {
    this.#chain ??= (async () => {
      const file =
        this.config.CHAIN_ADDRESSES_FILE ?? defaultAddressesPath(await rpcChainId(this.config.CHAIN_RPC_URL));
      const addresses = await loadAddresses(file);
      const publicClient = createChainPublicClient({
        rpcUrl: this.config.CHAIN_RPC_URL,
        chainId: addresses.chainId,
      });
      return { chainId: addresses.chainId, addresses, publicClient };
    })();
    this.#chain.catch(() => {
      this.#chain = undefined; // retry on the next call (the node may come up later)
    });
    return this.#chain;
  }

  /**
   * VALIDATOR_PRIVATE_KEYS, or on chain 31337 only, the local deployment's validators
   * (Hardhat's public dev accounts #5-7). Anywhere else, no keys = no validator identities.
   */
  validators(): Promise<ValidatorIdentity[]> {
    this.#validators ??= (async () => {
      let keys: Hex[];
      if (this.config.VALIDATOR_PRIVATE_KEYS) keys = this.config.VALIDATOR_PRIVATE_KEYS.split(",") as Hex[];
      else {
        const { chainId } = await this.chain();
        keys = chainId === 31337 ? localAccounts().validators.map((v) => v.privateKey) : [];
      }
      const seen = new Set<string>();
      const out: ValidatorIdentity[] = [];
      for (const key of keys) {
        const account = privateKeyToAccount(key);
        const address = account.address.toLowerCase();
        if (seen.has(address)) continue;
        seen.add(address);
        out.push({ address, account });
      }
      return out;
    })();
    this.#validators.catch(() => {
      this.#validators = undefined;
    });
    return this.#validators;
  }
}

const contexts = new WeakMap<AttributionConfig, AttributionContext>();

/** One context per config object (routes and workers of one app receive the same object). */
export function contextFor(config: AttributionConfig): AttributionContext {
  let ctx = contexts.get(config);
  if (!ctx) {
    ctx = new AttributionContext(config);
    contexts.set(config, ctx);
  }
  return ctx;
}
