import { recoverAttributionResultSigner } from "@openledger/chain";
import type { Db } from "@openledger/db";
import { withTransaction } from "@openledger/db";
import {
  type AttestedResult,
  attributionReadiness,
  buildFeeJournal,
  type ContributorWeight,
  type JournalEntry,
  priceInference,
  type SplitBps,
  splitFee,
} from "@openledger/settlement-core";
import { type Address, type Hex, keccak256, pad, toBytes } from "viem";

/** What settling needs besides the database (resolved from the chain and config). */
export interface SettleContext {
  bps: SplitBps;
  treasury: string;
  quorum: number;
  deadlineMs: number;
  /** Lower-case addresses allowed to attest attribution results (the distributor's validators). */
  validators: ReadonlySet<string>;
  /** EIP-712 domain of attribution signatures; undefined = do not check signatures. */
  signatureDomain?: { chainId: number; verifyingContract: Address };
  /** Verdicts by attribution result id. Results are immutable once signed, so a pending inference
   *  re-checked by the sweeper does not pay for its signature recoveries again. */
  verified?: Map<string, boolean>;
  now?: () => number;
}

/** Bound of the verdict cache (entries dropped oldest first). */
export const VERIFIED_CACHE_MAX = 100_000;

export type SettleOutcome = "settled" | "already" | "pending" | "failed_inference" | "missing";

export interface BatchResult {
  outcomes: Map<string, SettleOutcome>;
  settled: number;
  pending: number;
}

/** The bytes32 an inference id is signed as: its UUID's 16 bytes, left-padded (as the attribution service). */
export function inferenceIdToBytes32(inferenceId: string): Hex {
  const hex = inferenceId.replaceAll("-", "").toLowerCase();
  if (!/^[0-9a-f]{32}$/.test(hex)) throw new RangeError(`not a UUID: ${inferenceId}`);
  return pad(`0x${hex}`, { size: 32 });
}

interface InferenceRow {
  id: string;
  account_address: string;
  input_tokens: number;
  output_tokens: number;
  status: string;
  created_at: Date;
  owner_address: string;
  price_in: string;
  price_out: string;
  settled: boolean;
}

interface ResultRow {
  inference_id: string;
  result_id: string;
  validator_address: string;
  result_hash: string;
  signature: string;
  canonical_json: string;
}

interface WeightRow {
  result_id: string;
  contributor_address: string;
  weight_ppm: number;
}

async function verifyResult(r: ResultRow, ctx: SettleContext): Promise<boolean> {
  const validator = r.validator_address.toLowerCase();
  if (!ctx.validators.has(validator)) return false;
  // The signed hash must be the hash of the stored canonical result.
  if (keccak256(toBytes(r.canonical_json)).toLowerCase() !== r.result_hash.toLowerCase()) return false;
  if (!ctx.signatureDomain) return true;
  try {
    const signer = await recoverAttributionResultSigner(
      ctx.signatureDomain.chainId,
      { inferenceId: inferenceIdToBytes32(r.inference_id), resultHash: r.result_hash as Hex },
      r.signature as Hex,
      ctx.signatureDomain.verifyingContract,
    );
    return signer.toLowerCase() === validator;
  } catch {
    return false;
  }
}

interface Planned {
  inferenceId: string;
  txId: string;
  fee: bigint;
  entries: JournalEntry[];
  splitJson: string;
}

/**
 * Settles a batch of inferences in ONE database transaction (the group-commit path of the
 * worker; one inference is just a batch of one). For each inference:
 * - already settled (ledger key `fee:<id>` exists): nothing changes;
 * - attribution quorum reached, or its deadline passed: price, split, journal, settlement row;
 * - otherwise: recorded in `settlement_pending` for the sweeper.
 * The ledger transaction insert is `ON CONFLICT (external_key) DO NOTHING`, so two workers racing
 * on the same inference write it once: only the winner's entries and settlement row are inserted.
 */
export async function settleBatch(db: Db, ids: readonly string[], ctx: SettleContext): Promise<BatchResult> {
  const unique = [...new Set(ids)];
  const outcomes = new Map<string, SettleOutcome>();
  if (unique.length === 0) return { outcomes, settled: 0, pending: 0 };
  const now = ctx.now?.() ?? Date.now();

  const inferences = await db.$queryRawUnsafe<InferenceRow[]>(
    `SELECT i.id::text AS id, i.account_address, i.input_tokens, i.output_tokens, i.status::text AS status,
            i.created_at, m.owner_address,
            -- the prices it was served at (a later price change must not re-price it)
            COALESCE(i.price_in_per_1k_wei, m.price_in_per_1k_wei)::text AS price_in,
            COALESCE(i.price_out_per_1k_wei, m.price_out_per_1k_wei)::text AS price_out,
            (s.inference_id IS NOT NULL) AS settled
       FROM inferences i JOIN models m ON m.id = i.model_id
       LEFT JOIN settlements s ON s.inference_id = i.id
      WHERE i.id = ANY($1::uuid[])`,
    unique,
  );
  const byId = new Map(inferences.map((r) => [r.id, r]));
  const open: InferenceRow[] = [];
  for (const id of unique) {
    const row = byId.get(id);
    if (!row) outcomes.set(id, "missing");
    else if (row.settled) outcomes.set(id, "already");
    else if (row.status !== "completed") outcomes.set(id, "failed_inference");
    else open.push(row);
  }
  if (open.length === 0) return { outcomes, settled: 0, pending: 0 };

  const openIds = open.map((r) => r.id);
  const results = await db.$queryRawUnsafe<ResultRow[]>(
    `SELECT inference_id::text AS inference_id, id::text AS result_id, validator_address, result_hash,
            signature, canonical_json
       FROM attribution_results WHERE inference_id = ANY($1::uuid[])`,
    openIds,
  );
  const resultsByInference = new Map<string, ResultRow[]>();
  for (const r of results) {
    const list = resultsByInference.get(r.inference_id) ?? [];
    list.push(r);
    resultsByInference.set(r.inference_id, list);
  }
  const valid = new Map<string, boolean>();
  await Promise.all(
    results.map(async (r) => {
      const cached = ctx.verified?.get(r.result_id);
      const ok = cached ?? (await verifyResult(r, ctx));
      valid.set(r.result_id, ok);
      if (ctx.verified && cached === undefined) {
        ctx.verified.set(r.result_id, ok);
        if (ctx.verified.size > VERIFIED_CACHE_MAX)
          ctx.verified.delete(ctx.verified.keys().next().value as string);
      }
    }),
  );

  // Decide readiness, then load the weights of the winning results only.
  const decided: { row: InferenceRow; resultId?: string; resultHash?: string; validators: string[] }[] = [];
  const pending: string[] = [];
  for (const row of open) {
    const rs = resultsByInference.get(row.id) ?? [];
    const attested: AttestedResult[] = rs.map((r) => ({
      validator: r.validator_address.toLowerCase(),
      resultHash: r.result_hash.toLowerCase(),
      valid: valid.get(r.result_id) ?? false,
    }));
    const readiness = attributionReadiness(attested, ctx.quorum);
    if (readiness.ready) {
      // Identical hashes = identical canonical results: take the lowest validator's rows.
      const winner = rs
        .filter((r) => r.result_hash.toLowerCase() === readiness.resultHash && valid.get(r.result_id))
        .sort((a, b) => (a.validator_address.toLowerCase() < b.validator_address.toLowerCase() ? -1 : 1))[0];
      decided.push({
        row,
        resultId: winner?.result_id,
        resultHash: readiness.resultHash,
        validators: readiness.validators,
      });
    } else if (now >= row.created_at.getTime() + ctx.deadlineMs) {
      // Deadline passed without a quorum: settle with no attribution and no attesting validator.
      decided.push({ row, validators: [] });
    } else {
      pending.push(row.id);
    }
  }
  const resultIds = decided.flatMap((d) => (d.resultId ? [d.resultId] : []));
  const weights =
    resultIds.length === 0
      ? []
      : await db.$queryRawUnsafe<WeightRow[]>(
          `SELECT result_id::text AS result_id, contributor_address, weight_ppm
             FROM attribution_weights WHERE result_id = ANY($1::uuid[])`,
          resultIds,
        );
  const weightsByResult = new Map<string, ContributorWeight[]>();
  for (const w of weights) {
    const list = weightsByResult.get(w.result_id) ?? [];
    list.push({ address: w.contributor_address, ppm: w.weight_ppm });
    weightsByResult.set(w.result_id, list);
  }

  // A fixed order keeps row-lock order identical across concurrent batches (no deadlocks).
  decided.sort((a, b) => (a.row.id < b.row.id ? -1 : a.row.id > b.row.id ? 1 : 0));
  const planned: Planned[] = decided.map((d) => {
    const fee = priceInference({
      inputTokens: d.row.input_tokens,
      outputTokens: d.row.output_tokens,
      priceInPer1kWei: BigInt(d.row.price_in),
      priceOutPer1kWei: BigInt(d.row.price_out),
    });
    const split = splitFee({
      fee,
      bps: ctx.bps,
      validators: d.validators,
      weights: d.resultId ? (weightsByResult.get(d.resultId) ?? []) : [],
    });
    const entries = buildFeeJournal({
      consumer: d.row.account_address,
      modelOwner: d.row.owner_address,
      treasury: ctx.treasury,
      split,
    });
    return {
      inferenceId: d.row.id,
      txId: crypto.randomUUID(),
      fee,
      entries,
      splitJson: JSON.stringify({
        ...split.bps,
        resultHash: d.resultHash ?? null,
        attestingValidators: d.validators,
        noAttribution: split.noAttribution,
      }),
    };
  });

  const inserted = await withTransaction(db, async (tx) => {
    let won: Planned[] = [];
    if (planned.length > 0) {
      const rows = await tx.$queryRawUnsafe<{ external_key: string }[]>(
        `INSERT INTO ledger_transactions (id, kind, external_key, memo)
         SELECT t.id, 'fee', t.key, NULL FROM unnest($1::uuid[], $2::text[]) AS t(id, key)
         ON CONFLICT (external_key) DO NOTHING RETURNING external_key`,
        planned.map((p) => p.txId),
        planned.map((p) => `fee:${p.inferenceId}`),
      );
      const keys = new Set(rows.map((r) => r.external_key));
      won = planned.filter((p) => keys.has(`fee:${p.inferenceId}`));
    }
    if (won.length > 0) {
      const txIds: string[] = [];
      const accounts: string[] = [];
      const amounts: string[] = [];
      for (const p of won) {
        for (const e of p.entries) {
          txIds.push(p.txId);
          accounts.push(e.account);
          amounts.push(e.amountWei.toString());
        }
      }
      await tx.$executeRawUnsafe(
        `INSERT INTO ledger_entries (transaction_id, account, amount_wei)
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::numeric[])`,
        txIds,
        accounts,
        amounts,
      );
      await tx.$executeRawUnsafe(
        `INSERT INTO settlements (inference_id, fee_wei, split_bps, transaction_id)
         SELECT * FROM unnest($1::uuid[], $2::numeric[], $3::jsonb[], $4::uuid[])`,
        won.map((p) => p.inferenceId),
        won.map((p) => p.fee.toString()),
        won.map((p) => p.splitJson),
        won.map((p) => p.txId),
      );
    }
    const done = planned.map((p) => p.inferenceId);
    if (done.length > 0) {
      await tx.$executeRawUnsafe(`DELETE FROM settlement_pending WHERE inference_id = ANY($1::uuid[])`, done);
    }
    if (pending.length > 0) {
      await tx.$executeRawUnsafe(
        `INSERT INTO settlement_pending (inference_id) SELECT unnest($1::uuid[])
         ON CONFLICT (inference_id) DO UPDATE SET checked_at = now(), checks = settlement_pending.checks + 1`,
        pending,
      );
    }
    return new Set(won.map((p) => p.inferenceId));
  });
  for (const p of planned) outcomes.set(p.inferenceId, inserted.has(p.inferenceId) ? "settled" : "already");
  for (const id of pending) outcomes.set(id, "pending");
  return { outcomes, settled: inserted.size, pending: pending.length };
}
