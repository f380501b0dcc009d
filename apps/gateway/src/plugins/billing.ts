import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import type { ChainConnection } from "@openledger/chain";
import { inferenceEscrowAbi } from "@openledger/chain";
import type { GatewayConfig } from "@openledger/config";
import { type Db, lockAccountsSql, lockReservationsSql, Prisma, type Tx } from "@openledger/db";
import { AppError } from "@openledger/errors";
import { GroupCommit, RenewingCache } from "@openledger/service-kit";
import { priceInference } from "@openledger/settlement-core";
import type { FastifyBaseLogger, FastifyInstance } from "fastify";
import fp from "fastify-plugin";
import { Histogram, type Registry } from "prom-client";
import type { Hex } from "viem";
import { repoPath } from "../lib/model-host.ts";
import type { ServableModel } from "./catalog.ts";

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

/** The same formula in SQL, over columns named `input_tokens`, `output_tokens` and the prices. */
export const FEE_SQL = Prisma.sql`(CEIL(input_tokens * price_in_per_1k_wei / 1000) + CEIL(output_tokens * price_out_per_1k_wei / 1000))`;

/** Default `Billing.reservationTtlMs`. */
export const RESERVATION_TTL_MS = 30_000;

/** A request's admitted max cost, held in `gateway_reservations` until recorded or released. Its id
 *  is the id of the inference it will record (the one the client gets in the response header). */
export interface Reservation {
  id: string;
  account: string;
  maxCost: bigint;
}

/** What an admission holds, and what the request would record if its replica died mid-way. */
export interface ReservationRequest {
  id?: string;
  account: string;
  maxCost: bigint;
  model?: Pick<ServableModel, "id" | "priceInPer1kWei" | "priceOutPer1kWei">;
  prompt?: string;
  inputTokens?: number;
}

/**
 * An escrow balance as the check uses it: `spendableOf` from the chain, and the account's
 * `cleared_wei` read *before* it. Every fee in `cleared` had left the escrow when `spendable` was
 * read (a charge is recorded applied only after its receipt), so owed = billed - cleared never
 * undercounts against that balance; a charge recorded since only counts twice until the next read
 * (refusing early, never admitting what is not there).
 */
export interface BalanceRead {
  spendable: bigint;
  cleared: bigint;
  /** Date.now() of the read. */
  at: number;
}

/** The chain as billing needs it: service-kit's bounded request-path read (`app.chain`). */
export interface EscrowReader {
  read<T>(fn: (connection: ChainConnection) => Promise<T>): Promise<T>;
}

export interface BillingOptions {
  config: GatewayConfig;
  db: Db;
  chain: EscrowReader;
  log: FastifyBaseLogger;
  /** Where its metrics go (the service's registry); none: not exported. */
  registry?: Registry;
}

/** The most requests of one account in one admission statement. */
const MAX_ADMISSION_BATCH = 64;

interface PendingAdmission {
  id: string;
  req: ReservationRequest;
  balance: BalanceRead;
}
/** An admission in its account's GroupCommit, keyed by submission (never merged with another). */
interface QueuedAdmission extends PendingAdmission {
  seq: number;
}
type AdmissionOutcome = { kind: "admitted" } | { kind: "refused"; billed: bigint; reserved: bigint };

/** How often the escrow's withdrawal delay (which bounds how stale a balance may be) is read again. */
const WITHDRAWAL_DELAY_REFRESH_MS = 10 * 60_000;

function chainUnavailable(err: unknown): boolean {
  return err instanceof AppError && err.code === "CHAIN_UNAVAILABLE";
}

/** This replica's identity: GATEWAY_REPLICA_ID, else host + port + data directory (stable across restarts). */
export function replicaIdOf(config: GatewayConfig): string {
  return (
    config.GATEWAY_REPLICA_ID ?? `${hostname()}:${config.GATEWAY_PORT}:${repoPath(config.GATEWAY_DATA_DIR)}`
  ).slice(0, 200);
}

/**
 * Fees of an account's completed inferences the escrow has not taken yet, from the full history:
 * the reference the running total (`gateway_accounts`) is reconciled against.
 */
function owedFromHistorySql(account?: string): Prisma.Sql {
  return Prisma.sql`
    SELECT i.account_address, COALESCE(SUM(COALESCE(s.fee_wei,
             CEIL(i.input_tokens * COALESCE(i.price_in_per_1k_wei, m.price_in_per_1k_wei) / 1000)
           + CEIL(i.output_tokens * COALESCE(i.price_out_per_1k_wei, m.price_out_per_1k_wei) / 1000))), 0) AS owed
    FROM inferences i
    JOIN models m ON m.id = i.model_id
    LEFT JOIN settlements s ON s.inference_id = i.id
    LEFT JOIN escrow_charges c ON c.id = s.charge_id
    WHERE i.status = 'completed' AND s.epoch_id IS NULL AND c.status IS DISTINCT FROM 'applied'
      AND s.writeoff_id IS NULL
      ${account === undefined ? Prisma.empty : Prisma.sql`AND i.account_address = ${account}`}
    GROUP BY i.account_address`;
}

/**
 * The balance check (402 before any compute): spendable escrow − owed − in flight must cover the
 * request's max cost. O(1) in the account's history: owed and in flight are the account's running
 * totals (`gateway_accounts`), and an admission is ONE statement over that row (its lock held for one
 * statement; one statement per batch of the account's concurrent admissions) that inserts the
 * reservations that fit. Recording inferences moves their cost from reserved to billed in one
 * statement (InferenceRecorder.recordMany); a release subtracts it.
 */
export class Billing {
  readonly config: GatewayConfig;
  readonly db: Db;
  readonly chain: EscrowReader;
  readonly log: FastifyBaseLogger;
  /**
   * How long a reservation counts without being renewed, ms. This replica renews its live ones
   * every third of it, so only a crashed (or stalled) replica's reservations lapse.
   */
  reservationTtlMs = RESERVATION_TTL_MS;
  /**
   * Balance reads shared per account and renewed ahead of expiry (`balance`). False: every admission
   * that finds no fresh read makes its own, as before 2026-12-05 — the A side of bench:gateway's A/B
   * (`BENCH_GATEWAY_BASELINE=1`); nothing else sets it.
   */
  shareBalanceReads = true;
  /**
   * Admissions of one account batched into one statement (`reserveWithin`). False: one statement per
   * admission, as before 2026-12-05 — the A side of bench:gateway's A/B (`BENCH_GATEWAY_BASELINE=1`).
   */
  batchAdmissions = true;
  /** Requests per admission statement (`gateway_admission_batch_size`). */
  readonly admissionBatches: Histogram;
  /** Who holds this replica's reservations (stable across restarts), and this process start. */
  readonly replicaId: string;
  readonly bootId = randomUUID();
  /** This replica's reservations not yet recorded or released (renewed while here). */
  readonly #live = new Map<string, Reservation>();
  /** Balance reads per account (`balance`): shared while in flight, renewed past half their life. */
  readonly #balances = new RenewingCache<BalanceRead>({
    ttlMs: () => this.config.GATEWAY_BALANCE_CACHE_MS,
    load: (account, previous, at) => this.#read(account, previous, at),
    stampOf: (read) => read.at,
    onRenewalError: (err, account) =>
      this.log.debug({ err, account }, "background balance refresh failed; the next admission reads again"),
  });
  /** Each account's admissions waiting for its next admission statement. */
  readonly #admissions = new Map<string, GroupCommit<number, QueuedAdmission, AdmissionOutcome>>();
  #admissionSeq = 0;
  /** InferenceEscrow.withdrawalDelay in ms, and when it was read. */
  #withdrawalDelay: { ms: number; at: number } | undefined;
  #servingStale = false;
  #renewer: NodeJS.Timeout | undefined;
  #renewing = false;
  /** Renews the balance reads of accounts with live reservations here (`renewBalances`). */
  #balanceRenewer: NodeJS.Timeout | undefined;

  constructor(options: BillingOptions) {
    this.config = options.config;
    this.db = options.db;
    this.chain = options.chain;
    this.log = options.log;
    this.replicaId = replicaIdOf(options.config);
    this.admissionBatches = new Histogram({
      name: "gateway_admission_batch_size",
      help: "Requests admitted (or refused) per admission statement",
      buckets: [1, 2, 4, 8, 16, 32, 64],
      registers: options.registry ? [options.registry] : [],
    });
  }

  // ---------------------------------------------------------------- balances

  /**
   * How old a balance read may be when the chain does not answer, ms: GATEWAY_BALANCE_STALE_MS, and
   * never more than half the escrow's withdrawal delay. Why that is safe: an older read can only
   * overstate what is spendable by withdrawals requested since (a charge since is counted through the
   * `cleared` snapshot taken with it), and requested tokens stay in the escrow, chargeable, for the
   * whole withdrawal delay; settlement has the other half of it to charge what was served. 0 until
   * the delay was read (no stale read is ever used without it).
   */
  staleLimitMs(): number {
    if (!this.#withdrawalDelay) return 0;
    return Math.min(this.config.GATEWAY_BALANCE_STALE_MS, Math.floor(this.#withdrawalDelay.ms / 2));
  }

  /**
   * The account's escrow balance with its `cleared` snapshot, reused for GATEWAY_BALANCE_CACHE_MS.
   * When the chain does not answer (within CHAIN_REQUEST_TIMEOUT_MS, or at once while it is known not
   * to), the last read is used if it is younger than `staleLimitMs()`; otherwise 503 CHAIN_UNAVAILABLE.
   *
   * One read per account at a time: admissions that find no usable read join the one in flight
   * (if it began within the cache time) instead of each making its own Postgres query and chain
   * call — when an account's read expired under load, every request of that account used to read
   * at once, and waited on the slowest (100-400 ms of TTFT, bench:gateway's `balance` phase). And a
   * read past half its life is renewed in the background while it still serves, so an account
   * with steady traffic never waits on the chain: no read is ever used past
   * GATEWAY_BALANCE_CACHE_MS either way, only the waiting moves off the request path.
   */
  balance(account: string): Promise<BalanceRead> {
    if (this.shareBalanceReads) return this.#balances.get(account);
    const hit = this.#balances.peek(account);
    return hit && this.#balances.fresh(account)
      ? Promise.resolve(hit.value)
      : this.#balances.loadAlone(account);
  }

  async #read(account: string, hit: BalanceRead | undefined, at: number): Promise<BalanceRead> {
    try {
      const cleared = await this.#cleared(account);
      const spendable = await this.#spendable(account);
      const read: BalanceRead = { spendable, cleared, at };
      if (this.#servingStale) {
        this.#servingStale = false;
        this.log.info("the chain answers again: escrow balances are read fresh");
      }
      return read;
    } catch (err) {
      // The previous read (stamped with its own time, so the cache serves it no longer than before).
      if (chainUnavailable(err) && hit && Date.now() - hit.at < this.staleLimitMs()) {
        if (!this.#servingStale) {
          this.#servingStale = true;
          this.log.warn(
            { staleLimitMs: this.staleLimitMs(), err: (err as Error).message },
            "the chain does not answer: admitting on escrow balances read within the stale limit",
          );
        }
        return hit;
      }
      throw err;
    }
  }

  /**
   * Starts a background read for each account with a live reservation in this replica whose read
   * is past half the cache time (or gone) and has none in flight. A request lasts longer than the
   * cache time (SmolLM: ~5 s against 2 s), so an account's next wave used to find its read expired
   * and wait on the chain (bench:gateway's `balance` phase, p99 56-135 ms); renewed here, its
   * admissions take a read from the cache. Bounded: only accounts being served here, and only while
   * they are. Nothing changes in what is used: no read past GATEWAY_BALANCE_CACHE_MS (`balance`).
   */
  renewBalances(): void {
    const accounts = new Set<string>();
    for (const r of this.#live.values()) accounts.add(r.account);
    for (const account of accounts) this.#balances.renew(account);
  }

  /** The account's cleared total (its totals row is created here, before any admission needs it). */
  async #cleared(account: string): Promise<bigint> {
    const [row] = await this.db.$queryRaw<{ cleared: string }[]>`
      WITH ins AS (
        INSERT INTO gateway_accounts (account_address) VALUES (${account})
        ON CONFLICT (account_address) DO NOTHING RETURNING cleared_wei
      )
      SELECT cleared_wei::text AS cleared FROM ins
      UNION ALL SELECT cleared_wei::text FROM gateway_accounts WHERE account_address = ${account}`;
    return BigInt(row?.cleared ?? "0");
  }

  /**
   * InferenceEscrow.spendableOf (the balance minus a pending withdrawal, within today's cap), with the
   * withdrawal delay when it is due a refresh: one bounded read (503 CHAIN_UNAVAILABLE when the chain
   * does not answer).
   */
  async #spendable(account: string): Promise<bigint> {
    const delayDue =
      !this.#withdrawalDelay || Date.now() - this.#withdrawalDelay.at > WITHDRAWAL_DELAY_REFRESH_MS;
    try {
      return await this.chain.read(async (c) => {
        const escrow = c.addresses.contracts.InferenceEscrow;
        const [spendable, delay] = await Promise.all([
          c.publicClient.readContract({
            address: escrow,
            abi: inferenceEscrowAbi,
            functionName: "spendableOf",
            args: [account as Hex],
          }),
          delayDue
            ? c.publicClient.readContract({
                address: escrow,
                abi: inferenceEscrowAbi,
                functionName: "withdrawalDelay",
              })
            : undefined,
        ]);
        if (delay !== undefined) this.#withdrawalDelay = { ms: Number(delay) * 1000, at: Date.now() };
        return spendable;
      });
    } catch (err) {
      if (err instanceof AppError) throw err;
      throw new AppError("SERVICE_UNAVAILABLE", "escrow balance could not be read", { cause: err });
    }
  }

  // ---------------------------------------------------------------- totals

  /** Fees owed and not yet charged: the running total (O(1)). */
  async owed(account: string): Promise<bigint> {
    const rows = await this.db.$queryRaw<{ owed: string }[]>`
      SELECT (billed_wei - cleared_wei)::text AS owed FROM gateway_accounts WHERE account_address = ${account}`;
    return BigInt(rows[0]?.owed ?? "0");
  }

  /** The same from the full history (the reference of `reconcile`; O(history)). */
  async owedFromHistory(account: string): Promise<bigint> {
    const rows = await this.db.$queryRaw<{ owed: string }[]>`
      SELECT owed::text FROM (${owedFromHistorySql(account)}) h`;
    return BigInt(rows[0]?.owed ?? "0");
  }

  /**
   * Accounts whose running totals disagree with the full history: owed (billed − cleared) against
   * the fees of completed inferences the escrow has not taken, reserved against the live
   * reservation rows. Empty when the books are right.
   */
  async reconcile(): Promise<
    { account: string; owed: string; owedFromHistory: string; reserved: string; reservedFromRows: string }[]
  > {
    return this.db.$queryRaw`
      WITH h AS (${owedFromHistorySql()}),
      r AS (SELECT account_address, SUM(max_cost_wei) AS reserved FROM gateway_reservations GROUP BY account_address),
      t AS (SELECT account_address, billed_wei - cleared_wei AS owed, reserved_wei AS reserved FROM gateway_accounts)
      SELECT COALESCE(t.account_address, h.account_address, r.account_address) AS account,
             COALESCE(t.owed, 0)::text AS owed, COALESCE(h.owed, 0)::text AS "owedFromHistory",
             COALESCE(t.reserved, 0)::text AS reserved, COALESCE(r.reserved, 0)::text AS "reservedFromRows"
        FROM t FULL JOIN h ON h.account_address = t.account_address
               FULL JOIN r ON r.account_address = COALESCE(t.account_address, h.account_address)
       WHERE COALESCE(t.owed, 0) <> COALESCE(h.owed, 0) OR COALESCE(t.reserved, 0) <> COALESCE(r.reserved, 0)
       ORDER BY 1`;
  }

  // ---------------------------------------------------------------- reservations

  /**
   * 402 unless spendable escrow − owed − reserved covers `maxCost`; on success the reservation row
   * holds the cost until the inference is recorded or released. The escrow balance is read (or
   * taken from the cache) before, so no lock is ever held across an RPC.
   */
  async reserve(req: ReservationRequest): Promise<Reservation> {
    return this.reserveWithin(req, await this.balance(req.account));
  }

  /**
   * `reserve` with the balance already read (tests interleave other work here). A hold (a training
   * grant's) runs its own admission statement, on `hold.db` when given (inside the caller's
   * transaction). A request's joins its account's admission batch: admissions of one account that
   * arrive while one of its admission statements runs go together in the next one (`#admit`).
   * Before, each was a statement of its own, each holding the account's row lock through its
   * commit's WAL flush: under load (bench:gateway) a hot account's admissions queued on that lock
   * for 50-400 ms. Nothing changes in what is admitted: each request is checked against its own
   * balance read and the reservations admitted before it (see `#admit`), and a batch that finds
   * the account short on the snapshot still takes no lock.
   */
  async reserveWithin(
    req: ReservationRequest,
    balance: BalanceRead,
    hold?: { expiresAt: Date; db?: Db | Tx },
  ): Promise<Reservation> {
    const admission: PendingAdmission = { id: req.id ?? randomUUID(), req, balance };
    if (hold) {
      // A hold lives until its own expiry, belongs to no replica, and is never renewed.
      const [outcome] = await this.#admit(hold.db ?? this.db, req.account, [admission], hold.expiresAt);
      return this.#settle(admission, outcome!, true);
    }
    if (!this.batchAdmissions) {
      const [outcome] = await this.#admit(this.db, req.account, [admission]);
      return this.#settle(admission, outcome!, false);
    }
    let log = this.#admissions.get(req.account);
    if (!log) {
      const account = req.account;
      // One admission statement at a time per account; those arriving meanwhile go in the next.
      log = new GroupCommit<number, QueuedAdmission, AdmissionOutcome>({
        keyOf: (a) => a.seq,
        maxBatch: MAX_ADMISSION_BATCH,
        run: async (batch) => {
          const outcomes = await this.#admit(this.db, account, batch);
          this.admissionBatches.observe(batch.length);
          return new Map(batch.map((a, i) => [a.seq, outcomes[i]!]));
        },
      });
      this.#admissions.set(account, log);
    }
    let outcome: AdmissionOutcome;
    try {
      outcome = await log.submit({ ...admission, seq: this.#admissionSeq++ });
    } finally {
      if (log.idle && this.#admissions.get(req.account) === log) this.#admissions.delete(req.account);
    }
    return this.#settle(admission, outcome, false);
  }

  /**
   * One admission statement for `batch` (all of `account`, in arrival order), deciding each request
   * as one-by-one admissions in that order would: request k is admitted iff its own balance read
   * covers the account's owed total and its reserved total with the requests admitted before it
   * (a recursive walk over the batch). The account's row is locked only when the snapshot says some
   * request of the batch fits — as the single-request UPDATE took the lock only when its condition
   * held on the snapshot, so a refusal queues on no lock — and read as locked: the latest committed
   * totals (`lockAccountsSql`), so concurrent admissions of other replicas and recordings are
   * counted. When nothing fits on the snapshot, each request is refused on it, as before.
   */
  async #admit(
    db: Db | Tx,
    account: string,
    batch: readonly PendingAdmission[],
    holdUntil?: Date,
  ): Promise<AdmissionOutcome[]> {
    const replica = holdUntil ? null : this.replicaId;
    const boot = holdUntil ? null : this.bootId;
    const expires = holdUntil
      ? Prisma.sql`${holdUntil}::timestamptz`
      : Prisma.sql`now() + ${this.reservationTtlMs}::int * interval '1 millisecond'`;
    const rows = await db.$queryRaw<
      { id: string; admitted: boolean; billed: string | null; reserved: string | null }[]
    >`
      WITH RECURSIVE req AS (
        SELECT * FROM unnest(${batch.map((a) => a.id)}::uuid[], ${batch.map((a) => a.req.maxCost.toString())}::numeric[],
                             ${batch.map((a) => a.balance.spendable.toString())}::numeric[],
                             ${batch.map((a) => a.balance.cleared.toString())}::numeric[],
                             ${batch.map((a) => a.req.model?.id ?? null)}::text[],
                             ${batch.map((a) => a.req.prompt ?? null)}::text[],
                             ${batch.map((a) => a.req.inputTokens ?? 0)}::int[],
                             ${batch.map((a) => a.req.model?.priceInPer1kWei.toString() ?? null)}::numeric[],
                             ${batch.map((a) => a.req.model?.priceOutPer1kWei.toString() ?? null)}::numeric[])
          WITH ORDINALITY AS r(id, cost, spendable, cleared, model_id, prompt, input_tokens, price_in, price_out, n)
      ), snap AS (
        SELECT billed_wei, reserved_wei FROM gateway_accounts WHERE account_address = ${account}
      ), locked AS (${lockAccountsSql(
        Prisma.sql`SELECT ${account}::text FROM req r, snap s
                    WHERE r.spendable - (s.billed_wei - r.cleared) - s.reserved_wei >= r.cost
                      AND r.spendable - (s.billed_wei - r.cleared) - s.reserved_wei > 0`,
        { withTotals: true },
      )}
      ), walk (n, id, admitted, held_before, held) AS (
        SELECT 0::bigint, NULL::uuid, false, l.reserved_wei::numeric, l.reserved_wei::numeric FROM locked l
        UNION ALL
        SELECT r.n, r.id, x.ok, w.held, w.held + CASE WHEN x.ok THEN r.cost ELSE 0 END
          FROM walk w JOIN req r ON r.n = w.n + 1 CROSS JOIN locked l
          CROSS JOIN LATERAL (SELECT r.spendable - (l.billed_wei - r.cleared) - w.held AS available) v
          CROSS JOIN LATERAL (SELECT v.available >= r.cost AND v.available > 0 AS ok) x
      ), fit AS (
        SELECT r.* FROM req r JOIN walk w ON w.id = r.id WHERE w.admitted
      ), acct AS (
        UPDATE gateway_accounts a
           SET reserved_wei = a.reserved_wei + (SELECT SUM(cost) FROM fit), updated_at = now()
         WHERE a.account_address = ${account} AND EXISTS (SELECT 1 FROM fit)
      ), ins AS (
        INSERT INTO gateway_reservations (id, account_address, max_cost_wei, expires_at, replica_id, boot_id,
                                          model_id, prompt, input_tokens, price_in_per_1k_wei, price_out_per_1k_wei)
        SELECT id, ${account}, cost, ${expires}, ${replica}, ${boot}::uuid, model_id, prompt, input_tokens,
               price_in, price_out
          FROM fit
      )
      SELECT r.id::text AS id, COALESCE(w.admitted, false) AS admitted,
             COALESCE(l.billed_wei, s.billed_wei)::text AS billed,
             COALESCE(w.held_before, s.reserved_wei)::text AS reserved
        FROM req r LEFT JOIN walk w ON w.id = r.id
             LEFT JOIN locked l ON true LEFT JOIN snap s ON true
       ORDER BY r.n`;
    return rows.map(
      (row): AdmissionOutcome =>
        row.admitted
          ? { kind: "admitted" }
          : { kind: "refused", billed: BigInt(row.billed ?? "0"), reserved: BigInt(row.reserved ?? "0") },
    );
  }

  /** A request's reservation once its admission statement decided (402 if refused). */
  #settle(a: PendingAdmission, outcome: AdmissionOutcome, isHold: boolean): Reservation {
    if (outcome.kind !== "admitted") {
      const owed = outcome.billed - a.balance.cleared;
      const available = a.balance.spendable - owed - outcome.reserved;
      throw new AppError(
        "PAYMENT_REQUIRED",
        `insufficient escrowed balance: available ${available < 0n ? 0n : available} wei (escrow ${a.balance.spendable}, owed ${owed}, in flight ${outcome.reserved}), this request may cost up to ${a.req.maxCost} wei; deposit OPEN into InferenceEscrow`,
      );
    }
    const reservation: Reservation = { id: a.id, account: a.req.account, maxCost: a.req.maxCost };
    if (isHold) return reservation;
    this.#live.set(a.id, reservation);
    this.#renewWhileLive();
    return reservation;
  }

  /**
   * A hold: `reserve` for a cost that is settled later by another path (a training grant's escrow
   * hold, until its adapter is registered or it is released). It belongs to no replica and lasts
   * until `expiresAt` (then the sweeper finalises it like any expired reservation: released, nothing
   * recorded, since it names no model). `db` = inside the caller's transaction.
   */
  async hold(req: ReservationRequest, expiresAt: Date, db?: Tx): Promise<Reservation> {
    return this.reserveWithin(req, await this.balance(req.account), { expiresAt, ...(db ? { db } : {}) });
  }

  /** Drops a hold (a released grant): the row and its share of the reserved total; a no-op once gone. */
  async releaseHold(id: string, db: Db | Tx = this.db): Promise<void> {
    await db.$executeRaw`
      WITH d AS (DELETE FROM gateway_reservations WHERE id = ${id}::uuid RETURNING account_address, max_cost_wei)
      UPDATE gateway_accounts a SET reserved_wei = a.reserved_wei - d.max_cost_wei, updated_at = now()
        FROM d WHERE a.account_address = d.account_address`;
  }

  /**
   * Drops a reservation that will not be recorded (refused by the engine, failed, cancelled before
   * anything was delivered): the row and its share of the account's reserved total, in one
   * statement. A no-op once recorded. Never throws (it runs in `finally` blocks): if Postgres
   * refuses, the row expires and is finalised by the sweeper.
   */
  async release(reservation: Reservation): Promise<void> {
    if (!this.#live.delete(reservation.id)) return;
    this.#renewWhileLive();
    try {
      await this.db.$executeRaw`
        WITH d AS (DELETE FROM gateway_reservations WHERE id = ${reservation.id}::uuid
                   RETURNING account_address, max_cost_wei)
        UPDATE gateway_accounts a SET reserved_wei = a.reserved_wei - d.max_cost_wei, updated_at = now()
          FROM d WHERE a.account_address = d.account_address`;
    } catch (err) {
      this.log.warn({ err, reservation: reservation.id }, "reservation not released; it expires by itself");
    }
  }

  /** After the recording statement deleted the row: no longer renewed here. */
  consumed(reservation: Reservation): void {
    if (this.#live.delete(reservation.id)) this.#renewWhileLive();
  }

  /**
   * Pushes back the expiry of this replica's live reservations (runs every TTL/3 while any is live).
   * Its row locks are taken in id order (`lockReservationsSql`), as the progress log's batches take
   * theirs: two statements locking overlapping sets of rows in different orders deadlock (40P01).
   */
  async renewReservations(): Promise<number> {
    const ids = [...this.#live.keys()];
    if (ids.length === 0) return 0;
    return this.db.$executeRaw`
      WITH locked AS (${lockReservationsSql(ids)})
      UPDATE gateway_reservations r
         SET expires_at = now() + ${this.reservationTtlMs}::int * interval '1 millisecond'
        FROM locked WHERE r.id = locked.id`;
  }

  /**
   * Starts (first live reservation) or stops (none left) the renewal of this replica's reservations
   * and of its accounts' balance reads. Plain intervals, not the kit's `app.background.every`: those
   * run only with RUN_WORKERS, and a replica that serves must renew either way.
   */
  #renewWhileLive(): void {
    const balanceEvery = Math.floor(this.config.GATEWAY_BALANCE_CACHE_MS / 4);
    if (this.#live.size === 0) {
      clearInterval(this.#balanceRenewer);
      this.#balanceRenewer = undefined;
    } else if (!this.#balanceRenewer && this.shareBalanceReads && balanceEvery > 0) {
      // Every quarter of the cache time, so a read is renewed before three quarters of it.
      this.#balanceRenewer = setInterval(() => this.renewBalances(), balanceEvery);
      this.#balanceRenewer.unref();
    }
    if (this.#live.size === 0) {
      clearInterval(this.#renewer);
      this.#renewer = undefined;
    } else if (!this.#renewer) {
      this.#renewer = setInterval(
        () => {
          // One renewal at a time: one that waits on a row lock is not joined by the next tick's.
          if (this.#renewing) return;
          this.#renewing = true;
          this.renewReservations()
            .catch((err) => this.log.warn({ err }, "reservation renewal failed"))
            .finally(() => {
              this.#renewing = false;
            });
        },
        Math.max(1, Math.floor(this.reservationTtlMs / 3)),
      );
      this.#renewer.unref();
    }
  }

  close(): void {
    clearInterval(this.#renewer);
    this.#renewer = undefined;
    clearInterval(this.#balanceRenewer);
    this.#balanceRenewer = undefined;
  }
}

declare module "fastify" {
  interface FastifyInstance {
    billing: Billing;
  }
}

export const billingPlugin = fp<{ config: GatewayConfig }>(
  async (app: FastifyInstance, { config }) => {
    const billing = new Billing({
      config,
      db: app.db,
      chain: app.chain,
      log: app.log.child({ component: "billing" }),
      registry: app.metrics,
    });
    app.decorate("billing", billing);
    app.addHook("onClose", async () => billing.close());
  },
  { name: "gateway-billing" },
);
