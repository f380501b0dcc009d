import {
  defaultAddressesPath,
  loadAddresses,
  type PlatformAddresses,
  rpcChainId,
  signApiKeyRequest,
} from "@openledger/chain";
import type { LocalAccount } from "viem";
import { createSiweMessage } from "viem/siwe";
import { AttributionClient } from "./attribution.ts";
import { ChainSteps } from "./chain.ts";
import { DatanetsClient, type SignInSession } from "./datanets.ts";
import { OpenLedgerError } from "./errors.ts";
import { FactoryClient, type FineTuneJob } from "./factory.ts";
import { type ApiKey, GatewayClient } from "./gateway.ts";
import { poll, ServiceHttp } from "./http.ts";
import { SettlementClient, type SettlementList } from "./settlement.ts";

export const SERVICES = ["datanets", "attribution", "gateway", "settlement", "factory"] as const;
export type ServiceName = (typeof SERVICES)[number];
export type Endpoints = Record<ServiceName, string>;

export interface OpenLedgerOptions {
  endpoints: Endpoints;
  rpcUrl: string;
  addresses: PlatformAddresses;
  /** The key that signs (SIWE, API-key requests, transactions). Reads work without one. */
  account?: LocalAccount;
  /** A datanets session token from an earlier `signIn`. */
  sessionToken?: string;
  /** A gateway API key from an earlier `createApiKey`. */
  apiKey?: string;
  /** Operators: the settlement admin token (closing epochs now). */
  settlementAdminToken?: string;
  /** Per HTTP request (default 60 s). */
  timeoutMs?: number;
  pollingIntervalMs?: number;
}

/**
 * One client for the whole platform: the five services over HTTP (types from their own zod schemas)
 * and the chain through viem, acting as one account.
 */
export class OpenLedger {
  readonly endpoints: Endpoints;
  readonly datanets: DatanetsClient;
  readonly attribution: AttributionClient;
  readonly gateway: GatewayClient;
  readonly settlement: SettlementClient;
  readonly factory: FactoryClient;
  readonly chain: ChainSteps;
  sessionToken: string | undefined;
  apiKey: string | undefined;

  constructor(readonly options: OpenLedgerOptions) {
    this.endpoints = options.endpoints;
    this.sessionToken = options.sessionToken;
    this.apiKey = options.apiKey;
    const http = (service: ServiceName, headers?: () => Record<string, string>) =>
      new ServiceHttp({
        service,
        baseUrl: options.endpoints[service],
        ...(headers ? { headers } : {}),
        ...(options.timeoutMs ? { timeoutMs: options.timeoutMs } : {}),
      });
    this.datanets = new DatanetsClient(
      http(
        "datanets",
        (): Record<string, string> =>
          this.sessionToken ? { authorization: `Bearer ${this.sessionToken}` } : {},
      ),
    );
    // Its routes that cost CPU (index builds, POST /v1/attribute) take the account's gateway API key.
    this.attribution = new AttributionClient(
      http(
        "attribution",
        (): Record<string, string> => (this.apiKey ? { authorization: `Bearer ${this.apiKey}` } : {}),
      ),
    );
    this.gateway = new GatewayClient(http("gateway"), () => this.apiKey);
    this.settlement = new SettlementClient(http("settlement"), () => options.settlementAdminToken);
    // ModelFactory's fine-tuning API takes the same gateway API key.
    this.factory = new FactoryClient(http("factory"), () => this.apiKey);
    this.chain = new ChainSteps({
      rpcUrl: options.rpcUrl,
      addresses: options.addresses,
      ...(options.account ? { account: options.account } : {}),
      ...(options.pollingIntervalMs !== undefined ? { pollingIntervalMs: options.pollingIntervalMs } : {}),
    });
  }

  /** The signing account's address (KEY_REQUIRED without a key). */
  get address(): `0x${string}` {
    return this.chain.requireAccount().address;
  }

  /** Sign-In with Ethereum on the datanets service (EIP-4361 message, personal_sign); keeps the session. */
  async signIn(): Promise<SignInSession> {
    const account = this.chain.requireAccount();
    const n = await this.datanets.nonce();
    const message = createSiweMessage({
      address: account.address,
      chainId: n.chainId,
      domain: n.domain,
      nonce: n.nonce,
      uri: `http://${n.domain}`,
      version: "1",
      issuedAt: new Date(),
    });
    const session = await this.datanets.verify({
      message,
      signature: await account.signMessage({ message }),
    });
    this.sessionToken = session.token;
    return session;
  }

  /** Creates an API key for the account by its own EIP-712 signature (no admin involved); keeps it. */
  async createApiKey(name = ""): Promise<ApiKey> {
    const request = await signApiKeyRequest(this.chain.requireAccount(), this.chain.chainId, name);
    const key = await this.gateway.createApiKey(request);
    this.apiKey = key.key;
    return key;
  }

  /**
   * The settlement of a succeeded fine-tuning job's fee (the builder pays, the contributors whose rows
   * it trained on earn, by tokens trained), or undefined until the settlement service has it.
   */
  async trainingSettlement(job: FineTuneJob): Promise<SettlementList["items"][number] | undefined> {
    if (job.status !== "succeeded" || !job.fine_tuned_model) return undefined;
    const list = await this.settlement.settlements({ modelId: job.fine_tuned_model, limit: 200 });
    // The training is the model's first settlement with its owner as the consumer.
    return list.items.findLast((i) => i.consumer.toLowerCase() === job.organization_id.toLowerCase());
  }
  waitTrainingSettled(job: FineTuneJob, opts: { timeoutMs?: number } = {}) {
    return poll(`the training fee of ${job.id} to be settled`, () => this.trainingSettlement(job), {
      timeoutMs: opts.timeoutMs ?? 120_000,
      intervalMs: 500,
    });
  }

  /** Names every part of the platform that does not answer (empty when all are ready). */
  async unreachable(): Promise<string[]> {
    const down: string[] = [];
    await Promise.all(
      SERVICES.map(async (s) => {
        try {
          const res = await fetch(`${this.endpoints[s]}/readyz`, { signal: AbortSignal.timeout(3000) });
          if (res.status !== 200) down.push(`${s} at ${this.endpoints[s]} is not ready (HTTP ${res.status})`);
        } catch (err) {
          down.push(`${s} does not answer at ${this.endpoints[s]} (${(err as Error).message})`);
        }
      }),
    );
    try {
      const id = await rpcChainId(this.options.rpcUrl, 3000);
      if (id !== this.chain.chainId)
        down.push(
          `the chain at ${this.options.rpcUrl} has id ${id}, the addresses say ${this.chain.chainId}`,
        );
    } catch (err) {
      down.push(`no chain answers at ${this.options.rpcUrl} (${(err as Error).message})`);
    }
    return down.sort();
  }
}

/**
 * Where the platform is, from the same environment `npm start` reads (DATANETS_PORT, ..., FACTORY_PORT,
 * CHAIN_RPC_URL, CHAIN_ADDRESSES_FILE), with OPENLEDGER_<SERVICE>_URL to point at another host.
 */
export function endpointsFromEnv(
  env: Record<string, string | undefined> = process.env,
): Endpoints & { rpcUrl: string } {
  const host = !env.HOST || env.HOST === "0.0.0.0" || env.HOST === "::" ? "127.0.0.1" : env.HOST;
  const url = (name: ServiceName, port: number) =>
    (
      env[`OPENLEDGER_${name.toUpperCase()}_URL`] ??
      `http://${host}:${env[`${name.toUpperCase()}_PORT`] ?? port}`
    ).replace(/\/+$/, "");
  return {
    datanets: url("datanets", 4001),
    attribution: url("attribution", 4002),
    gateway: url("gateway", 4003),
    settlement: url("settlement", 4004),
    factory: url("factory", 4006),
    rpcUrl: env.OPENLEDGER_RPC_URL ?? env.CHAIN_RPC_URL ?? "http://127.0.0.1:8545",
  };
}

/** The deployment's contract addresses: OPENLEDGER_ADDRESSES_FILE / CHAIN_ADDRESSES_FILE, else the local default. */
export async function addressesFromEnv(
  rpcUrl: string,
  env: Record<string, string | undefined> = process.env,
): Promise<PlatformAddresses> {
  let file = env.OPENLEDGER_ADDRESSES_FILE ?? env.CHAIN_ADDRESSES_FILE;
  if (!file) {
    const chainId = await rpcChainId(rpcUrl, 5000).catch(() => {
      throw new OpenLedgerError(
        "UNREACHABLE",
        `no chain answers at ${rpcUrl}: is the platform running (npm start)?`,
        {
          source: "chain",
        },
      );
    });
    file = defaultAddressesPath(chainId);
  }
  return loadAddresses(file).catch((err: Error) => {
    throw new OpenLedgerError(
      "NO_ADDRESSES",
      `no contract addresses at ${file} (${err.message}); set OPENLEDGER_ADDRESSES_FILE`,
    );
  });
}
