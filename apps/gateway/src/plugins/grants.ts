import { createHash, randomBytes, randomUUID } from "node:crypto";
import { type Db, Prisma, type TrainingGrant, type Tx } from "@openledger/db";
import { AppError } from "@openledger/errors";
import type { Producer } from "@openledger/queue";
import type { GrantRequest } from "@openledger/service-kit";
import { priceInference } from "@openledger/settlement-core";
import type { FastifyBaseLogger, FastifyInstance } from "fastify";
import fp from "fastify-plugin";
import type { Billing } from "./billing.ts";
import type { ModelCatalog } from "./catalog.ts";
import type {} from "./host.ts"; // its `declare module "fastify"` (host): in every program with this file

/** Training grant tokens: `gt-` + 24 random bytes (base64url); only their SHA-256 is stored. */
export const GRANT_TOKEN_PREFIX = "gt-";
const ADDRESS = /^0x[0-9a-f]{40}$/;

function hashToken(token: string): string {
  return createHash("sha256").update(token).digest("hex");
}

/** What a job trained, as the factory reports it with the adapter. */
export interface TrainingUsage {
  trainedTokens: number;
  /** Lower-case address -> label tokens of its rows the job trained on. */
  tokensByContributor: Map<string, number>;
  trainingConfigHash: string;
  job: string;
}

/** The datanet versions of a grant must be published: registered on chain, not pending. */
async function checkPublished(db: Db, versionIds: string[]): Promise<void> {
  const rows = await db.$queryRaw<{ id: string; status: string; chain_datanet_id: string | null }[]>`
    SELECT v.id::text AS id, v.status::text AS status, d.chain_datanet_id::text AS chain_datanet_id
      FROM datanet_versions v JOIN datanets d ON d.id = v.datanet_id WHERE v.id = ANY(${versionIds}::uuid[])`;
  for (const id of versionIds) {
    const v = rows.find((r) => r.id === id);
    if (!v)
      throw new AppError("DATANET_VERSION_NOT_FOUND", `datanet version ${id} does not exist`, {
        status: 404,
      });
    if (v.status === "pending" || v.chain_datanet_id === null) {
      throw new AppError("DATANET_VERSION_NOT_PUBLISHED", `datanet version ${id} is not published yet`, {
        status: 409,
      });
    }
  }
}

/**
 * Training grants: a builder's scoped, single-use delegation to the factory. Created with the
 * builder's own API key (the factory passes the builder's request through), a grant
 *  - holds the job's maximum fee in the builder's escrow (a reservation that lives until the
 *    grant expires: the balance check counts it at once, so the escrow cannot be spent twice);
 *  - lets its token holder register exactly ONE adapter for that builder, trained on exactly the
 *    grant's datanet versions and base model, through the ordinary upload path (`POST
 *    /v1/adapters` with `Authorization: Bearer gt-…`), which in the same transaction records the
 *    training's metered usage (billed at the grant's price, the hold released) for settlement to
 *    split among the contributors by their trained tokens;
 *  - can be released (the hold dropped) by its token or the builder's key, and expires.
 * No key in the factory can register adapters or spend escrow for anyone who did not create a grant
 * with their own credential, and a grant's token can do nothing else.
 */
export class TrainingGrants {
  constructor(
    readonly db: Db,
    readonly billing: Billing,
    readonly catalog: ModelCatalog,
    readonly producer: Producer,
    readonly baseContentHash: () => string,
    readonly log: FastifyBaseLogger,
  ) {}

  async create(account: string, req: GrantRequest): Promise<{ grant: TrainingGrant; token: string }> {
    const versionIds = [...new Set(req.datanetVersionIds.map((v) => v.toLowerCase()))];
    if (req.baseModelHash !== this.baseContentHash()) {
      throw new AppError(
        "BASE_MODEL_MISMATCH",
        `this gateway serves base model ${this.baseContentHash()}, not ${req.baseModelHash}`,
        { status: 409 },
      );
    }
    await checkPublished(this.db, versionIds);
    const maxFee = priceInference({
      inputTokens: req.maxTokens,
      outputTokens: 0,
      priceInPer1kWei: req.pricePer1kTokensWei,
      priceOutPer1kWei: 0n,
    });
    const token = `${GRANT_TOKEN_PREFIX}${randomBytes(24).toString("base64url")}`;
    const id = randomUUID();
    const reservationId = randomUUID();
    const expiresAt = new Date(Date.now() + req.expiresInSeconds * 1000);
    // The escrow balance is read before the transaction (no lock held across an RPC); the hold is one
    // conditional statement (402 when the escrow cannot cover the maximum fee), in the transaction
    // that writes the grant, so a refused hold leaves no grant and a refused grant no hold.
    const balance = await this.billing.balance(account);
    try {
      const grant = await this.db.$transaction(async (tx) => {
        const g = await tx.trainingGrant.create({
          data: {
            id,
            tokenHash: hashToken(token),
            accountAddress: account,
            jobRef: req.job,
            datanetVersionIds: versionIds,
            baseModelHash: req.baseModelHash,
            pricePer1kTokensWei: new Prisma.Decimal(req.pricePer1kTokensWei.toString()),
            maxTokens: BigInt(req.maxTokens),
            maxFeeWei: new Prisma.Decimal(maxFee.toString()),
            reservationId,
            expiresAt,
          },
        });
        await this.billing.reserveWithin({ id: reservationId, account, maxCost: maxFee }, balance, {
          expiresAt,
          db: tx,
        });
        return g;
      });
      return { grant, token };
    } catch (err) {
      if (err instanceof Prisma.PrismaClientKnownRequestError && err.code === "P2002") {
        throw new AppError("CONFLICT", `job ${req.job} already has a training grant`, { status: 409 });
      }
      throw err;
    }
  }

  /** The grant of a bearer token, or 401. */
  async byToken(token: string): Promise<TrainingGrant> {
    const grant = await this.db.trainingGrant.findUnique({ where: { tokenHash: hashToken(token) } });
    if (!grant) throw new AppError("INVALID_GRANT", "invalid training grant token", { status: 401 });
    return grant;
  }

  /** Drops an unused grant's hold (its token or its owner may); a no-op once used or released. */
  async release(grant: TrainingGrant): Promise<TrainingGrant> {
    return this.db.$transaction(async (tx) => {
      const released = await tx.trainingGrant.updateMany({
        where: { id: grant.id, usedAt: null, releasedAt: null },
        data: { releasedAt: new Date() },
      });
      if (released.count > 0) await this.billing.releaseHold(grant.reservationId, tx);
      return tx.trainingGrant.findUniqueOrThrow({ where: { id: grant.id } });
    });
  }

  /**
   * Checks what the factory reports against the grant before anything is written: the versions are
   * the grant's, the tokens within its bound and summing up, each contributor one whose rows are in
   * those versions, the training-config hash well-formed.
   */
  async checkUsage(grant: TrainingGrant, versionIds: string[], usage: TrainingUsage): Promise<void> {
    const want = [...grant.datanetVersionIds].sort().join(",");
    const got = [...new Set(versionIds.map((v) => v.toLowerCase()))].sort().join(",");
    if (want !== got) {
      throw new AppError("VALIDATION_FAILED", "datanet_version_ids must be exactly the grant's", {
        status: 400,
      });
    }
    if (usage.job !== grant.jobRef) {
      throw new AppError("VALIDATION_FAILED", `job must be ${grant.jobRef} (the grant's)`, { status: 400 });
    }
    if (!/^[0-9a-f]{64}$/.test(usage.trainingConfigHash)) {
      throw new AppError("VALIDATION_FAILED", "training_config_hash: 64 hex digits", { status: 400 });
    }
    let sum = 0;
    for (const [address, n] of usage.tokensByContributor) {
      if (!ADDRESS.test(address) || !Number.isSafeInteger(n) || n <= 0) {
        throw new AppError(
          "VALIDATION_FAILED",
          "trained_tokens_by_contributor: {lower-case address: positive integer}",
          { status: 400 },
        );
      }
      sum += n;
    }
    if (sum !== usage.trainedTokens) {
      throw new AppError(
        "VALIDATION_FAILED",
        `trained_tokens (${usage.trainedTokens}) must equal the sum over contributors (${sum})`,
        { status: 400 },
      );
    }
    if (BigInt(usage.trainedTokens) > grant.maxTokens) {
      throw new AppError(
        "VALIDATION_FAILED",
        `trained_tokens ${usage.trainedTokens} exceed the grant's bound of ${grant.maxTokens}`,
        { status: 400 },
      );
    }
    const addresses = [...usage.tokensByContributor.keys()];
    const known = await this.db.$queryRaw<{ address: string }[]>`
      SELECT DISTINCT r.contributor_address AS address
        FROM datanet_version_rows vr JOIN datanet_rows r ON r.id = vr.row_id
       WHERE vr.version_id = ANY(${grant.datanetVersionIds}::uuid[]) AND r.contributor_address = ANY(${addresses}::text[])`;
    if (known.length !== addresses.length) {
      const missing = addresses.filter((a) => !known.some((k) => k.address === a));
      throw new AppError(
        "VALIDATION_FAILED",
        `not contributors of the grant's datanet versions: ${missing.join(", ")}`,
        { status: 400 },
      );
    }
  }

  /**
   * Inside the registration's transaction: marks the grant used by `modelId` (refused if it was used,
   * released or has expired meanwhile), records the training's metered usage — an `inferences` row of
   * the new adapter for the builder, `trainedTokens` input tokens at the grant's price, so the
   * escrow, the gateway's balance check, charges, epochs, claims and reconciliation treat it like any
   * fee — with its per-contributor tokens, and moves the hold into the builder's billed total.
   * Returns the usage row's id (settlement splits it among the contributors by their tokens).
   */
  async use(tx: Tx, grant: TrainingGrant, modelId: string, usage: TrainingUsage): Promise<string> {
    const inferenceId = randomUUID();
    const taken = await tx.trainingGrant.updateMany({
      where: { id: grant.id, usedAt: null, releasedAt: null, expiresAt: { gt: new Date() } },
      data: {
        usedAt: new Date(),
        modelId,
        trainedTokens: BigInt(usage.trainedTokens),
        trainingConfigHash: usage.trainingConfigHash,
      },
    });
    if (taken.count === 0) {
      throw new AppError("GRANT_CLOSED", "this training grant was used, released or has expired", {
        status: 409,
      });
    }
    const prompt = `fine-tuning job ${usage.job}: ${usage.trainedTokens} tokens of datanet versions ${grant.datanetVersionIds.join(", ")}`;
    const price = grant.pricePer1kTokensWei.toFixed(0);
    await tx.$executeRaw`
      WITH res AS (
        DELETE FROM gateway_reservations WHERE id = ${grant.reservationId}::uuid RETURNING account_address, max_cost_wei
      ), inf AS (
        INSERT INTO inferences (id, model_id, account_address, prompt, output, input_tokens, output_tokens,
                                price_in_per_1k_wei, price_out_per_1k_wei)
        VALUES (${inferenceId}::uuid, ${modelId}, ${grant.accountAddress}, ${prompt}, '', ${usage.trainedTokens}::int, 0,
                ${price}::numeric, 0)
        RETURNING account_address, CEIL(input_tokens * price_in_per_1k_wei / 1000) AS fee
      )
      INSERT INTO gateway_accounts AS a (account_address, billed_wei, reserved_wei)
      SELECT inf.account_address, inf.fee, -COALESCE((SELECT max_cost_wei FROM res), 0) FROM inf
      ON CONFLICT (account_address) DO UPDATE
        SET billed_wei = a.billed_wei + EXCLUDED.billed_wei, reserved_wei = a.reserved_wei + EXCLUDED.reserved_wei,
            updated_at = now()`;
    await tx.trainingGrant.update({ where: { id: grant.id }, data: { inferenceId } });
    await tx.trainingGrantShare.createMany({
      data: [...usage.tokensByContributor].map(([contributorAddress, tokens]) => ({
        grantId: grant.id,
        contributorAddress,
        tokens: BigInt(tokens),
      })),
    });
    return inferenceId;
  }

  /** Hands the training usage to settlement (which needs no attribution for it: the split is by tokens). */
  async settle(inferenceId: string): Promise<void> {
    try {
      await this.producer.enqueue("inference.completed", { inferenceId });
    } catch (err) {
      // Settlement's deadline sweeper settles completed inferences it never heard of.
      this.log.warn({ err, inferenceId }, "training usage not handed to settlement now; its sweeper will");
    }
  }
}

declare module "fastify" {
  interface FastifyInstance {
    grants: TrainingGrants;
  }
}

export const grantsPlugin = fp(
  async (app: FastifyInstance) => {
    app.decorate(
      "grants",
      new TrainingGrants(
        app.db,
        app.billing,
        app.catalog,
        app.producer,
        () => app.host.contentHash,
        app.log.child({ component: "grants" }),
      ),
    );
  },
  { name: "gateway-grants", dependencies: ["gateway-billing", "gateway-catalog"] },
);
