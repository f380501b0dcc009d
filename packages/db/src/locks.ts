import { Prisma } from "./generated/prisma/client.ts";

/**
 * The one lock order of rows that several statements lock more than one of at a time: ascending
 * key. Two transactions that lock overlapping sets of rows in different orders can each hold a row
 * the other waits for (40P01, one of them rolled back). Every statement that locks several rows of
 * these tables and may wait for them takes its locks through these helpers, as a CTE that the
 * UPDATE joins to: each row is first locked there, in order (the UPDATE only re-locks rows it
 * holds). `ORDER BY ... FOR UPDATE` locks after sorting, so the locks follow the order. A statement
 * that locks one row, or skips locked ones, cannot close a cycle with them and needs none.
 */
function lockInOrderSql(
  table: "gateway_reservations" | "gateway_accounts",
  which: Prisma.Sql,
  also: Prisma.Sql = Prisma.empty,
): Prisma.Sql {
  const key = table === "gateway_reservations" ? Prisma.raw("id") : Prisma.raw("account_address");
  return Prisma.sql`SELECT ${key}${also} FROM ${Prisma.raw(table)} WHERE ${which} ORDER BY ${key} FOR UPDATE`;
}

/** Locks the reservation rows `ids` (those that still exist) in id order; selects `id`. */
export function lockReservationsSql(ids: readonly string[]): Prisma.Sql {
  return lockInOrderSql("gateway_reservations", Prisma.sql`id = ANY(${ids}::uuid[])`);
}

/**
 * Locks the gateway's per-account running totals (`gateway_accounts`) of `accounts` — a list, or a
 * query selecting one `account_address` column (e.g. a data-modifying CTE's rows) — in address
 * order; selects `account_address`. Rows that do not exist are not created (`ensureAccountsSql`).
 * `withTotals`: also `billed_wei` and `reserved_wei` as locked — the latest committed values (a lock
 * that waited returns the row version it waited for), which a later CTE reading the table would not
 * see (it reads the statement's snapshot).
 */
export function lockAccountsSql(
  accounts: readonly string[] | Prisma.Sql,
  options: { withTotals?: boolean } = {},
): Prisma.Sql {
  return lockInOrderSql(
    "gateway_accounts",
    accounts instanceof Prisma.Sql
      ? Prisma.sql`account_address IN (${accounts})`
      : Prisma.sql`account_address = ANY(${accounts}::text[])`,
    options.withTotals ? Prisma.sql`, billed_wei, reserved_wei` : Prisma.empty,
  );
}

/**
 * Creates the missing `gateway_accounts` rows of `accounts`, in address order (two inserts of the
 * same new keys wait for each other too). A statement of its own, before `lockAccountsSql`: a lock
 * in the same statement would not see the rows it inserts.
 */
export function ensureAccountsSql(accounts: readonly string[]): Prisma.Sql {
  return Prisma.sql`
    INSERT INTO gateway_accounts (account_address)
    SELECT a FROM unnest(${accounts}::text[]) AS a ORDER BY a
    ON CONFLICT (account_address) DO NOTHING`;
}
