import {
  type ChainPublicClient,
  type ChainWalletClient,
  createChainPublicClient,
  createChainWalletClient,
  defaultAddressesPath,
  loadAddresses,
  type PlatformAddresses,
  rpcOrigin,
} from "@openledger/chain";
import type { GatewayConfig } from "@openledger/config";
import { AppError } from "@openledger/errors";
import type { FastifyInstance } from "fastify";
import fp from "fastify-plugin";
import { createPublicClient, type Hex, http } from "viem";

/** Hardhat's well-known account #1 (the local deployment's operator/registrar); chain 31337 only. */
const HARDHAT_OPERATOR_KEY: Hex = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";

export interface ChainContext {
  chainId: number;
  addresses: PlatformAddresses;
  publicClient: ChainPublicClient;
  /** The operator (REGISTRAR_ROLE) wallet; undefined when no key is configured. */
  wallet: ChainWalletClient | undefined;
}

/**
 * Lazy chain access: the gateway starts (and serves /readyz) without a chain; the first
 * call that needs one connects, reads the chain id and the addresses file, and caches.
 * A failure is not cached, so a chain that comes up later is picked up.
 */
export class ChainAccess {
  #ctx: Promise<ChainContext> | undefined;

  constructor(private readonly config: GatewayConfig) {}

  get(): Promise<ChainContext> {
    if (!this.#ctx) {
      this.#ctx = this.#connect();
      this.#ctx.catch(() => {
        this.#ctx = undefined;
      });
    }
    return this.#ctx;
  }

  async #connect(): Promise<ChainContext> {
    const rpcUrl = this.config.CHAIN_RPC_URL;
    let chainId: number;
    try {
      chainId = await createPublicClient({ transport: http(rpcUrl, { retryCount: 0 }) }).getChainId();
    } catch (err) {
      throw new AppError("SERVICE_UNAVAILABLE", `chain unreachable at ${rpcOrigin(rpcUrl)}`, { cause: err });
    }
    const addresses = await loadAddresses(this.config.CHAIN_ADDRESSES_FILE ?? defaultAddressesPath(chainId));
    const publicClient = createChainPublicClient({ rpcUrl, chainId, pollingIntervalMs: 100 });
    const key =
      (this.config.GATEWAY_OPERATOR_PRIVATE_KEY as Hex | undefined) ??
      (chainId === 31337 ? HARDHAT_OPERATOR_KEY : undefined);
    const wallet = key
      ? createChainWalletClient({ rpcUrl, chainId, privateKey: key, pollingIntervalMs: 100 })
      : undefined;
    return { chainId, addresses, publicClient, wallet };
  }
}

declare module "fastify" {
  interface FastifyInstance {
    /** The gateway's chain access: escrow balances, the operator wallet for registrations. */
    gatewayChain: ChainAccess;
  }
}

export const chainPlugin = fp<{ config: GatewayConfig }>(
  async (app: FastifyInstance, { config }) => {
    app.decorate("gatewayChain", new ChainAccess(config));
  },
  { name: "gateway-chain" },
);
