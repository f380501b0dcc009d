import type { Db } from "./client.ts";

export type Tx = Parameters<Parameters<Db["$transaction"]>[0]>[0];

export interface TransactionOptions {
  isolationLevel?: "ReadCommitted" | "RepeatableRead" | "Serializable";
  /** Attempts for serialization failures / deadlocks before giving up. */
  maxAttempts?: number;
  timeoutMs?: number;
}

const RETRYABLE_PG = new Set(["40001", "40P01"]);

function isRetryable(err: unknown): boolean {
  const e = err as { code?: string; meta?: { code?: string }; cause?: { code?: string } };
  if (e?.code === "P2034") return true; // Prisma: write conflict or deadlock
  return (
    RETRYABLE_PG.has(e?.code ?? "") ||
    RETRYABLE_PG.has(e?.meta?.code ?? "") ||
    RETRYABLE_PG.has(e?.cause?.code ?? "")
  );
}

/**
 * Runs `fn` in one interactive transaction: all of its writes land or none do.
 * Serialization failures and deadlocks are retried (the callback must be re-runnable).
 */
export async function withTransaction<T>(
  db: Db,
  fn: (tx: Tx) => Promise<T>,
  options: TransactionOptions = {},
): Promise<T> {
  const maxAttempts = options.maxAttempts ?? 3;
  for (let attempt = 1; ; attempt++) {
    try {
      return await db.$transaction(fn, {
        isolationLevel: options.isolationLevel ?? "ReadCommitted",
        timeout: options.timeoutMs ?? 10_000,
        maxWait: 5000,
      });
    } catch (err) {
      if (attempt >= maxAttempts || !isRetryable(err)) throw err;
      await new Promise((r) => setTimeout(r, 10 * 2 ** attempt));
    }
  }
}

/** Prisma Decimal (NUMERIC(78,0) columns) -> bigint wei, refusing fractions. */
export function toWei(value: { toFixed(dp?: number): string } | string | bigint): bigint {
  if (typeof value === "bigint") return value;
  const text = typeof value === "string" ? value : value.toFixed();
  if (!/^-?\d+$/.test(text)) throw new Error(`not an integer amount of wei: ${text}`);
  return BigInt(text);
}
