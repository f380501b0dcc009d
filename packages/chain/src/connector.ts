import {
  BrokenCircuitError,
  type CircuitBreakerPolicy,
  ConsecutiveBreaker,
  circuitBreaker,
  handleWhen,
  type IPolicy,
  TaskCancelledError,
  TimeoutStrategy,
  timeout,
  wrap,
} from "cockatiel";
import {
  BaseError,
  createPublicClient,
  type Hex,
  HttpRequestError,
  http,
  TimeoutError,
  type Transport,
} from "viem";
import { type PrivateKeyAccount, privateKeyToAccount } from "viem/accounts";
import {
  type ChainPublicClient,
  type ChainWalletClient,
  chainFromOptions,
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
  /**
   * Bound of a read on a request path (`read()`), connecting included: a client never waits on the
   * chain longer than this (CHAIN_REQUEST_TIMEOUT_MS). Default 2500 ms.
   */
  requestTimeoutMs?: number;
  /** Bound of one RPC request of background work (CHAIN_RPC_TIMEOUT_MS). Default 20 s. */
  rpcTimeoutMs?: number;
  /** After the chain failed to answer, `read()` fails at once for this long, then lets one probe
   *  through (circuit breaker). Default 1000 ms. */
  breakerHalfOpenMs?: number;
}

export const DEFAULT_CHAIN_REQUEST_TIMEOUT_MS = 2500;
export const DEFAULT_CHAIN_RPC_TIMEOUT_MS = 20_000;

/**
 * The chain did not answer within the request bound, refused the connection, or failed to answer
 * moments ago (the circuit is open and nobody waits on it again until a probe gets through).
 */
export class ChainUnavailableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "ChainUnavailableError";
  }
}

/** What the connector knows of the chain from its request-path reads (readiness reports it). */
export interface ChainHealth {
  /** `unknown` until the first read. */
  state: "up" | "down" | "unknown";
  /** Date.now() of the first failure since the last success (while down). */
  downSince?: number;
  /** Date.now() of the last read that got an answer. */
  lastOkAt?: number;
  lastError?: string;
}

/** An error that says the chain is not answering (as opposed to answering with a revert). */
export function isChainUnavailable(err: unknown): boolean {
  if (err instanceof ChainUnavailableError || err instanceof TaskCancelledError) return true;
  if (err instanceof BrokenCircuitError) return true;
  if (err instanceof BaseError) {
    return Boolean(
      err.walk(
        (e) =>
          e instanceof TimeoutError ||
          e instanceof HttpRequestError ||
          e instanceof ChainUnavailableError ||
          e instanceof TaskCancelledError ||
          e instanceof BrokenCircuitError,
      ),
    );
  }
  // fetch/undici refusals ("fetch failed", ECONNREFUSED) and our own connect failures.
  const text =
    err instanceof Error ? `${err.message} ${(err.cause as Error | undefined)?.message ?? ""}` : "";
  return /chain unreachable|fetch failed|ECONNREFUSED|ECONNRESET|socket hang up|aborted|timed? ?out/i.test(
    text,
  );
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

/**
 * A validator is an operator with exactly one key: a process holding several would sign as several
 * validators and could meet the quorum alone. More than one key is refused on any chain but a local
 * dev deployment (where tests may play several validators in one process).
 */
export function assertValidatorKeyCount(
  count: number,
  variable: string,
  chainId: number,
  deployment?: Pick<PlatformAddresses, "profile">,
): void {
  if (count <= 1) return;
  if (LOCAL_CHAIN_IDS.has(chainId) && deployment?.profile !== "production") return;
  throw new ChainConfigError(
    `${variable} holds ${count} validator keys on chain ${chainId}: a validator process signs with exactly one key (run one process per validator)`,
  );
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
  /** The reader. Inside `ChainConnector.read()` it is bounded by the request timeout, without retries;
   *  elsewhere (background work) by the RPC timeout, with viem's retries. */
  publicClient: ChainPublicClient;
  profile: ChainProfile;
  /** The wallet of a role; throws ChainConfigError when this service was not given that role. */
  signer(role: SignerRole): ChainWalletClient;
  /** Validator accounts (EIP-712 signing; the only transaction they send is a dispute, `executeAsValidator`),
   *  deduplicated. */
  validators: readonly PrivateKeyAccount[];
  /**
   * Drives an intent to confirmation signed by one of this service's validator keys (a validator files the
   * disputes it signed, `ValidatorDisputes.fileDispute`, as the reporter). Throws ChainConfigError for an
   * address this service holds no key of.
   */
  executeAsValidator(
    db: IntentDb,
    validator: string,
    spec: IntentSpec,
    options?: { receiptTimeoutMs?: number },
  ): Promise<{ txHash: string | null }>;
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
  /** The connection once it is established. */
  #connected: ChainConnection | undefined;
  /** The same connection with the request-bounded reader (`require()`, `read()`). */
  #forRequests = new WeakMap<ChainConnection, ChainConnection>();
  readonly #policy: IPolicy;
  #health: ChainHealth = { state: "unknown" };

  constructor(readonly options: ChainConnectorOptions) {
    // Only "the chain is not answering" opens the circuit; a revert or a config error is an answer.
    const breaker: CircuitBreakerPolicy = circuitBreaker(
      handleWhen((err) => isChainUnavailable(err)),
      { halfOpenAfter: options.breakerHalfOpenMs ?? 1000, breaker: new ConsecutiveBreaker(1) },
    );
    this.#policy = wrap(breaker, timeout(this.requestTimeoutMs, TimeoutStrategy.Aggressive));
  }

  /** The most a request-path RPC waits for the chain, ms (the documented bound of every request path). */
  get requestTimeoutMs(): number {
    return this.options.requestTimeoutMs ?? DEFAULT_CHAIN_REQUEST_TIMEOUT_MS;
  }

  /**
   * The connection for a request path: connecting is bounded by `requestTimeoutMs`, and so is every
   * RPC of its reader (no retries). The first RPC that gets no answer in time opens a circuit: for
   * `breakerHalfOpenMs` every request-path RPC fails at once, then one probe goes through. So a
   * request waits on a chain that does not answer at most `requestTimeoutMs` (requests in flight
   * together all fail at that moment), never once per RPC it makes. A chain that does not answer is
   * a `ChainUnavailableError`.
   */
  async require(): Promise<ChainConnection> {
    return this.#bounded();
  }

  async #bounded(): Promise<ChainConnection> {
    // Once connected, handing out the connection is no evidence about the chain (and must not close
    // an open circuit): only connecting, and the reader's RPCs, go through the bound and the breaker.
    return this.#requestConnection(this.#connected ?? (await this.#guarded(() => this.get())));
  }

  /**
   * `fn` with the request-path connection (`require()`); "the chain does not answer" from anywhere
   * in it is a `ChainUnavailableError`, anything else it throws (a revert, a config error) passes
   * through.
   */
  async read<T>(fn: (connection: ChainConnection) => Promise<T>): Promise<T> {
    try {
      return await fn(await this.#bounded());
    } catch (err) {
      throw isChainUnavailable(err) ? this.#unavailable(err) : err;
    }
  }

  /** What the request-path RPCs found (no I/O). */
  health(): ChainHealth {
    return { ...this.#health };
  }

  /** One bounded read (the latest block number): readiness probes the chain with it. */
  async probe(): Promise<void> {
    await this.read((c) => c.publicClient.getBlockNumber());
  }

  /** Runs `fn` under the request bound and the circuit breaker, and records what it found. */
  async #guarded<T>(fn: () => Promise<T>): Promise<T> {
    try {
      // A signal of its own per call: without one, cockatiel derives every call's timeout signal
      // from one module-wide "never aborted" signal, and each call in flight adds an abort listener
      // to it — 11 request-path reads at once (a burst of balance checks) printed Node's
      // MaxListenersExceededWarning, and the listeners of every concurrent call piled on one target.
      const result = await this.#policy.execute(fn, new AbortController().signal);
      this.#health = { state: "up", lastOkAt: Date.now() };
      return result;
    } catch (err) {
      if (!isChainUnavailable(err)) {
        if (!(err instanceof ChainConfigError)) this.#health = { state: "up", lastOkAt: Date.now() };
        throw err;
      }
      throw this.#unavailable(err);
    }
  }

  #unavailable(err: unknown): ChainUnavailableError {
    // Raised by the guarded transport and wrapped by viem on its way out: already recorded.
    for (let e: unknown = err, depth = 0; e instanceof Error && depth < 10; e = e.cause, depth++) {
      if (e instanceof ChainUnavailableError) return e;
    }
    const message =
      err instanceof BrokenCircuitError
        ? "the chain did not answer moments ago; not waiting on it (a probe retries shortly)"
        : err instanceof TaskCancelledError
          ? `the chain did not answer within ${this.requestTimeoutMs} ms`
          : `the chain did not answer: ${(err as Error).message.split("\n")[0]}`;
    const now = Date.now();
    this.#health = {
      state: "down",
      downSince: this.#health.state === "down" ? (this.#health.downSince ?? now) : now,
      ...(this.#health.lastOkAt !== undefined ? { lastOkAt: this.#health.lastOkAt } : {}),
      lastError: message,
    };
    return new ChainUnavailableError(message, { cause: err });
  }

  #requestConnection(connection: ChainConnection): ChainConnection {
    let bounded = this.#forRequests.get(connection);
    if (!bounded) {
      const base = http(this.options.rpcUrl, { timeout: this.requestTimeoutMs, retryCount: 0 });
      // Every RPC of the request-path reader goes through the bound and the breaker.
      const guarded: Transport = (params) => {
        const t = base(params);
        return { ...t, request: ((args: never) => this.#guarded(() => t.request(args))) as typeof t.request };
      };
      bounded = {
        ...connection,
        publicClient: createPublicClient({
          chain: chainFromOptions({ rpcUrl: this.options.rpcUrl, chainId: connection.chainId }),
          transport: guarded,
          pollingInterval:
            this.options.pollingIntervalMs ?? (LOCAL_CHAIN_IDS.has(connection.chainId) ? 100 : 1000),
        }),
      };
      this.#forRequests.set(connection, bounded);
    }
    return bounded;
  }

  get(): Promise<ChainConnection> {
    if (!this.#connection) {
      const p = this.#connect();
      p.then(
        (c) => {
          if (this.#connection === p) this.#connected = c;
        },
        () => {
          if (this.#connection === p) this.#connection = undefined; // retry on the next call
        },
      );
      this.#connection = p;
    }
    return this.#connection;
  }

  async #connect(): Promise<ChainConnection> {
    const { rpcUrl, profile } = this.options;
    let chainId: number;
    try {
      chainId = await rpcChainId(rpcUrl, this.options.rpcTimeoutMs ?? DEFAULT_CHAIN_RPC_TIMEOUT_MS);
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
      timeoutMs: this.options.rpcTimeoutMs ?? DEFAULT_CHAIN_RPC_TIMEOUT_MS,
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
    const validatorKeyOf = new Map<string, Hex>();
    const validators: PrivateKeyAccount[] = [];
    for (const key of validatorKeys) {
      const account = privateKeyToAccount(key.trim() as Hex);
      if (validatorKeyOf.has(account.address.toLowerCase())) continue;
      validatorKeyOf.set(account.address.toLowerCase(), key.trim() as Hex);
      validators.push(account);
    }
    assertValidatorKeyCount(
      validators.length,
      this.options.validators?.variable ?? "validator keys",
      chainId,
      addresses,
    );

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
    // A validator's wallet exists only once it sends (a dispute); it shares the address's signing queue.
    const validatorWallets = new Map<string, ChainWalletClient>();
    const validatorSigner = (validator: string): IntentSigner => {
      const address = validator.toLowerCase();
      const key = validatorKeyOf.get(address);
      if (!key) throw new ChainConfigError(`this service holds no key of validator ${address}`);
      let wallet = validatorWallets.get(address);
      if (!wallet) {
        wallet = createChainWalletClient({ ...clientOptions, privateKey: key });
        validatorWallets.set(address, wallet);
      }
      const queue = queues.get(address) ?? new SigningQueue();
      queues.set(address, queue);
      return { publicClient, wallet, serialize: (fn) => queue.run(fn) };
    };
    return {
      chainId,
      addresses,
      publicClient,
      profile,
      signer: (role) => signerOf(role).wallet,
      validators,
      executeAsValidator: (db, validator, spec, options) =>
        executeIntent(db, validatorSigner(validator), spec, options),
      execute: (db, role, spec, options) => executeIntent(db, intentSigner(role), spec, options),
      submit: (db, role, spec, options) => submitIntent(db, intentSigner(role), spec, options),
    };
  }
}
