import { createHash, randomBytes, randomUUID } from "node:crypto";
import { ModelKind as ChainModelKind } from "@openledger/chain";
import type { GatewayConfig } from "@openledger/config";
import { type Db, Prisma, type Tx, toWei } from "@openledger/db";
import { AppError } from "@openledger/errors";
import type { Producer } from "@openledger/queue";
import { AccountRateLimiter } from "@openledger/serving-core";
import { priceInference } from "@openledger/settlement-core";
import type { FastifyBaseLogger } from "fastify";
import type { Hex } from "viem";
import { AdapterStore } from "./adapter-store.ts";
import {
  ChainAccess,
  driveRegistration,
  REGISTRATION_KIND,
  type Registration,
  type RegistrationOutcome,
  registrationPayload,
  sweepRegistrations,
} from "./chain.ts";
import type { ModelHost } from "./model-host.ts";
import { repoPath } from "./model-host.ts";
import { type LoadedSmallModel, SmallModelRuntime, SmallModelUnavailable } from "./small-models.ts";

export interface ServableModel {
  id: string;
  kind: "base" | "adapter" | "small_model";
  ownerAddress: string;
  contentHash: string;
  priceInPer1kWei: bigint;
  priceOutPer1kWei: bigint;
  createdAt: Date;
  /** Small models: the labelled datanet version whose influence model they serve. */
  datanetVersionId?: string;
  /** Small models: SHA-256 of that influence model's ONNX export (read from Postgres on first use). */
  onnxHash?: string;
}

export interface InferenceRecord {
  modelId: string;
  account: string;
  prompt: string;
  output: string;
  inputTokens: number;
  outputTokens: number;
  ttftMs: number | null;
  durationMs: number | null;
}

/**
 * Fee of an inference in wei, exactly as settlement charges it (settlement-core's
 * `priceInference`: ceil(in * priceIn / 1000) + ceil(out * priceOut / 1000)), so the
 * balance check never drifts from what is actually charged.
 */
export function inferenceFee(
  m: Pick<ServableModel, "priceInPer1kWei" | "priceOutPer1kWei">,
  inTok: number,
  outTok: number,
) {
  return priceInference({
    inputTokens: inTok,
    outputTokens: outTok,
    priceInPer1kWei: m.priceInPer1kWei,
    priceOutPer1kWei: m.priceOutPer1kWei,
  });
}

export function hashApiKey(key: string): string {
  return createHash("sha256").update(key).digest("hex");
}

const ADDRESS = /^0x[0-9a-fA-F]{40}$/;

/** Default `GatewayState.reservationTtlMs`. */
export const RESERVATION_TTL_MS = 30_000;

/** A request's admitted max cost, held in `gateway_reservations` until recorded or released. */
export interface Reservation {
  id: string;
  account: string;
  maxCost: bigint;
}

/** Extra age allowed for an escrow balance read (RPC node lag, the gap between a charge's receipt
 *  and its `applied_at`), ms. */
const BALANCE_READ_MARGIN_MS = 1000;

/**
 * Fees of an account's completed inferences the escrow has not taken yet, as one row `owed`
 * (text, wei). Shared by `owed()` and the reservation statement.
 *
 * `balanceAgeMs`: how old the `spendableOf` it is compared with may be. A charge batch recorded
 * as applied since then may not be reflected in that balance yet, so its fees still count (for a
 * few seconds after each charge they may count twice, refusing early; never the other way).
 */
function owedQuery(account: string, balanceAgeMs = 0): Prisma.Sql {
  return Prisma.sql`
    SELECT COALESCE(SUM(COALESCE(s.fee_wei,
             CEIL(i.input_tokens * COALESCE(i.price_in_per_1k_wei, m.price_in_per_1k_wei) / 1000)
           + CEIL(i.output_tokens * COALESCE(i.price_out_per_1k_wei, m.price_out_per_1k_wei) / 1000))), 0)::text AS owed
    FROM inferences i
    JOIN models m ON m.id = i.model_id
    LEFT JOIN settlements s ON s.inference_id = i.id
    LEFT JOIN escrow_charges c ON c.id = s.charge_id
    WHERE i.account_address = ${account} AND i.status = 'completed'
      AND ((s.epoch_id IS NULL AND c.status IS DISTINCT FROM 'applied')
        OR c.applied_at > now() - ${Math.ceil(balanceAgeMs)}::int * interval '1 millisecond')`;
}

/**
 * The gateway's state around the engine: servable models (base + active adapters,
 * mirrored from Postgres), API keys, the balance check with in-flight reservations,
 * adapter registration (Postgres + chain intent) and the inference outbox.
 */
export class GatewayState {
  readonly models = new Map<string, ServableModel>();
  readonly store: AdapterStore;
  readonly chain: ChainAccess;
  readonly smallModels: SmallModelRuntime;
  /** Small models do not go through the engine's scheduler: their own per-account request bucket
   *  (GATEWAY_RATE_REQUESTS_PER_MIN, separate from the engine's). */
  readonly smallModelLimiter: AccountRateLimiter;
  host!: ModelHost;
  /**
   * How long a reservation counts without being renewed, ms. This replica renews its live ones
   * every third of it, so only a crashed (or stalled) replica's reservations lapse: the consumer's
   * balance is held at most this long after a crash.
   */
  reservationTtlMs = RESERVATION_TTL_MS;
  /** This replica's reservations not yet recorded or released (renewed while here). */
  readonly #live = new Map<string, Reservation>();
  /** Per account: the end of the chain of this process's admissions in progress. */
  readonly #admitting = new Map<string, Promise<void>>();
  #renewer: NodeJS.Timeout | undefined;
  readonly #keys = new Map<string, { account: string; at: number }>();
  #sweeper: NodeJS.Timeout | undefined;
  #sweeping: Promise<void> | undefined;

  constructor(
    readonly config: GatewayConfig,
    readonly db: Db,
    readonly producer: Producer,
    readonly log: FastifyBaseLogger,
  ) {
    this.store = new AdapterStore(repoPath(config.GATEWAY_DATA_DIR));
    this.chain = new ChainAccess(config);
    this.smallModels = new SmallModelRuntime(
      repoPath(`${config.GATEWAY_DATA_DIR}/small-models`),
      config.GATEWAY_ATTRIBUTION_URL,
    );
    const rpm = config.GATEWAY_RATE_REQUESTS_PER_MIN;
    this.smallModelLimiter = new AccountRateLimiter(() =>
      rpm > 0 ? { requests: { capacity: rpm, refillPerMinute: rpm } } : undefined,
    );
  }

  get baseModelId(): string {
    return this.config.GATEWAY_BASE_MODEL_ID;
  }

  /** Directory of a servable adapter's files (the runtime's disk tier). */
  adapterDir(id: string): string | undefined {
    const m = this.models.get(id);
    return m && m.kind === "adapter" ? this.store.dirOf(m.contentHash) : undefined;
  }

  /** Upserts the base model's row (inferences reference it) and loads active adapters and small models
   *  (a small model's ONNX graph is loaded on its first request). */
  async init(host: ModelHost): Promise<void> {
    this.host = host;
    const priceIn = new Prisma.Decimal(this.config.GATEWAY_BASE_PRICE_IN_PER_THOUSAND_WEI);
    const priceOut = new Prisma.Decimal(this.config.GATEWAY_BASE_PRICE_OUT_PER_THOUSAND_WEI);
    await this.db.model.upsert({
      where: { id: this.baseModelId },
      create: {
        id: this.baseModelId,
        kind: "base",
        ownerAddress: "0x0000000000000000000000000000000000000000",
        contentHash: host.contentHash,
        priceInPer1kWei: priceIn,
        priceOutPer1kWei: priceOut,
      },
      update: { contentHash: host.contentHash, priceInPer1kWei: priceIn, priceOutPer1kWei: priceOut },
    });
    const rows = await this.db.model.findMany({
      where: {
        OR: [
          { id: this.baseModelId },
          { kind: "adapter", baseModel: this.baseModelId, status: "active" },
          { kind: "small_model", status: "active" },
        ],
      },
      include: { trainingVersions: { select: { datanetVersionId: true } } },
    });
    for (const r of rows) this.#remember(r, r.trainingVersions[0]?.datanetVersionId);
  }

  #remember(
    r: {
      id: string;
      kind: string;
      ownerAddress: string;
      contentHash: string;
      priceInPer1kWei: Prisma.Decimal;
      priceOutPer1kWei: Prisma.Decimal;
      createdAt: Date;
    },
    datanetVersionId?: string,
  ): ServableModel {
    const m: ServableModel = {
      id: r.id,
      kind: r.kind === "base" ? "base" : r.kind === "small_model" ? "small_model" : "adapter",
      ownerAddress: r.ownerAddress,
      contentHash: r.contentHash,
      priceInPer1kWei: toWei(r.priceInPer1kWei),
      priceOutPer1kWei: toWei(r.priceOutPer1kWei),
      createdAt: r.createdAt,
      ...(datanetVersionId !== undefined && r.kind === "small_model" ? { datanetVersionId } : {}),
    };
    this.models.set(m.id, m);
    return m;
  }

  // ---------------------------------------------------------------- API keys

  async createApiKey(account: string, name: string): Promise<{ id: string; key: string; prefix: string }> {
    if (!ADDRESS.test(account)) throw new AppError("VALIDATION_FAILED", "account must be a 0x address");
    const key = `sk-${randomBytes(24).toString("base64url")}`;
    const prefix = key.slice(0, 10);
    const row = await this.db.apiKey.create({
      data: { keyHash: hashApiKey(key), prefix, accountAddress: account.toLowerCase(), name },
    });
    return { id: row.id, key, prefix };
  }

  /** The account of a bearer key, or undefined (cached 10 s: revocation takes effect within it). */
  async accountOfKey(key: string): Promise<string | undefined> {
    const hash = hashApiKey(key);
    const hit = this.#keys.get(hash);
    if (hit && Date.now() - hit.at < 10_000) return hit.account;
    const row = await this.db.apiKey.findUnique({ where: { keyHash: hash } });
    if (!row || row.revokedAt) return undefined;
    this.#keys.set(hash, { account: row.accountAddress, at: Date.now() });
    if (this.#keys.size > 100_000) this.#keys.clear();
    return row.accountAddress;
  }

  // ---------------------------------------------------------------- billing

  /**
   * Fees owed but not yet charged on-chain: completed inferences of the account whose fee the
   * escrow has not taken yet (no settlement, or a settlement not charged: new, in a charge batch
   * not applied yet, or carried over because the balance was short). A charged fee already left
   * `spendableOf`, so counting it here too would count it twice (e.g. while its epoch's root waits
   * to be posted). Settled fees are the settled amount; unsettled ones are priced as settlement
   * will price them (the prices stored with the inference).
   */
  async owed(account: string): Promise<bigint> {
    const rows = await this.db.$queryRaw<{ owed: string }[]>`${owedQuery(account)}`;
    return BigInt(rows[0]?.owed ?? "0");
  }

  /**
   * 402 unless spendable escrow - owed - reserved covers `maxCost`; on success a reservation row
   * holds the cost until the inference is recorded (`persistInference` deletes it in the
   * transaction that writes the inference, so the cost moves from reserved to owed atomically) or
   * `release` drops it (failure, cancel before any token).
   *
   * Reserved = live reservations of every replica (Postgres is the one place all replicas and the
   * owed fees meet). A per-account advisory lock serializes admissions of one account; owed and
   * reserved are read by one statement, so one snapshot: a concurrent recording is seen either
   * before (as a reservation) or after (as owed), never as neither nor both. The escrow balance is
   * read from the chain before the transaction, so the lock is never held across an RPC.
   */
  async reserve(account: string, maxCost: bigint): Promise<Reservation> {
    const started = performance.now();
    const spendable = await this.chain.spendable(account);
    // The value may come from the cache: as old as GATEWAY_BALANCE_CACHE_MS before this call.
    const ageMs = this.config.GATEWAY_BALANCE_CACHE_MS + (performance.now() - started);
    return this.reserveWithin(account, maxCost, spendable, ageMs);
  }

  /**
   * Runs admissions of one account one after the other in this process. They would queue on the
   * advisory lock anyway, but each holding a pooled connection while it waits: a burst from one
   * account would take the whole pool (and time out waiting for it) while other accounts wait.
   */
  async #oneAtATime<T>(account: string, fn: () => Promise<T>): Promise<T> {
    const run = (this.#admitting.get(account) ?? Promise.resolve()).then(fn);
    const tail = run.then(
      () => {},
      () => {},
    );
    this.#admitting.set(account, tail);
    try {
      return await run;
    } finally {
      if (this.#admitting.get(account) === tail) this.#admitting.delete(account);
    }
  }

  /**
   * `reserve` with the escrow's spendable balance already read, at most `balanceAgeMs` ago (tests
   * interleave other work here). Charges applied within that age (plus a margin) count as owed.
   */
  async reserveWithin(
    account: string,
    maxCost: bigint,
    spendable: bigint,
    balanceAgeMs = 0,
  ): Promise<Reservation> {
    const id = randomUUID();
    const ttlMs = this.reservationTtlMs;
    // Two statements in one READ COMMITTED transaction (a batch: no round trip back to this process
    // in between): the lock, then a statement whose snapshot is taken once the lock is held. In it,
    // expired rows of the account are swept, owed and the live reservations are summed from that one
    // snapshot, and the reservation is inserted only if they leave room.
    const [, rows] = await this.#oneAtATime(account, () =>
      this.db.$transaction(
        [
          this.db.$executeRaw`SELECT pg_advisory_xact_lock(hashtextextended(${`reserve:${account}`}, 0))`,
          this.db.$queryRaw<{ owed: string; reserved: string; admitted: boolean }[]>`
        WITH swept AS (
          DELETE FROM gateway_reservations WHERE account_address = ${account} AND expires_at <= now()
        ), o AS (${owedQuery(account, balanceAgeMs + BALANCE_READ_MARGIN_MS)}), r AS (
          SELECT COALESCE(SUM(max_cost_wei), 0) AS reserved FROM gateway_reservations
          WHERE account_address = ${account} AND expires_at > now()
        ), ins AS (
          INSERT INTO gateway_reservations (id, account_address, max_cost_wei, expires_at)
          SELECT ${id}::uuid, ${account}, ${maxCost.toString()}::numeric,
                 now() + ${ttlMs}::int * interval '1 millisecond'
          FROM o, r
          WHERE ${spendable.toString()}::numeric - o.owed::numeric - r.reserved >= ${maxCost.toString()}::numeric
            AND ${spendable.toString()}::numeric - o.owed::numeric - r.reserved > 0
          RETURNING id
        )
        SELECT o.owed, r.reserved::text AS reserved, EXISTS (SELECT 1 FROM ins) AS admitted FROM o, r`,
        ],
        // Explicit: under REPEATABLE READ the snapshot would date from the lock statement, before the wait.
        { isolationLevel: "ReadCommitted", maxWait: 5000 },
      ),
    );
    const row = rows[0]!;
    if (!row.admitted) {
      const owed = BigInt(row.owed);
      const reserved = BigInt(row.reserved);
      const available = spendable - owed - reserved;
      throw new AppError(
        "PAYMENT_REQUIRED",
        `insufficient escrowed balance: available ${available < 0n ? 0n : available} wei (escrow ${spendable}, owed ${owed}, in flight ${reserved}), this request may cost up to ${maxCost} wei; deposit OPEN into InferenceEscrow`,
      );
    }
    const reservation: Reservation = { id, account, maxCost };
    this.#live.set(id, reservation);
    this.#renewWhileLive();
    return reservation;
  }

  /**
   * Drops a reservation that will not be recorded (engine refused it, failed, or was cancelled
   * before any token). A no-op once `persistInference` recorded it. Never throws (it runs in
   * `finally` blocks): if Postgres refuses, the row expires by itself (no longer renewed).
   */
  async release(reservation: Reservation): Promise<void> {
    if (!this.#live.delete(reservation.id)) return;
    this.#renewWhileLive();
    try {
      await this.db.gatewayReservation.deleteMany({ where: { id: reservation.id } });
    } catch (err) {
      this.log.warn({ err, reservation: reservation.id }, "reservation not released; it expires by itself");
    }
  }

  /** Pushes back the expiry of this replica's live reservations (runs every TTL/3 while any is live). */
  async renewReservations(): Promise<number> {
    const ids = [...this.#live.keys()];
    if (ids.length === 0) return 0;
    return this.db.$executeRaw`
      UPDATE gateway_reservations SET expires_at = now() + ${this.reservationTtlMs}::int * interval '1 millisecond'
      WHERE id IN (${Prisma.join(ids.map((id) => Prisma.sql`${id}::uuid`))})`;
  }

  /** Deletes expired reservations of every account (crashed replicas'); returns how many. */
  async sweepReservations(): Promise<number> {
    return this.db.$executeRaw`DELETE FROM gateway_reservations WHERE expires_at <= now()`;
  }

  #renewWhileLive(): void {
    if (this.#live.size === 0) {
      clearInterval(this.#renewer);
      this.#renewer = undefined;
    } else if (!this.#renewer) {
      this.#renewer = setInterval(
        () => {
          this.renewReservations().catch((err) => this.log.warn({ err }, "reservation renewal failed"));
        },
        Math.max(1, Math.floor(this.reservationTtlMs / 3)),
      );
      this.#renewer.unref();
    }
  }

  // ---------------------------------------------------------------- adapters

  /**
   * Records an uploaded adapter (or, with `kind: "small_model"`, a small model): models +
   * model_training_versions + a chain intent in one transaction, then (if enabled) sends
   * ModelRegistry.registerModelFor and confirms it from the receipt. The model is servable as
   * soon as the transaction commits. A small model is a `Model` on chain (no base model).
   */
  async registerAdapter(input: {
    id: string;
    kind?: "adapter" | "small_model";
    owner: string;
    contentHash: string;
    priceIn: bigint;
    priceOut: bigint;
    datanetVersionIds: string[];
    onChain?: boolean;
  }): Promise<{
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
    const registration: Registration = {
      kind: small ? ChainModelKind.Model : ChainModelKind.Adapter,
      contentHash: `0x${input.contentHash}` as Hex,
      baseModel: small ? (`0x${"00".repeat(32)}` as Hex) : (`0x${this.host.contentHash}` as Hex),
      trainedOn,
      pricePer1kInput: input.priceIn,
      pricePer1kOutput: input.priceOut,
      metadataURI: `openledger:model:${input.id}`,
    };
    const intentKey = `model.register:${input.contentHash}`;
    let row: Awaited<ReturnType<Db["model"]["create"]>>;
    try {
      row = await this.db.$transaction(async (tx) => {
        const created = await tx.model.create({
          data: {
            id: input.id,
            kind: small ? "small_model" : "adapter",
            ownerAddress: input.owner,
            baseModel: small ? null : this.baseModelId,
            contentHash: input.contentHash,
            priceInPer1kWei: new Prisma.Decimal(input.priceIn.toString()),
            priceOutPer1kWei: new Prisma.Decimal(input.priceOut.toString()),
          },
        });
        if (versionIds.length) {
          await tx.modelTrainingVersion.createMany({
            data: versionIds.map((v) => ({ modelId: input.id, datanetVersionId: v })),
          });
        }
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
    const model = this.#remember(row, small ? versionIds[0] : undefined);
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

  /**
   * A servable model by id. A small model registered through another gateway replica is not in
   * this process's map yet: it is looked up in Postgres and remembered (any replica can serve it,
   * its graph comes from the attribution service). Adapters need their files on this node, so
   * they are only found here after an upload to this node (or a restart).
   * A remembered small model is still checked in Postgres on each request (one primary-key read):
   * another replica may have retired it, and a retired model must not be served (or billed).
   */
  async findModel(id: string): Promise<ServableModel | undefined> {
    const hit = this.models.get(id);
    if (hit && hit.kind !== "small_model") return hit;
    if (hit) {
      const row = await this.db.model.findUnique({ where: { id }, select: { status: true } });
      if (row?.status === "active") return hit;
      this.models.delete(id);
      return undefined;
    }
    const row = await this.db.model.findFirst({
      where: { id, kind: "small_model", status: "active" },
      include: { trainingVersions: { select: { datanetVersionId: true } } },
    });
    return row ? this.#remember(row, row.trainingVersions[0]?.datanetVersionId) : undefined;
  }

  /** The loaded classifier of a small model (its ONNX graph fetched and hash-checked on first use). */
  async classifier(m: ServableModel): Promise<LoadedSmallModel> {
    if (m.kind !== "small_model" || !m.datanetVersionId) throw new Error(`${m.id} is not a small model`);
    if (!m.onnxHash) {
      const row = await this.db.attributionIndex.findUnique({
        where: { datanetVersionId_kind: { datanetVersionId: m.datanetVersionId, kind: "influence" } },
      });
      if (row?.status !== "ready" || !row.onnxBlobHash) {
        throw new SmallModelUnavailable(
          409,
          "INFLUENCE_MODEL_NOT_READY",
          `the influence model of datanet version ${m.datanetVersionId} is not ready on this platform`,
          true,
        );
      }
      m.onnxHash = row.onnxBlobHash;
    }
    return this.smallModels.load(m.datanetVersionId, m.onnxHash);
  }

  async retireAdapter(id: string): Promise<void> {
    await this.db.model.update({ where: { id }, data: { status: "retired" } });
    this.models.delete(id);
  }

  // ---------------------------------------------------------------- inferences

  /**
   * Writes the inference and its outbox row in one transaction, deleting the request's reservation
   * in the same transaction (its cost is then owed, never both or neither), then enqueues
   * `attribution.score` and `inference.completed`. If Redis refuses, the outbox row stays pending and the sweeper
   * enqueues it later (the job id is the inference id, so a duplicate is harmless).
   */
  async persistInference(rec: InferenceRecord, reservation?: Reservation): Promise<string> {
    const inference = await this.db.$transaction((tx) => this.recordInference(tx, rec, reservation));
    if (reservation && this.#live.delete(reservation.id)) this.#renewWhileLive();
    await this.#enqueue(inference.id);
    return inference.id;
  }

  /** The writes of `persistInference`, inside the caller's transaction (tests hold it open). */
  async recordInference(tx: Tx, rec: InferenceRecord, reservation?: Reservation): Promise<{ id: string }> {
    // The prices it is served at travel with the inference: settlement charges these, not whatever
    // the model costs when it gets to it.
    const model = this.models.get(rec.modelId);
    const inf = await tx.inference.create({
      data: {
        modelId: rec.modelId,
        ...(model
          ? {
              priceInPer1kWei: new Prisma.Decimal(model.priceInPer1kWei.toString()),
              priceOutPer1kWei: new Prisma.Decimal(model.priceOutPer1kWei.toString()),
            }
          : {}),
        accountAddress: rec.account,
        prompt: rec.prompt,
        output: rec.output,
        inputTokens: rec.inputTokens,
        outputTokens: rec.outputTokens,
        ttftMs: rec.ttftMs,
        durationMs: rec.durationMs,
      },
    });
    await tx.gatewayOutbox.create({ data: { inferenceId: inf.id } });
    // Swept already (this replica stalled past the TTL) is fine: the cost is owed from now on.
    if (reservation) await tx.gatewayReservation.deleteMany({ where: { id: reservation.id } });
    return inf;
  }

  async #enqueue(inferenceId: string): Promise<boolean> {
    try {
      // Validators start attributing at once (their sweeper is only the safety net);
      // settlement waits for their quorum. Both job ids derive from the inference id.
      await this.producer.enqueue("attribution.score", { inferenceId });
      await this.producer.enqueue("inference.completed", { inferenceId });
      await this.db.gatewayOutbox.update({
        where: { inferenceId },
        data: { enqueuedAt: new Date(), attempts: { increment: 1 } },
      });
      return true;
    } catch (err) {
      this.log.warn(
        { err, inferenceId },
        "enqueue of attribution.score / inference.completed failed; the outbox sweeper will retry",
      );
      await this.db.gatewayOutbox
        .update({ where: { inferenceId }, data: { attempts: { increment: 1 } } })
        .catch(() => {});
      return false;
    }
  }

  /** Re-enqueues outbox rows still pending after 5 s. Returns how many were enqueued. */
  async sweepOutbox(olderThanMs = 5000): Promise<number> {
    const pending = await this.db.gatewayOutbox.findMany({
      where: { enqueuedAt: null, createdAt: { lt: new Date(Date.now() - olderThanMs) } },
      orderBy: { createdAt: "asc" },
      take: 500,
    });
    let n = 0;
    for (const p of pending) if (await this.#enqueue(p.inferenceId)) n++;
    return n;
  }

  startSweeper(): void {
    this.#sweeper = setInterval(() => void this.sweepOnce(), this.config.GATEWAY_OUTBOX_SWEEP_MS);
    this.#sweeper.unref();
  }

  /** One pass of every sweeper. Single-flight: a tick while a pass runs (slow DB or chain) joins
   *  it instead of starting an overlapping one that would drive the same rows twice. */
  sweepOnce(): Promise<void> {
    this.#sweeping ??= (async () => {
      await Promise.all([
        this.sweepOutbox().catch((err) => this.log.warn({ err }, "outbox sweep failed")),
        this.sweepReservations().catch((err) => this.log.warn({ err }, "reservation sweep failed")),
        this.config.GATEWAY_CHAIN_REGISTRATION
          ? sweepRegistrations(this.db, this.chain).catch((err) =>
              this.log.warn({ err }, "registration sweep failed"),
            )
          : undefined,
      ]);
    })().finally(() => {
      this.#sweeping = undefined;
    });
    return this.#sweeping;
  }

  /** Stops the timers and waits for a pass in flight, so nothing uses the DB after it closes. */
  async stopSweeper(): Promise<void> {
    clearInterval(this.#sweeper);
    clearInterval(this.#renewer);
    this.#renewer = undefined;
    await this.#sweeping;
  }
}
