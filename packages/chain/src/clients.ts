import {
  type Account,
  BaseError,
  type Chain,
  createPublicClient,
  createWalletClient,
  defineChain,
  type Hex,
  http,
  type PublicClient,
  type Transport,
  type WalletClient,
} from "viem";
import { privateKeyToAccount } from "viem/accounts";

export interface ChainOptions {
  /** JSON-RPC endpoint, e.g. http://127.0.0.1:8545 */
  rpcUrl: string;
  chainId: number;
  /** Receipt/block polling interval. Defaults to 100 ms on a local dev chain (31337/1337), else 1000 ms. */
  pollingIntervalMs?: number;
  /** Bound of one JSON-RPC request (viem's default: 10 s). */
  timeoutMs?: number;
  /** Retries of a failed request (viem's default: 3, with backoff). */
  retryCount?: number;
}

export interface WalletOptions extends ChainOptions {
  /** 0x-prefixed 32-byte hex private key of the account that signs transactions. */
  privateKey: Hex;
}

export type ChainPublicClient = PublicClient<Transport, Chain>;
export type ChainWalletClient = WalletClient<Transport, Chain, Account>;

const LOCAL_CHAIN_IDS = new Set([31337, 1337]);

/** A viem chain object from plain configuration; nothing assumes a particular chain id. */
export function chainFromOptions({ rpcUrl, chainId }: Pick<ChainOptions, "rpcUrl" | "chainId">): Chain {
  return defineChain({
    id: chainId,
    name: LOCAL_CHAIN_IDS.has(chainId) ? "OpenLedger local" : `OpenLedger chain ${chainId}`,
    nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
    rpcUrls: { default: { http: [rpcUrl] } },
  });
}

function pollingInterval(opts: ChainOptions): number {
  return opts.pollingIntervalMs ?? (LOCAL_CHAIN_IDS.has(opts.chainId) ? 100 : 1000);
}

function transport(opts: ChainOptions): Transport {
  return http(opts.rpcUrl, {
    ...(opts.timeoutMs !== undefined ? { timeout: opts.timeoutMs } : {}),
    ...(opts.retryCount !== undefined ? { retryCount: opts.retryCount } : {}),
  });
}

export function createChainPublicClient(opts: ChainOptions): ChainPublicClient {
  return createPublicClient({
    chain: chainFromOptions(opts),
    transport: transport(opts),
    pollingInterval: pollingInterval(opts),
  });
}

export function createChainWalletClient(opts: WalletOptions): ChainWalletClient {
  return createWalletClient({
    account: privateKeyToAccount(opts.privateKey),
    chain: chainFromOptions(opts),
    transport: transport(opts),
    pollingInterval: pollingInterval(opts),
  });
}

/** Both clients at once (the common case for a service that reads and writes). */
export function createChainClients(opts: WalletOptions): {
  publicClient: ChainPublicClient;
  walletClient: ChainWalletClient;
} {
  return { publicClient: createChainPublicClient(opts), walletClient: createChainWalletClient(opts) };
}

/** An RPC URL may carry an API key in its path or query: show only its origin in logs and errors. */
export function rpcOrigin(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return "(invalid url)";
  }
}

/**
 * One JSON-RPC request (viem's HTTP transport, no retry, bounded wait): for what the typed clients do not say
 * (a dev node's `evm_mine`, `evm_increaseTime`, probes). The one way to send a raw request; its errors name the
 * method and only the URL's origin (the path or query may hold an API key).
 */
export async function rpcRequest<T = unknown>(
  rpcUrl: string,
  method: string,
  params: readonly unknown[] = [],
  timeoutMs = 10_000,
): Promise<T> {
  const { request } = http(rpcUrl, { retryCount: 0, timeout: timeoutMs })({ retryCount: 0 });
  try {
    return (await request({ method, params: [...params] })) as T;
  } catch (err) {
    // viem's message lists the whole URL: keep its short message and the node's or fetch's own words.
    const reason =
      err instanceof BaseError ? [err.shortMessage, err.details].filter(Boolean).join(" ") : "no answer";
    throw new Error(`${method} failed at ${rpcOrigin(rpcUrl)}: ${reason}`, { cause: err });
  }
}

/** The chain id an RPC endpoint serves (one `eth_chainId`, bounded wait; errors name only the origin). */
export async function rpcChainId(rpcUrl: string, timeoutMs = 5000): Promise<number> {
  return Number(BigInt(await rpcRequest<string>(rpcUrl, "eth_chainId", [], timeoutMs)));
}
