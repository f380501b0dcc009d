import { randomUUID } from "node:crypto";
import { type Db, withTransaction } from "@openledger/db";
import { AppError } from "@openledger/errors";
import { addCleared } from "./charges.ts";
import { EPOCH_LOCK } from "./epochs.ts";

export interface WriteoffRow {
  id: string;
  consumer: string;
  total_wei: string;
  settlement_count: number;
  reason: string;
  deferred_since: Date;
  created_at: Date;
}

export const WRITEOFF_COLUMNS = `id::text AS id, consumer, total_wei::text AS total_wei, settlement_count, reason,
  deferred_since, created_at`;

/**
 * The write-off rule: a consumer's settled fees that the escrow has not covered for at least
 * `afterMs` (the charge rounds found its balance short since `escrow_deferrals.since`: the consumer
 * withdrew and left, or the chain its balance was on is gone) can be written off by an operator,
 * with a reason — never automatically, never silently. In one transaction, under the epoch drivers'
 * lock (so no charge round plans them meanwhile):
 *
 * - every such fee (settled, uncharged, in no epoch, not held by a revoked one) points at a new
 *   `fee_writeoffs` row and is never charged nor paid;
 * - the ledger reverses their fee transactions (`writeoff:<id>`: the consumer credited the total,
 *   each recipient debited exactly what those fees credited it), so it still sums to zero;
 * - the gateway's running total stops counting them as owed (`gateway_accounts.cleared_wei +=
 *   total`, as the gateway's own reconciliation requires of anything that makes a fee uncollectable);
 * - the deferral is gone.
 *
 * 409 NOT_DEFERRED when the consumer's fees are not (or not long enough) uncollectable.
 */
export async function writeOff(
  db: Db,
  input: { consumer: string; reason: string; afterMs: number },
): Promise<WriteoffRow> {
  const consumer = input.consumer.toLowerCase();
  return withTransaction(
    db,
    async (tx) => {
      await tx.$queryRawUnsafe(`SELECT pg_advisory_xact_lock($1)::text AS locked`, EPOCH_LOCK);
      const [deferral] = await tx.$queryRawUnsafe<{ since: Date }[]>(
        `SELECT since FROM escrow_deferrals WHERE consumer = $1 FOR UPDATE`,
        consumer,
      );
      if (!deferral) {
        throw new AppError(
          "NOT_DEFERRED",
          `${consumer} has no fees the escrow failed to cover: nothing is uncollectable (GET /v1/deferrals)`,
          { status: 409 },
        );
      }
      const age = Date.now() - deferral.since.getTime();
      if (age < input.afterMs) {
        throw new AppError(
          "NOT_DEFERRED",
          `${consumer}'s fees have been uncovered since ${deferral.since.toISOString()} (${age} ms): ` +
            `they may still be collected; a write-off needs ${input.afterMs} ms (SETTLEMENT_WRITEOFF_AFTER_MS)`,
          { status: 409 },
        );
      }
      const id = randomUUID();
      await tx.$executeRawUnsafe(
        `INSERT INTO fee_writeoffs (id, consumer, total_wei, settlement_count, reason, deferred_since)
         VALUES ($1::uuid, $2, 0, 0, $3, $4)`,
        id,
        consumer,
        input.reason,
        deferral.since,
      );
      const [written] = await tx.$queryRawUnsafe<{ n: number; total: string }[]>(
        `WITH w AS (
           UPDATE settlements s SET writeoff_id = $1::uuid FROM inferences i
            WHERE i.id = s.inference_id AND i.account_address = $2 AND s.fee_wei > 0
              AND s.epoch_id IS NULL AND s.charge_id IS NULL AND s.held_by_epoch_id IS NULL
              AND s.writeoff_id IS NULL
           RETURNING s.fee_wei)
         SELECT count(*)::int AS n, COALESCE(sum(fee_wei), 0)::text AS total FROM w`,
        id,
        consumer,
      );
      const total = BigInt(written?.total ?? "0");
      if (!written || written.n === 0) {
        throw new AppError("NOT_DEFERRED", `${consumer} has no uncharged fees left to write off`, {
          status: 409,
        });
      }
      await tx.$executeRawUnsafe(
        `UPDATE fee_writeoffs SET total_wei = $2::numeric, settlement_count = $3 WHERE id = $1::uuid`,
        id,
        total.toString(),
        written.n,
      );
      const txId = randomUUID();
      await tx.$executeRawUnsafe(
        `INSERT INTO ledger_transactions (id, kind, external_key, memo) VALUES ($1::uuid, 'fee_writeoff', $2, $3)`,
        txId,
        `writeoff:${id}`,
        `${written.n} uncollectable fees of ${consumer} written off: ${input.reason}`.slice(0, 2000),
      );
      // The exact reverse of those fees' transactions, per account.
      await tx.$executeRawUnsafe(
        `INSERT INTO ledger_entries (transaction_id, account, amount_wei)
         SELECT $1::uuid, e.account, -sum(e.amount_wei)
           FROM settlements s JOIN ledger_entries e ON e.transaction_id = s.transaction_id
          WHERE s.writeoff_id = $2::uuid
          GROUP BY e.account HAVING sum(e.amount_wei) <> 0`,
        txId,
        id,
      );
      await addCleared(tx, new Map([[consumer, total]]));
      await tx.$executeRawUnsafe(`DELETE FROM escrow_deferrals WHERE consumer = $1`, consumer);
      const [row] = await tx.$queryRawUnsafe<WriteoffRow[]>(
        `SELECT ${WRITEOFF_COLUMNS} FROM fee_writeoffs WHERE id = $1::uuid`,
        id,
      );
      return row!;
    },
    { timeoutMs: 60_000 },
  );
}
