import { randomUUID } from "node:crypto";
import type { GatewayConfig } from "@openledger/config";
import { type Db, Prisma, type Tx } from "@openledger/db";
import { AppError } from "@openledger/errors";
import { priceInference } from "@openledger/settlement-core";
import type { FastifyBaseLogger, FastifyInstance } from "fastify";
import fp from "fastify-plugin";
import type { ServableModel } from "./catalog.ts";
import type { ChainAccess } from "./chain.ts";

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

/** Default `Billing.reservationTtlMs`. */
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
 * The balance check (402 before any compute): the escrow's spendable balance, minus fees owed and
 * not yet charged, minus in-flight reservations of every replica (`gateway_reservations`). A request
 * holds its max cost as a reservation until its inference is recorded (`consume`, in the recording
 * transaction) or released.
 */
export class Billing {
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

  constructor(
    readonly config: GatewayConfig,
    readonly db: Db,
    readonly chain: ChainAccess,
    readonly log: FastifyBaseLogger,
  ) {}

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

  /** In the transaction that records the reservation's inference: its cost becomes owed. */
  async consume(tx: Tx, reservation: Reservation): Promise<void> {
    // Swept already (this replica stalled past the TTL) is fine: the cost is owed from now on.
    await tx.gatewayReservation.deleteMany({ where: { id: reservation.id } });
  }

  /** After the recording transaction committed: no longer renewed here. */
  consumed(reservation: Reservation): void {
    if (this.#live.delete(reservation.id)) this.#renewWhileLive();
  }

  close(): void {
    clearInterval(this.#renewer);
    this.#renewer = undefined;
  }
}

declare module "fastify" {
  interface FastifyInstance {
    billing: Billing;
  }
}

export const billingPlugin = fp<{ config: GatewayConfig }>(
  async (app: FastifyInstance, { config }) => {
    const billing = new Billing(config, app.db, app.gatewayChain, app.log.child({ component: "billing" }));
    app.decorate("billing", billing);
    app.addHook("onClose", async () => billing.close());
  },
  { name: "gateway-billing", dependencies: ["gateway-chain"] },
);
