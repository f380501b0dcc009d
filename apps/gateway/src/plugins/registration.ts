import {
  builderApprovalTypedData,
  ModelKind as ChainModelKind,
  datanetRegistryAbi,
  type IntentSpec,
  modelRegistryAbi,
} from "@openledger/chain";
import type { GatewayConfig } from "@openledger/config";
import { type Db, Prisma, type Tx } from "@openledger/db";
import { AppError } from "@openledger/errors";
import type { ServiceChain } from "@openledger/service-kit";
import type { FastifyBaseLogger, FastifyInstance } from "fastify";
import fp from "fastify-plugin";
import { type Abi, type Address, getAddress, type Hex, recoverTypedDataAddress } from "viem";
import type { ModelCatalog, ServableModel } from "./catalog.ts";

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
  access: ServiceChain,
  key: string,
): Promise<RegistrationOutcome> {
  const intent = await db.chainIntent.findUnique({ where: { key } });
  if (!intent) throw new Error(`registration intent ${key} not found`);
  const p = intent.payload as unknown as RegistrationPayload;
  try {
    const ctx = await access.get();
    ctx.signer("operator"); // names GATEWAY_OPERATOR_PRIVATE_KEY when it is missing
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
    const { txHash } = await ctx.execute(db, "operator", spec);
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
  access: ServiceChain,
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

export interface RegistrationInput {
  id: string;
  kind?: "adapter" | "small_model";
  owner: string;
  contentHash: string;
  priceIn: bigint;
  priceOut: bigint;
  datanetVersionIds: string[];
  onChain?: boolean;
  /** Bytes of the adapter's files (counted in the owner's quota). */
  sizeBytes?: number;
  /** The owner's adapter quota, checked in the registering transaction (uploads pass it). */
  quota?: AdapterQuota;
  /** Lineage beyond base model and datanet versions, appended to the on-chain metadata URI as a query
   *  (e.g. the factory's job and training-config hash). */
  lineage?: Record<string, string>;
  /** More writes that must commit with the registration or not at all (a training grant's use). */
  inTransaction?: (tx: Tx) => Promise<void>;
}

/** Active adapters one account may hold: how many, and how many bytes in all. */
export interface AdapterQuota {
  count: number;
  bytes: number;
}

/** What an account's active adapters use of its quota. */
export async function adapterUsage(db: Db | Tx, owner: string): Promise<{ count: number; bytes: number }> {
  const [row] = await db.$queryRaw<{ count: number; bytes: string }[]>`
    SELECT count(*)::int AS count, COALESCE(sum(size_bytes), 0)::text AS bytes
      FROM models WHERE owner_address = ${owner} AND kind = 'adapter' AND status = 'active'`;
  return { count: row?.count ?? 0, bytes: Number(row?.bytes ?? 0) };
}

/** 403 ADAPTER_QUOTA_EXCEEDED unless `adding` more bytes (and one more adapter) fit the quota. */
export function checkQuota(
  usage: { count: number; bytes: number },
  quota: AdapterQuota,
  adding: number,
): void {
  if (usage.count + 1 > quota.count || usage.bytes + adding > quota.bytes) {
    throw new AppError(
      "ADAPTER_QUOTA_EXCEEDED",
      `this account has ${usage.count} active adapters using ${usage.bytes} bytes; the quota is ${quota.count} adapters and ${quota.bytes} bytes (retire one to make room)`,
      { status: 403, details: { usage, quota } },
    );
  }
}

/**
 * Model registration: an uploaded adapter (or a small model) is recorded in Postgres — models +
 * model_training_versions + a chain intent in one transaction — and becomes servable at once; then
 * (if enabled) ModelRegistry.registerModelFor is sent and confirmed from its receipt. A chain that
 * fails leaves the intent pending for `sweep`.
 */
/** A datanet owner's EIP-712 `BuilderApproval` (DatanetRegistry), as a builder hands it over. */
export interface OwnerApproval {
  /** Unix seconds. */
  deadline: bigint;
  signature: Hex;
}

export class ModelRegistration {
  constructor(
    readonly config: GatewayConfig,
    readonly db: Db,
    readonly chain: ServiceChain,
    readonly catalog: ModelCatalog,
    readonly log: FastifyBaseLogger,
  ) {}

  /**
   * A small model may only be registered by its datanet's owner or a builder the owner approved on chain
   * (ModelRegistry enforces it too; checking first means nothing is written for a refused builder). With
   * the owner's signed `BuilderApproval` the gateway relays it (`approveBuilderBySig`, the operator pays
   * the gas) and goes on; otherwise 403 BUILDER_NOT_APPROVED. The relay is a plain transaction, not an
   * intent: it is idempotent in effect (a retry finds the builder approved, or the spent nonce refuses it).
   */
  async assertBuilderApproved(
    chainDatanetId: bigint,
    builder: string,
    approval?: OwnerApproval,
  ): Promise<void> {
    // A request path: connecting and every read are bounded (CHAIN_REQUEST_TIMEOUT_MS, else 503).
    const ctx = await this.chain.require();
    const registry = ctx.addresses.contracts.DatanetRegistry;
    const who = getAddress(builder);
    const approved = () =>
      ctx.publicClient.readContract({
        address: registry,
        abi: datanetRegistryAbi,
        functionName: "isApprovedBuilder",
        args: [chainDatanetId, who],
      });
    if (await approved()) return;
    const refuse = (why: string) =>
      new AppError(
        "BUILDER_NOT_APPROVED",
        `${why}: the datanet's owner must approve ${who} — DatanetRegistry.approveBuilder(${chainDatanetId}, ${who}, true), ` +
          "or sign an EIP-712 BuilderApproval and pass it as datanet_owner_approval",
        { status: 403 },
      );
    if (!approval) throw refuse(`${who} may not register small models on datanet ${chainDatanetId}`);
    const { owner } = await ctx.publicClient.readContract({
      address: registry,
      abi: datanetRegistryAbi,
      functionName: "getDatanet",
      args: [chainDatanetId],
    });
    const nonce = await ctx.publicClient.readContract({
      address: registry,
      abi: datanetRegistryAbi,
      functionName: "nonces",
      args: [owner],
    });
    const message = {
      datanetId: chainDatanetId,
      builder: who,
      approved: true,
      nonce,
      deadline: approval.deadline,
    };
    let signer: Address;
    try {
      signer = await recoverTypedDataAddress({
        ...builderApprovalTypedData(ctx.chainId, registry, message),
        signature: approval.signature,
      });
    } catch {
      throw refuse("datanet_owner_approval.signature is not a valid signature");
    }
    if (signer !== getAddress(owner))
      throw refuse(`datanet_owner_approval is signed by ${signer}, not the owner`);
    if (approval.deadline <= BigInt(Math.floor(Date.now() / 1000)))
      throw refuse("datanet_owner_approval expired");
    const wallet = ctx.signer("operator");
    try {
      const hash = await wallet.writeContract({
        address: registry,
        abi: datanetRegistryAbi,
        functionName: "approveBuilderBySig",
        args: [chainDatanetId, who, true, approval.deadline, approval.signature],
        account: wallet.account,
        chain: wallet.chain,
      });
      await ctx.publicClient.waitForTransactionReceipt({ hash, timeout: 60_000 });
    } catch (err) {
      this.log.warn(
        { err, chainDatanetId: chainDatanetId.toString(), builder: who },
        "approveBuilderBySig failed",
      );
    }
    if (!(await approved())) throw refuse("the owner's approval could not be recorded on chain");
  }

  async register(input: RegistrationInput): Promise<{
    model: ServableModel;
    chain: RegistrationOutcome | { status: "skipped" };
  }> {
    const onChain = input.onChain ?? this.config.GATEWAY_CHAIN_REGISTRATION;
    // Postgres reads a uuid in any case, but the existence check below compares strings.
    const versionIds = input.datanetVersionIds.map((v) => v.toLowerCase());
    const versions = versionIds.length
      ? await this.db.datanetVersion.findMany({
          where: { id: { in: versionIds } },
          include: { datanet: true },
        })
      : [];
    for (const id of versionIds) {
      if (!versions.some((v) => v.id === id)) {
        throw new AppError("VALIDATION_FAILED", `datanet version ${id} does not exist`);
      }
    }
    const trainedOn = versions.map((v) => {
      if (v.datanet.chainDatanetId === null) {
        throw new AppError(
          "CONFLICT",
          `datanet ${v.datanetId} of version ${v.id} is not registered on-chain yet`,
        );
      }
      return { datanetId: BigInt(v.datanet.chainDatanetId.toFixed(0)), version: v.version };
    });
    const small = input.kind === "small_model";
    const baseHash = this.catalog.models.get(this.catalog.baseModelId)?.contentHash;
    if (!small && !baseHash) throw new Error("the base model is not in the catalog");
    const registration: Registration = {
      kind: small ? ChainModelKind.Model : ChainModelKind.Adapter,
      contentHash: `0x${input.contentHash}` as Hex,
      baseModel: small ? (`0x${"00".repeat(32)}` as Hex) : (`0x${baseHash}` as Hex),
      trainedOn,
      pricePer1kInput: input.priceIn,
      pricePer1kOutput: input.priceOut,
      metadataURI: `openledger:model:${input.id}${
        input.lineage ? `?${new URLSearchParams(Object.entries(input.lineage).sort()).toString()}` : ""
      }`,
    };
    const intentKey = `model.register:${input.contentHash}`;
    let row: Awaited<ReturnType<Db["model"]["create"]>>;
    try {
      row = await this.db.$transaction(async (tx) => {
        if (input.quota) {
          // One owner's uploads register one at a time, so concurrent ones cannot pass the quota together.
          await tx.$executeRaw`SELECT pg_advisory_xact_lock(hashtextextended(${`adapter-quota:${input.owner}`}, 0))`;
          checkQuota(await adapterUsage(tx, input.owner), input.quota, input.sizeBytes ?? 0);
        }
        const created = await tx.model.create({
          data: {
            id: input.id,
            kind: small ? "small_model" : "adapter",
            ownerAddress: input.owner,
            baseModel: small ? null : this.catalog.baseModelId,
            contentHash: input.contentHash,
            priceInPer1kWei: new Prisma.Decimal(input.priceIn.toString()),
            priceOutPer1kWei: new Prisma.Decimal(input.priceOut.toString()),
            ...(input.sizeBytes !== undefined ? { sizeBytes: BigInt(input.sizeBytes) } : {}),
          },
        });
        if (versionIds.length) {
          await tx.modelTrainingVersion.createMany({
            data: versionIds.map((v) => ({ modelId: input.id, datanetVersionId: v })),
          });
        }
        await input.inTransaction?.(tx);
        if (onChain) {
          await tx.chainIntent.create({
            data: {
              key: intentKey,
              kind: REGISTRATION_KIND,
              payload: { ...registrationPayload(input.id, input.owner, registration) },
            },
          });
        }
        return created;
      });
    } catch (err) {
      if (err instanceof Prisma.PrismaClientKnownRequestError && err.code === "P2002") {
        throw new AppError("CONFLICT", `a model with this id or these exact files is already registered`);
      }
      throw err;
    }
    const model = this.catalog.remember(row, small ? versionIds[0] : undefined);
    if (!onChain) return { model, chain: { status: "skipped" } };
    // Sent now; if the chain fails, the intent stays pending and the sweeper retries it.
    const chain = await driveRegistration(this.db, this.chain, intentKey);
    if (chain.status !== "confirmed")
      this.log.warn(
        { key: intentKey, error: chain.error },
        "on-chain model registration pending; will retry",
      );
    return { model, chain };
  }

  /** Drives registrations left pending (see `sweepRegistrations`). */
  sweep(): Promise<number> {
    return this.config.GATEWAY_CHAIN_REGISTRATION
      ? sweepRegistrations(this.db, this.chain)
      : Promise.resolve(0);
  }
}

declare module "fastify" {
  interface FastifyInstance {
    registration: ModelRegistration;
  }
}

export const registrationPlugin = fp<{ config: GatewayConfig }>(
  async (app: FastifyInstance, { config }) => {
    app.decorate(
      "registration",
      new ModelRegistration(
        config,
        app.db,
        app.chain,
        app.catalog,
        app.log.child({ component: "registration" }),
      ),
    );
  },
  { name: "gateway-registration", dependencies: ["gateway-catalog"] },
);
