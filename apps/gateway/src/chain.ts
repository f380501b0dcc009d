import {
  type ChainPublicClient,
  type ChainWalletClient,
  createChainPublicClient,
  createChainWalletClient,
  defaultAddressesPath,
  executeIntent,
  type IntentSpec,
  inferenceEscrowAbi,
  loadAddresses,
  modelRegistryAbi,
  type PlatformAddresses,
  rpcOrigin,
} from "@openledger/chain";
import type { GatewayConfig } from "@openledger/config";
import { type Db, Prisma } from "@openledger/db";
import { AppError } from "@openledger/errors";
import { type Abi, createPublicClient, type Hex, http } from "viem";

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
  readonly #balances = new Map<string, { value: bigint; at: number }>();

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

  /** What the account may still spend from InferenceEscrow (balance minus a pending
   *  withdrawal), cached for GATEWAY_BALANCE_CACHE_MS. */
  async spendable(account: string): Promise<bigint> {
    const now = Date.now();
    const hit = this.#balances.get(account);
    if (hit && now - hit.at < this.config.GATEWAY_BALANCE_CACHE_MS) return hit.value;
    const ctx = await this.get();
    let value: bigint;
    try {
      value = await ctx.publicClient.readContract({
        address: ctx.addresses.contracts.InferenceEscrow,
        abi: inferenceEscrowAbi,
        functionName: "spendableOf",
        args: [account as Hex],
      });
    } catch (err) {
      throw new AppError("SERVICE_UNAVAILABLE", "escrow balance could not be read", { cause: err });
    }
    this.#balances.set(account, { value, at: now });
    if (this.#balances.size > 100_000) this.#balances.clear();
    return value;
  }
}

// ---------------------------------------------------------------- adapter registration

export const REGISTRATION_KIND = "ModelRegistry.registerModelFor";

/** ModelRegistry.Registration as viem encodes it. */
export interface Registration {
  kind: number;
  contentHash: Hex;
  baseModel: Hex;
  trainedOn: { datanetId: bigint; version: number }[];
  pricePer1kInput: bigint;
  pricePer1kOutput: bigint;
  metadataURI: string;
}

/** What the registration intent stores: enough to send it again from the database alone. */
export interface RegistrationPayload {
  modelId: string;
  owner: string;
  kind: number;
  contentHash: Hex;
  baseModel: Hex;
  trainedOn: { datanetId: string; version: number }[];
  pricePer1kInput: string;
  pricePer1kOutput: string;
  metadataURI: string;
}

export function registrationPayload(modelId: string, owner: string, r: Registration): RegistrationPayload {
  return {
    modelId,
    owner,
    ...r,
    trainedOn: r.trainedOn.map((t) => ({ datanetId: t.datanetId.toString(), version: t.version })),
    pricePer1kInput: r.pricePer1kInput.toString(),
    pricePer1kOutput: r.pricePer1kOutput.toString(),
  };
}

export interface RegistrationOutcome {
  /** confirmed, or pending (kept and retried by the sweeper). */
  status: "confirmed" | "pending";
  txHash?: string;
  chainModelId?: string;
  error?: string;
}

/**
 * Sends, resumes or confirms the adapter registration intent `key` (recorded with the adapter
 * row), with the same protocol as settlement's writes (@openledger/chain `executeIntent`): signed
 * locally, hash + raw bytes stored before broadcast, confirmed from the receipt, and checked
 * against the chain (`modelIdByContentHash`) before anything is sent again — so a chain that
 * fails (down, refused, response lost) is retried by the sweeper and registers the adapter once.
 * On confirmation the model row gets its on-chain id.
 */
export async function driveRegistration(
  db: Db,
  access: ChainAccess,
  key: string,
): Promise<RegistrationOutcome> {
  const intent = await db.chainIntent.findUnique({ where: { key } });
  if (!intent) throw new Error(`registration intent ${key} not found`);
  const p = intent.payload as unknown as RegistrationPayload;
  try {
    const ctx = await access.get();
    if (!ctx.wallet) throw new Error("no operator key configured (GATEWAY_OPERATOR_PRIVATE_KEY)");
    // Rows the fire-once version marked failed are retried like any pending intent.
    if (intent.status === "failed") {
      await db.chainIntent.updateMany({ where: { key, status: "failed" }, data: { status: "pending" } });
    }
    const registry = ctx.addresses.contracts.ModelRegistry;
    const chainIdOf = () =>
      ctx.publicClient.readContract({
        address: registry,
        abi: modelRegistryAbi,
        functionName: "modelIdByContentHash",
        args: [p.contentHash],
      });
    const registration: Registration = {
      kind: p.kind,
      contentHash: p.contentHash,
      baseModel: p.baseModel,
      trainedOn: p.trainedOn.map((t) => ({ datanetId: BigInt(t.datanetId), version: t.version })),
      pricePer1kInput: BigInt(p.pricePer1kInput),
      pricePer1kOutput: BigInt(p.pricePer1kOutput),
      metadataURI: p.metadataURI,
    };
    const spec: IntentSpec = {
      key,
      kind: REGISTRATION_KIND,
      payload: p as unknown as Record<string, unknown>,
      call: {
        address: registry,
        abi: modelRegistryAbi as Abi,
        functionName: "registerModelFor",
        args: [p.owner as Hex, registration],
      },
      // The registry refuses a content hash twice, so "registered" is readable on chain.
      isDone: async () => (await chainIdOf()) !== 0n,
    };
    const { txHash } = await executeIntent(db, { publicClient: ctx.publicClient, wallet: ctx.wallet }, spec);
    const chainModelId = await chainIdOf();
    await db.model.update({
      where: { id: p.modelId },
      data: { chainModelId: new Prisma.Decimal(chainModelId.toString()) },
    });
    return {
      status: "confirmed",
      ...(txHash ? { txHash } : {}),
      chainModelId: chainModelId.toString(),
    };
  } catch (err) {
    const message = err instanceof Error ? err.message.split("\n")[0]! : String(err);
    await db.chainIntent.updateMany({
      where: { key, status: { not: "confirmed" } },
      data: { error: message.slice(0, 2000) },
    });
    return { status: "pending", error: message };
  }
}

/** Re-drives registration intents not confirmed yet (oldest first), and confirmed ones whose
 *  model never got its on-chain id (a crash between the confirmation and that write); returns
 *  how many confirmed. */
export async function sweepRegistrations(
  db: Db,
  access: ChainAccess,
  options: { olderThanMs?: number; limit?: number } = {},
): Promise<number> {
  const stale = await db.chainIntent.findMany({
    where: {
      kind: REGISTRATION_KIND,
      status: { in: ["pending", "submitted", "failed"] },
      updatedAt: { lt: new Date(Date.now() - (options.olderThanMs ?? 5_000)) },
    },
    orderBy: { createdAt: "asc" },
    take: options.limit ?? 50,
  });
  const unlinked = await db.$queryRawUnsafe<{ key: string }[]>(
    `SELECT ci.key FROM chain_intents ci JOIN models m ON m.id = ci.payload->>'modelId'
      WHERE ci.kind = $1 AND ci.status = 'confirmed' AND m.chain_model_id IS NULL AND ci.updated_at < $2
      ORDER BY ci.created_at LIMIT $3`,
    REGISTRATION_KIND,
    new Date(Date.now() - (options.olderThanMs ?? 5_000)),
    options.limit ?? 50,
  );
  let confirmed = 0;
  for (const key of [...stale.map((i) => i.key), ...unlinked.map((u) => u.key)]) {
    if ((await driveRegistration(db, access, key)).status === "confirmed") confirmed++;
  }
  return confirmed;
}
