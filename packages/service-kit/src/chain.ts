import {
  type ChainConnection,
  ChainConnector,
  ChainUnavailableError,
  type ConfiguredKey,
  type SignerRole,
} from "@openledger/chain";
import type { BaseConfig } from "@openledger/config";
import { AppError } from "@openledger/errors";
import type { FastifyInstance } from "fastify";
import fp from "fastify-plugin";

/**
 * The service's one chain connector (packages/chain `ChainConnector`): lazy, one viem public
 * client, one wallet per signer role, the addresses file checked against the node's chain id,
 * dev keys only with CHAIN_PROFILE=dev, intents through the one `executeIntent`.
 */
export class ServiceChain extends ChainConnector {
  /**
   * packages/chain's bounded request-path read (`CHAIN_REQUEST_TIMEOUT_MS`, circuit breaker): a chain
   * that does not answer is a 503 CHAIN_UNAVAILABLE (retry-after 1) instead of a request that hangs.
   */
  override async read<T>(fn: (connection: ChainConnection) => Promise<T>): Promise<T> {
    try {
      return await super.read(fn);
    } catch (err) {
      if (err instanceof ChainUnavailableError) {
        throw new AppError("CHAIN_UNAVAILABLE", err.message, {
          status: 503,
          headers: { "retry-after": "1" },
          cause: err,
        });
      }
      throw err;
    }
  }

  /**
   * packages/chain's request-path connection (connecting and every RPC of its reader bounded, circuit
   * breaker): a chain that cannot be used answers 503 CHAIN_UNAVAILABLE.
   */
  override async require(): Promise<ChainConnection> {
    try {
      return await super.require();
    } catch (err) {
      throw new AppError("CHAIN_UNAVAILABLE", `the chain is not usable: ${(err as Error).message}`, {
        status: 503,
        headers: { "retry-after": "1" },
        cause: err,
      });
    }
  }
}

declare module "fastify" {
  interface FastifyInstance {
    /** The chain: `await app.chain.get()` (or `.require()` on a request path). */
    chain: ServiceChain;
  }
}

/** Config variables that hold a key, for the roles a service plays on chain. */
export interface ChainRoles<C> {
  /** PUBLISHER/SLASHER/REGISTRAR: the operator's transactions (datanets, gateway). */
  operator?: KeyVariable<C>;
  /** SETTLER_ROLE on InferenceEscrow (settlement). */
  settler?: KeyVariable<C>;
  /** Comma-separated validator keys that sign results or epoch roots (never transactions). */
  validators?: KeyVariable<C>;
}

/** The name of a string-valued config variable. */
type KeyVariable<C> = { [K in keyof C]: C[K] extends string | undefined ? K : never }[keyof C] & string;

export interface ChainPluginOptions<C extends BaseConfig> {
  config: C;
  roles?: ChainRoles<C>;
}

function configured<C>(config: C, variable: KeyVariable<C> | undefined): ConfiguredKey | undefined {
  if (!variable) return undefined;
  return { key: config[variable] as string | undefined, variable };
}

/** A service's chain connector from its config (what `app.chain` is; tests of one part build their own). */
export function createServiceChain<C extends BaseConfig>(config: C, roles: ChainRoles<C> = {}): ServiceChain {
  const signers: Partial<Record<SignerRole, ConfiguredKey>> = {};
  const operator = configured(config, roles.operator);
  const settler = configured(config, roles.settler);
  if (operator) signers.operator = operator;
  if (settler) signers.settler = settler;
  const validators = configured(config, roles.validators);
  return new ServiceChain({
    rpcUrl: config.CHAIN_RPC_URL,
    addressesFile: config.CHAIN_ADDRESSES_FILE,
    profile: config.CHAIN_PROFILE,
    requestTimeoutMs: config.CHAIN_REQUEST_TIMEOUT_MS,
    rpcTimeoutMs: config.CHAIN_RPC_TIMEOUT_MS,
    signers,
    ...(validators ? { validators } : {}),
  });
}

export const chainPlugin = fp<ChainPluginOptions<BaseConfig>>(
  async (app: FastifyInstance, { config, roles = {} }) => {
    app.decorate("chain", createServiceChain(config, roles));
  },
  { name: "openledger-chain" },
);
