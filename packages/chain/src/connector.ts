import type { Hex } from "viem";
import { type PrivateKeyAccount, privateKeyToAccount } from "viem/accounts";
import {
  type ChainPublicClient,
  type ChainWalletClient,
  createChainPublicClient,
  createChainWalletClient,
  rpcChainId,
  rpcOrigin,
} from "./clients.ts";
import { defaultAddressesPath, loadAddresses, type PlatformAddresses } from "./deploy.ts";
import { localAccounts } from "./dev-accounts.ts";
import {
  executeIntent,
  type IntentDb,
  type IntentRow,
  type IntentSigner,
  type IntentSpec,
  submitIntent,
} from "./intents.ts";

/**
 * `dev`: a key a service needs but was not given is the local deployment's Hardhat account for that
 * role, and only on a local chain. `production`: every key must be configured.
 */
export type ChainProfile = "dev" | "production";

/** Roles that send transactions, one wallet each. */
export type SignerRole = "operator" | "settler";

/** A configured key and the variable it came from (named in errors, never the key itself). */
export interface ConfiguredKey {
  key: string | undefined;
  variable: string;
}

export interface ChainConnectorOptions {
  rpcUrl: string;
  /** Default: `.data/chain/addresses.<chainId>.json` of the chain the RPC serves. */
  addressesFile?: string | undefined;
  profile: ChainProfile;
  /** The transaction signers this service uses. */
  signers?: Partial<Record<SignerRole, ConfiguredKey>>;
  /** Validator keys (comma-separated), for services that sign attribution results or epoch roots. */
  validators?: ConfiguredKey;
  /** Receipt/block polling; default per chain (clients.ts). */
  pollingIntervalMs?: number;
}

/** Chain ids of local development nodes: the only ones the dev profile accepts. */
export const LOCAL_CHAIN_IDS: ReadonlySet<number> = new Set([31337, 1337]);

/** The dev profile (public dev keys) is refused on any chain but a local one, and on a production deployment. */
export function assertProfileFits(
  profile: ChainProfile,
  chainId: number,
  deployment?: Pick<PlatformAddresses, "profile">,
): void {
  if (profile !== "dev") return;
  if (!LOCAL_CHAIN_IDS.has(chainId)) {
    throw new ChainConfigError(
      `CHAIN_PROFILE=dev on chain ${chainId}: the dev profile is for local chains (${[...LOCAL_CHAIN_IDS].join(", ")}) only`,
    );
  }
  if (deployment?.profile === "production") {
    throw new ChainConfigError(
      "CHAIN_PROFILE=dev against a production-profile deployment: configure every key",
    );
  }
}

export class ChainConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ChainConfigError";
  }
}

/** A connected chain: its id, the platform's addresses, a reader, and this service's signers. */
export interface ChainConnection {
  chainId: number;
  addresses: PlatformAddresses;
  publicClient: ChainPublicClient;
  profile: ChainProfile;
  /** The wallet of a role; throws ChainConfigError when this service was not given that role. */
  signer(role: SignerRole): ChainWalletClient;
  /** Validator accounts (local EIP-712 signing only; they never send transactions), deduplicated. */
  validators: readonly PrivateKeyAccount[];
  /** Drives an intent to confirmation as `role` (packages/chain `executeIntent`). */
  execute(
    db: IntentDb,
    role: SignerRole,
    spec: IntentSpec,
    options?: { receiptTimeoutMs?: number },
  ): Promise<{ txHash: string | null }>;
  /** Records and submits an intent as `role` without waiting for its receipt (`submitIntent`). */
  submit(
    db: IntentDb,
    role: SignerRole,
    spec: IntentSpec,
    options?: { crashBeforeBroadcast?: boolean },
  ): Promise<IntentRow>;
}

const DEV_SIGNER: Record<SignerRole, () => Hex> = {
  operator: () => localAccounts().operator.privateKey,
  settler: () => localAccounts().settlement.privateKey,
};

/**
 * Serializes nonce → sign → record → broadcast per signing address in this process, so two intents
 * sent at once by one service never take the same pending nonce (the second would be refused as an
 * underpriced replacement). Replicas sharing a key still race; the loser's intent stays pending and
 * is retried (see intents.ts).
 */
class SigningQueue {
  #tail: Promise<unknown> = Promise.resolve();
  run<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.#tail.then(fn, fn);
    this.#tail = next.catch(() => {});
    return next;
  }
}

/**
 * The one way services reach the chain. Connects lazily (a service starts and serves while the node
 * is down) and caches the connection once it worked; a failure is not cached, so a node that comes
 * up later is picked up. The chain id comes from the node and the addresses file must be for that
 * chain. Keys are resolved per the profile; no key is ever logged or put in an error.
 */
export class ChainConnector {
  #connection: Promise<ChainConnection> | undefined;

  constructor(readonly options: ChainConnectorOptions) {}

  get(): Promise<ChainConnection> {
    if (!this.#connection) {
      const p = this.#connect();
      p.catch(() => {
        if (this.#connection === p) this.#connection = undefined; // retry on the next call
      });
      this.#connection = p;
    }
    return this.#connection;
  }

  async #connect(): Promise<ChainConnection> {
    const { rpcUrl, profile } = this.options;
    let chainId: number;
    try {
      chainId = await rpcChainId(rpcUrl);
    } catch (err) {
      throw new Error(`chain unreachable at ${rpcOrigin(rpcUrl)}: ${(err as Error).message}`, { cause: err });
    }
    const file = this.options.addressesFile ?? defaultAddressesPath(chainId);
    const addresses = await loadAddresses(file);
    if (addresses.chainId !== chainId) {
      throw new ChainConfigError(
        `the addresses file ${file} is for chain ${addresses.chainId}, the node at ${rpcOrigin(rpcUrl)} serves chain ${chainId}`,
      );
    }
    assertProfileFits(profile, chainId, addresses);
    const dev = profile === "dev";
    const clientOptions = {
      rpcUrl,
      chainId,
      ...(this.options.pollingIntervalMs !== undefined
        ? { pollingIntervalMs: this.options.pollingIntervalMs }
        : {}),
    };
    const publicClient = createChainPublicClient(clientOptions);

    const wallets = new Map<SignerRole, { wallet: ChainWalletClient; queue: SigningQueue }>();
    const queues = new Map<string, SigningQueue>();
    for (const [role, configured] of Object.entries(this.options.signers ?? {}) as [
      SignerRole,
      ConfiguredKey,
    ][]) {
      const key = (configured.key ?? (dev ? DEV_SIGNER[role]() : undefined)) as Hex | undefined;
      if (!key) continue; // resolved lazily: signer(role) names the missing variable
      const wallet = createChainWalletClient({ ...clientOptions, privateKey: key });
      const address = wallet.account.address.toLowerCase();
      const queue = queues.get(address) ?? new SigningQueue();
      queues.set(address, queue);
      wallets.set(role, { wallet, queue });
    }
    const validatorKeys = (this.options.validators?.key?.split(",") ??
      (dev && this.options.validators ? localAccounts().validators.map((v) => v.privateKey) : [])) as Hex[];
    const seen = new Set<string>();
    const validators: PrivateKeyAccount[] = [];
    for (const key of validatorKeys) {
      const account = privateKeyToAccount(key.trim() as Hex);
      if (seen.has(account.address.toLowerCase())) continue;
      seen.add(account.address.toLowerCase());
      validators.push(account);
    }

    const signerOf = (role: SignerRole): { wallet: ChainWalletClient; queue: SigningQueue } => {
      const found = wallets.get(role);
      if (found) return found;
      const configured = this.options.signers?.[role];
      throw new ChainConfigError(
        configured
          ? `${configured.variable} is required (CHAIN_PROFILE=${profile}): no ${role} key`
          : `this service has no ${role} signer`,
      );
    };
    const intentSigner = (role: SignerRole): IntentSigner => {
      const { wallet, queue } = signerOf(role);
      return { publicClient, wallet, serialize: (fn) => queue.run(fn) };
    };
    return {
      chainId,
      addresses,
      publicClient,
      profile,
      signer: (role) => signerOf(role).wallet,
      validators,
      execute: (db, role, spec, options) => executeIntent(db, intentSigner(role), spec, options),
      submit: (db, role, spec, options) => submitIntent(db, intentSigner(role), spec, options),
    };
  }
}
