import {
  type Abi,
  type Address,
  BaseError,
  ContractFunctionRevertedError,
  encodeFunctionData,
  type Hex,
  HttpRequestError,
  keccak256,
  SocketClosedError,
  TimeoutError,
  TransactionNotFoundError,
  TransactionReceiptNotFoundError,
} from "viem";
import type { ChainPublicClient, ChainWalletClient } from "./clients.ts";

/**
 * The SQL an intent store needs (a Prisma client fits). Rows live in `chain_intents`
 * (id uuid, key unique, kind, payload jsonb, status pending|submitted|confirmed|failed, tx_hash, error).
 */
export interface IntentDb {
  $executeRawUnsafe(query: string, ...values: unknown[]): PromiseLike<number>;
  $queryRawUnsafe<T = unknown>(query: string, ...values: unknown[]): PromiseLike<T>;
}

/** Who sends the intents: a public client to read and a wallet that signs locally. */
export interface IntentSigner {
  publicClient: ChainPublicClient;
  wallet: ChainWalletClient;
  /**
   * Runs nonce → sign → record → broadcast exclusively per signing key (the chain connector passes
   * one queue per address). Without it, two intents signed at once take the same pending nonce and
   * the second is refused as an underpriced replacement (then retried).
   */
  serialize?: <T>(fn: () => Promise<T>) => Promise<T>;
}

/** One logical on-chain write. `isDone` reads the chain: has the effect already happened? */
export interface IntentSpec {
  key: string;
  kind: string;
  payload: Record<string, unknown>;
  call: { address: Address; abi: Abi; functionName: string; args: readonly unknown[] };
  isDone: () => Promise<boolean>;
}

export interface IntentRow {
  id: string;
  status: "pending" | "submitted" | "confirmed" | "failed";
  tx_hash: string | null;
  raw_tx: string | null;
}

export class IntentRejectedError extends Error {
  constructor(
    readonly key: string,
    readonly reason: string,
  ) {
    super(`chain intent ${key} rejected: ${reason}`);
    this.name = "IntentRejectedError";
  }
}

function reasonOf(err: unknown): string {
  if (err instanceof BaseError) {
    const revert = err.walk((e) => e instanceof ContractFunctionRevertedError);
    if (revert instanceof ContractFunctionRevertedError) {
      return revert.data?.errorName
        ? `${revert.data.errorName}(${(revert.data.args ?? []).join(", ")})`
        : revert.shortMessage;
    }
    return err.shortMessage;
  }
  return err instanceof Error ? err.message : String(err);
}

async function readIntent(db: IntentDb, key: string): Promise<IntentRow> {
  const rows = await db.$queryRawUnsafe<IntentRow[]>(
    `SELECT id::text AS id, status::text AS status, tx_hash, payload->>'rawTx' AS raw_tx FROM chain_intents WHERE key = $1`,
    key,
  );
  const row = rows[0];
  if (!row) throw new Error(`chain intent ${key} vanished`);
  return row;
}

/**
 * Whether the node may hold the transaction although the broadcast failed: it said it already has
 * it, its nonce is taken (maybe by this very transaction), or the answer never arrived. Such a
 * transaction must not be forgotten; the receipt / re-broadcast path decides what became of it.
 */
function mayBeHeld(err: unknown): boolean {
  if (err instanceof BaseError) {
    const transport = err.walk(
      (e) => e instanceof HttpRequestError || e instanceof TimeoutError || e instanceof SocketClosedError,
    );
    if (transport) return true;
  }
  const text = err instanceof BaseError ? `${err.message} ${err.details}` : String(err);
  return /already known|known transaction|already imported|nonce too low|fetch failed|ECONNRESET|ECONNREFUSED/i.test(
    text,
  );
}

/** `txHash` is the hash whose successful receipt confirmed the intent, or null when the effect
 *  was read from chain state (`isDone`): then no transaction of ours is known to have done it,
 *  and a hash recorded earlier (reverted, replaced or never mined) must not be reported. */
async function markConfirmed(db: IntentDb, id: string, txHash: string | null): Promise<void> {
  await db.$executeRawUnsafe(
    `UPDATE chain_intents SET status = 'confirmed', tx_hash = $2, error = NULL, updated_at = now()
      WHERE id = $1::uuid`,
    id,
    txHash,
  );
}

/** Forgets the signed transaction `expected` so a new one is signed. Guarded: a second driver
 *  that already confirmed the intent, or signed a newer transaction, is not overwritten. */
async function backToPending(
  db: IntentDb,
  id: string,
  expected: string | null,
  error: string,
): Promise<number> {
  return db.$executeRawUnsafe(
    `UPDATE chain_intents SET status = 'pending', tx_hash = NULL, payload = payload - 'rawTx', error = $3, updated_at = now()
      WHERE id = $1::uuid AND status IN ('pending', 'submitted') AND tx_hash IS NOT DISTINCT FROM $2`,
    id,
    expected,
    error.slice(0, 2000),
  );
}

/**
 * Step 1 + 2 of an on-chain write: record the intent (once per key), then sign the transaction
 * locally, record its hash and raw bytes (status `submitted`) BEFORE broadcasting it, then
 * broadcast. A crash at any point leaves a row that `executeIntent` can finish: the hash is
 * known before the transaction can exist, and re-broadcasting the same raw bytes (same nonce)
 * can never execute twice. Returns the row as it is after this step.
 */
export async function submitIntent(
  db: IntentDb,
  signer: IntentSigner,
  spec: IntentSpec,
  /** Tests: stop right after recording the signed transaction, as a crash there would. */
  options: { crashBeforeBroadcast?: boolean } = {},
): Promise<IntentRow> {
  await db.$executeRawUnsafe(
    `INSERT INTO chain_intents (id, key, kind, payload, status, updated_at)
     VALUES ($1::uuid, $2, $3, $4::jsonb, 'pending', now()) ON CONFLICT (key) DO NOTHING`,
    crypto.randomUUID(),
    spec.key,
    spec.kind,
    JSON.stringify(spec.payload, (_, v) => (typeof v === "bigint" ? v.toString() : v)),
  );
  let row = await readIntent(db, spec.key);
  if (row.status !== "pending") return row;
  // Already on chain (e.g. relayed by someone else): nothing to send.
  if (await spec.isDone()) {
    await markConfirmed(db, row.id, null);
    return readIntent(db, spec.key);
  }
  const wallet = signer.wallet;
  try {
    // Simulate first: a revert is reported with its reason and nothing is signed or sent.
    await signer.publicClient.simulateContract({
      ...spec.call,
      account: wallet.account,
    } as Parameters<typeof signer.publicClient.simulateContract>[0]);
  } catch (err) {
    const reason = reasonOf(err);
    await backToPending(db, row.id, null, reason);
    throw new IntentRejectedError(spec.key, reason);
  }
  const data = encodeFunctionData({
    abi: spec.call.abi,
    functionName: spec.call.functionName,
    args: spec.call.args,
  } as Parameters<typeof encodeFunctionData>[0]);
  const serialize = signer.serialize ?? (<T>(fn: () => Promise<T>) => fn());
  const sent = await serialize(async (): Promise<IntentRow | "sent"> => {
    // The pending nonce is read inside the exclusive section, after the previous intent's broadcast.
    const request = await wallet.prepareTransactionRequest({
      account: wallet.account,
      chain: wallet.chain,
      to: spec.call.address,
      data,
    });
    const raw = await wallet.signTransaction(request as Parameters<typeof wallet.signTransaction>[0]);
    const hash = keccak256(raw);
    const claimed = await db.$executeRawUnsafe(
      `UPDATE chain_intents SET status = 'submitted', tx_hash = $2, payload = payload || jsonb_build_object('rawTx', $3::text),
              error = NULL, updated_at = now()
        WHERE id = $1::uuid AND status = 'pending' AND tx_hash IS NULL`,
      row.id,
      hash,
      raw,
    );
    if (claimed === 0) return readIntent(db, spec.key); // another worker got there first
    if (options.crashBeforeBroadcast) return readIntent(db, spec.key);
    try {
      await wallet.sendRawTransaction({ serializedTransaction: raw });
    } catch (err) {
      // A lost answer or "already known": the node may hold (and mine) it, so the row stays
      // submitted and executeIntent confirms it from its receipt or re-broadcasts the same bytes.
      if (mayBeHeld(err)) return readIntent(db, spec.key);
      // The node refused it (so it cannot be mined): forget this signed tx and retry later.
      const reason = reasonOf(err);
      await backToPending(db, row.id, hash, reason);
      throw new IntentRejectedError(spec.key, reason);
    }
    return "sent";
  });
  if (sent !== "sent") return sent;
  row = await readIntent(db, spec.key);
  return row;
}

/**
 * Drives an intent to `confirmed`: submits it when needed, then confirms from the receipt.
 * On restart after a crash: a submitted intent is confirmed from its receipt; a transaction the
 * node never saw is re-broadcast from its recorded raw bytes; a reverted one is re-checked
 * against the chain state (`isDone`) before anything is sent again. Throws IntentRejectedError
 * when the chain refuses the write (the intent stays pending and the next call retries).
 */
export async function executeIntent(
  db: IntentDb,
  signer: IntentSigner,
  spec: IntentSpec,
  options: { receiptTimeoutMs?: number } = {},
): Promise<{ txHash: string | null }> {
  for (let round = 0; round < 3; round++) {
    let row = await submitIntent(db, signer, spec);
    if (row.status === "confirmed") return { txHash: row.tx_hash };
    if (row.status !== "submitted" || !row.tx_hash)
      throw new Error(`intent ${spec.key} in state ${row.status}`);
    const hash = row.tx_hash as Hex;
    let receipt = await signer.publicClient.getTransactionReceipt({ hash }).catch((err) => {
      if (err instanceof TransactionReceiptNotFoundError) return undefined;
      throw err;
    });
    if (!receipt) {
      const known = await signer.publicClient.getTransaction({ hash }).catch((err) => {
        if (err instanceof TransactionNotFoundError) return undefined;
        throw err;
      });
      if (!known && row.raw_tx) {
        try {
          await signer.wallet.sendRawTransaction({ serializedTransaction: row.raw_tx as Hex });
        } catch (err) {
          // Typically "nonce too low": its nonce went to another transaction, so this one can never be
          // mined. Check whether the effect happened anyway, else start over with a new transaction.
          if (await spec.isDone()) {
            await markConfirmed(db, row.id, null);
            return { txHash: null };
          }
          const nonceTaken = /nonce too low/i.test(
            err instanceof BaseError ? `${err.message} ${err.details}` : String(err),
          );
          // No answer: the node may hold it now; keep it and let the next run look again.
          if (!nonceTaken && mayBeHeld(err)) throw err;
          await backToPending(db, row.id, hash, `rebroadcast failed: ${reasonOf(err)}`);
          continue;
        }
      }
      receipt = await signer.publicClient.waitForTransactionReceipt({
        hash,
        timeout: options.receiptTimeoutMs ?? 60_000,
      });
    }
    // viem resolves with the receipt of a transaction that replaced ours (same nonce): ours can
    // then never be mined, and the replacement's success says nothing about our effect.
    const ours = receipt.transactionHash.toLowerCase() === hash.toLowerCase();
    if (ours && receipt.status === "success") {
      await markConfirmed(db, row.id, hash);
      return { txHash: hash };
    }
    if (await spec.isDone()) {
      await markConfirmed(db, row.id, null);
      return { txHash: null };
    }
    await backToPending(
      db,
      row.id,
      hash,
      ours ? `transaction ${hash} reverted` : `transaction ${hash} replaced by ${receipt.transactionHash}`,
    );
    row = await readIntent(db, spec.key);
  }
  throw new IntentRejectedError(spec.key, "gave up after 3 rounds");
}
