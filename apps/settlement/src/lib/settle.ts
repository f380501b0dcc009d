import {
  attributionResultTypedData,
  inferenceIdToBytes32,
  opensAttributionCommitment,
  recoverAttributionCommitmentSigner,
  recoverAttributionResultSigner,
} from "@openledger/chain";
import { type Db, inferenceEpochBlockSql, rawPool } from "@openledger/db";
import {
  type AttestedResult,
  attributionReadiness,
  buildFeeJournal,
  buildTrainingJournal,
  type ContributorWeight,
  countedReveals,
  eip712Digest,
  type JournalEntry,
  priceInference,
  type SignatureVerifier,
  SignedResultError,
  type SplitBps,
  sameWeights,
  signedResultWeights,
  splitFee,
  splitTrainingFee,
  structHashOfTwoWords,
} from "@openledger/settlement-core";
import { type Address, domainSeparator, type Hex, keccak256, toBytes } from "viem";

/** What settling needs besides the database (resolved from the chain and config). */
export interface SettleContext {
  bps: SplitBps;
  treasury: string;
  /** Agreeing active validators a result needs: the distributor's fraction of the active set. */
  quorum: number;
  deadlineMs: number;
  /** Lower-case addresses whose results count: the distributor's active validators (admitted and staked). */
  validators: ReadonlySet<string>;
  /**
   * The quorum at a past block (the start of an inference's epoch: the block recorded when the previous epoch
   * closed): `quorum` and `validators` as the distributor had them then. Undefined, or an inference created
   * before any recorded epoch close: `quorum` and `validators` (now).
   */
  quorumAt?: (block: bigint) => Promise<{ quorum: number; validators: ReadonlySet<string> }>;
  /** EIP-712 domain of attribution signatures; undefined = do not check signatures. */
  signatureDomain?: { chainId: number; verifyingContract: Address };
  /** Verdicts by attribution result id. Results are immutable once signed, so a pending inference
   *  re-checked by the sweeper does not pay for its signature recoveries again. */
  verified?: Map<string, boolean>;
  /** Native (libsecp256k1) signature checks, or validators' public keys kept in JS: same verdict, cheaper. */
  signatures?: SignatureVerifier;
  now?: () => number;
}

/** Bound of the verdict cache (entries dropped oldest first). */
export const VERIFIED_CACHE_MAX = 100_000;

/**
 * `held`: a quorum signed a result, but it cannot be paid from (the stored weights beside it differ
 * from the signed bytes, or the signed bytes are not a payable result): nobody is paid, the case is in
 * `settlement_anomalies`, and the sweeper keeps re-checking it (it settles once the store is repaired;
 * the no-attribution deadline never applies to it).
 */
export type SettleOutcome = "settled" | "already" | "pending" | "held" | "failed_inference" | "missing";

export interface BatchResult {
  outcomes: Map<string, SettleOutcome>;
  settled: number;
  pending: number;
  /** Inferences held this time (reported in `settlement_anomalies`). */
  anomalies: Anomaly[];
}

/** Why an inference with a signed quorum result is held instead of paid. */
export interface Anomaly {
  inferenceId: string;
  kind: "weights_cache_mismatch" | "unpayable_signed_result" | "training_shares_mismatch";
  detail: Record<string, unknown>;
}

interface InferenceRow {
  id: string;
  /** Set when the row is a fine-tuning job's metered training (a used training grant's usage). */
  training_grant_id: string | null;
  /** The grant's trained tokens per contributor (training rows only). */
  trained_addresses: string[] | null;
  trained_tokens: string[] | null;
  account_address: string;
  input_tokens: number;
  output_tokens: number;
  status: string;
  created_at: Date;
  owner_address: string;
  price_in: string;
  price_out: string;
  settled: boolean;
  /** The chain block its epoch began at (the previous epoch's close), null when none was recorded. */
  epoch_block: string | null;
}

interface ResultRow {
  inference_id: string;
  result_id: string;
  validator_address: string;
  result_hash: string;
  signature: string;
  canonical_json: string;
  /** The reveal's salt (null: a result stored without commit-reveal, which never counts). */
  salt: string | null;
  reveal_seq: string;
  /** The validator's commitment (null: none recorded). */
  commitment: string | null;
  commitment_signature: string | null;
  commitment_seq: string | null;
  /** The result's weights, by contributor address (null when it has none). */
  addresses: string[] | null;
  ppms: number[] | null;
}

const ATTRIBUTION_TYPE_HASH = keccak256(toBytes("AttributionResult(bytes32 inferenceId,bytes32 resultHash)"));
const COMMITMENT_TYPE_HASH = keccak256(
  toBytes("AttributionCommitment(bytes32 inferenceId,bytes32 commitment)"),
);
const DOMAIN_SEPARATORS = new Map<string, Hex>();

/** The EIP-712 digest an attribution result is signed over (viem's hashTypedData, domain cached). */
export function attributionDigest(
  domain: NonNullable<SettleContext["signatureDomain"]>,
  inferenceId: string,
  resultHash: Hex,
  typeHash: Hex = ATTRIBUTION_TYPE_HASH,
): Uint8Array {
  const key = `${domain.chainId}:${domain.verifyingContract.toLowerCase()}`;
  let separator = DOMAIN_SEPARATORS.get(key);
  if (!separator) {
    separator = domainSeparator({
      domain: attributionResultTypedData(
        domain.chainId,
        { inferenceId: ZERO32, resultHash: ZERO32 },
        domain.verifyingContract,
      ).domain,
    });
    DOMAIN_SEPARATORS.set(key, separator);
  }
  return eip712Digest(
    separator,
    structHashOfTwoWords(typeHash, inferenceIdToBytes32(inferenceId), resultHash),
  );
}
const ZERO32 = `0x${"00".repeat(32)}` as const;

/** keccak256 of canonical JSON texts, so two validators' identical results are hashed once. */
type HashMemo = Map<string, string>;

/**
 * Whether a reveal is sound: the signed hash is the hash of the stored bytes, the result's signature and its
 * commitment's signature recover to the validator, and the salt opens the commitment
 * (keccak256(resultHash, validator, salt)). Whether it was committed in time is `countedReveals`'s part.
 */
async function verifyResult(r: ResultRow, ctx: SettleContext, hashes: HashMemo): Promise<boolean> {
  if (!r.commitment_signature) return false;
  if (!opensAttributionCommitment(r.commitment, r.result_hash, r.validator_address, r.salt)) return false;
  if (!(await verifySignature(r, ctx, hashes))) return false;
  return verifyCommitmentSignature(r, ctx);
}

async function verifyCommitmentSignature(r: ResultRow, ctx: SettleContext): Promise<boolean> {
  if (!ctx.signatureDomain) return true;
  const validator = r.validator_address.toLowerCase();
  const commitment = r.commitment as Hex;
  try {
    if (ctx.signatures) {
      const digest = attributionDigest(ctx.signatureDomain, r.inference_id, commitment, COMMITMENT_TYPE_HASH);
      const verdict = ctx.signatures.verify(digest, r.commitment_signature as string, validator);
      if (verdict !== undefined) return verdict;
    }
    const signer = await recoverAttributionCommitmentSigner(
      ctx.signatureDomain.chainId,
      { inferenceId: inferenceIdToBytes32(r.inference_id), commitment },
      r.commitment_signature as Hex,
      ctx.signatureDomain.verifyingContract,
    );
    return signer.toLowerCase() === validator;
  } catch {
    return false;
  }
}

async function verifySignature(r: ResultRow, ctx: SettleContext, hashes: HashMemo): Promise<boolean> {
  const validator = r.validator_address.toLowerCase();
  // The signed hash must be the hash of the stored canonical result.
  let hash = hashes.get(r.canonical_json);
  if (hash === undefined) {
    hash = keccak256(toBytes(r.canonical_json)).toLowerCase();
    hashes.set(r.canonical_json, hash);
  }
  if (hash !== r.result_hash.toLowerCase()) return false;
  if (!ctx.signatureDomain) return true;
  try {
    if (ctx.signatures && /^0x[0-9a-fA-F]{64}$/.test(r.result_hash)) {
      const digest = attributionDigest(ctx.signatureDomain, r.inference_id, r.result_hash as Hex);
      const verdict = ctx.signatures.verify(digest, r.signature, validator);
      if (verdict !== undefined) return verdict;
    }
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
  if (unique.length === 0) return { outcomes, settled: 0, pending: 0, anomalies: [] };
  const now = ctx.now?.() ?? Date.now();
  // pg directly, not Prisma: this is the hot path, and Prisma's per-query work showed in profiles.
  const pool = rawPool(db);

  // Both reads at once (two pooled connections): the inferences, and every result with its weights.
  const [{ rows: inferences }, { rows: results }] = await Promise.all([
    pool.query<InferenceRow>(
      `SELECT i.id::text AS id, i.account_address, i.input_tokens, i.output_tokens, i.status::text AS status,
            i.created_at, m.owner_address,
            -- the prices it was served at (a later price change must not re-price it)
            COALESCE(i.price_in_per_1k_wei, m.price_in_per_1k_wei)::text AS price_in,
            COALESCE(i.price_out_per_1k_wei, m.price_out_per_1k_wei)::text AS price_out,
            (s.inference_id IS NOT NULL) AS settled,
            -- the inference's epoch began where the last epoch closed before it was created
            ${inferenceEpochBlockSql("i")} AS epoch_block,
            tg.id::text AS training_grant_id, tgs.addresses AS trained_addresses, tgs.tokens AS trained_tokens
       FROM inferences i JOIN models m ON m.id = i.model_id
       LEFT JOIN settlements s ON s.inference_id = i.id
       LEFT JOIN training_grants tg ON tg.inference_id = i.id
       LEFT JOIN LATERAL (
         SELECT array_agg(contributor_address ORDER BY contributor_address) AS addresses,
                array_agg(tokens::text ORDER BY contributor_address) AS tokens
           FROM training_grant_shares WHERE grant_id = tg.id) tgs ON tg.id IS NOT NULL
      WHERE i.id = ANY($1::uuid[])`,
      [unique],
    ),
    pool.query<ResultRow>(
      `SELECT r.inference_id::text AS inference_id, r.id::text AS result_id, r.validator_address, r.result_hash,
              r.signature, r.canonical_json, r.salt, r.reveal_seq::text AS reveal_seq,
              c.commitment, c.signature AS commitment_signature, c.seq::text AS commitment_seq,
              w.addresses, w.ppms
         FROM attribution_results r
         LEFT JOIN attribution_commitments c
           ON c.inference_id = r.inference_id AND c.validator_address = r.validator_address
         LEFT JOIN LATERAL (
           SELECT array_agg(contributor_address ORDER BY contributor_address) AS addresses,
                  array_agg(weight_ppm ORDER BY contributor_address) AS ppms
             FROM attribution_weights WHERE result_id = r.id) w ON true
        WHERE r.inference_id = ANY($1::uuid[])`,
      [unique],
    ),
  ]);
  const byId = new Map(inferences.map((r) => [r.id, r]));
  const open: InferenceRow[] = [];
  for (const id of unique) {
    const row = byId.get(id);
    if (!row) outcomes.set(id, "missing");
    else if (row.settled) outcomes.set(id, "already");
    else if (row.status !== "completed") outcomes.set(id, "failed_inference");
    else open.push(row);
  }
  if (open.length === 0) return { outcomes, settled: 0, pending: 0, anomalies: [] };

  const resultsByInference = new Map<string, ResultRow[]>();
  for (const r of results) {
    const list = resultsByInference.get(r.inference_id) ?? [];
    list.push(r);
    resultsByInference.set(r.inference_id, list);
  }
  const valid = new Map<string, boolean>();
  const hashes: HashMemo = new Map();
  const openSet = new Set(open.map((r) => r.id));
  await Promise.all(
    results.map(async (r) => {
      if (!openSet.has(r.inference_id)) return;
      // The signature's verdict is cached (a result is immutable); membership of the active set is not
      // (a validator that unstaked or was removed stops counting from the next batch).
      const cached = ctx.verified?.get(r.result_id);
      const ok = cached ?? (await verifyResult(r, ctx, hashes));
      // Membership of the active set is decided per inference (at its epoch), below.
      valid.set(r.result_id, ok);
      if (ctx.verified && cached === undefined) {
        ctx.verified.set(r.result_id, ok);
        if (ctx.verified.size > VERIFIED_CACHE_MAX)
          ctx.verified.delete(ctx.verified.keys().next().value as string);
      }
    }),
  );

  // Decide readiness; a ready inference is split by the weights inside the signed canonical result
  // (the exact bytes the quorum signed), never by rows stored beside it: those are a cache, and one
  // that differs from the signed bytes holds the inference (nobody is paid) and is reported.
  const decided: {
    row: InferenceRow;
    weights: ContributorWeight[];
    resultHash?: string;
    validators: string[];
    /** Validators whose valid, signed result differs from the quorum's: recorded with the settlement. */
    dissenting?: { validator: string; resultHash: string }[];
  }[] = [];
  const pending: string[] = [];
  const anomalies: Anomaly[] = [];
  const training: InferenceRow[] = [];
  const cached = (r: ResultRow): ContributorWeight[] =>
    (r.addresses ?? []).map((address, i) => ({ address, ppm: r.ppms?.[i] ?? 0 }));
  // The validator set and quorum each inference is counted against: its epoch's (read once per block).
  const atEpoch = new Map<string, { quorum: number; validators: ReadonlySet<string> }>();
  const { quorumAt } = ctx;
  if (quorumAt) {
    const blocks = [...new Set(open.map((r) => r.epoch_block).filter((b): b is string => b !== null))];
    await Promise.all(blocks.map(async (b) => atEpoch.set(b, await quorumAt(BigInt(b)))));
  }
  for (const row of open) {
    if (row.training_grant_id !== null) {
      // A fine-tuning job's training: no attribution to wait for — the fee is split by the tokens of
      // each contributor's rows the job trained on (recorded with the grant, checked by the gateway).
      training.push(row);
      continue;
    }
    // Commit-reveal: only reveals whose commitment was recorded before the first reveal count at all (a
    // copy of a revealed result was committed too late); the rest are neither quorum nor dissent.
    const set = (row.epoch_block !== null ? atEpoch.get(row.epoch_block) : undefined) ?? {
      quorum: ctx.quorum,
      validators: ctx.validators,
    };
    const isValid = (r: ResultRow) =>
      (valid.get(r.result_id) ?? false) && set.validators.has(r.validator_address.toLowerCase());
    const revealed = resultsByInference.get(row.id) ?? [];
    const { counted } = countedReveals(
      revealed.map((r) => ({
        validator: r.validator_address.toLowerCase(),
        revealSeq: BigInt(r.reveal_seq),
        opens: isValid(r),
        ...(r.commitment_seq !== null ? { commitmentSeq: BigInt(r.commitment_seq) } : {}),
      })),
    );
    const rs = revealed.filter((r) => counted.has(r.validator_address.toLowerCase()));
    const attested: AttestedResult[] = rs.map((r) => ({
      validator: r.validator_address.toLowerCase(),
      resultHash: r.result_hash.toLowerCase(),
      valid: isValid(r),
    }));
    const readiness = attributionReadiness(attested, set.quorum);
    if (readiness.ready) {
      // Identical hashes = identical signed bytes (each hash was checked against its canonical JSON).
      const agreeing = rs.filter((r) => r.result_hash.toLowerCase() === readiness.resultHash && isValid(r));
      let weights: ContributorWeight[];
      try {
        weights = signedResultWeights(agreeing[0]!.canonical_json, row.id);
      } catch (err) {
        if (!(err instanceof SignedResultError)) throw err;
        anomalies.push({
          inferenceId: row.id,
          kind: "unpayable_signed_result",
          detail: { resultHash: readiness.resultHash, validators: readiness.validators, reason: err.message },
        });
        pending.push(row.id);
        continue;
      }
      const altered = agreeing.filter((r) => !sameWeights(weights, cached(r)));
      if (altered.length > 0) {
        anomalies.push({
          inferenceId: row.id,
          kind: "weights_cache_mismatch",
          detail: {
            resultHash: readiness.resultHash,
            signed: weights,
            stored: altered.map((r) => ({ validator: r.validator_address, weights: cached(r) })),
          },
        });
        pending.push(row.id);
        continue;
      }
      const dissenting = rs
        .filter((r) => r.result_hash.toLowerCase() !== readiness.resultHash && isValid(r))
        .map((r) => ({
          validator: r.validator_address.toLowerCase(),
          resultHash: r.result_hash.toLowerCase(),
        }))
        .sort((x, y) => (x.validator < y.validator ? -1 : x.validator > y.validator ? 1 : 0));
      decided.push({
        row,
        weights,
        resultHash: readiness.resultHash,
        validators: readiness.validators,
        dissenting,
      });
    } else if (now >= row.created_at.getTime() + ctx.deadlineMs) {
      // Deadline passed without a quorum: settle with no attribution and no attesting validator.
      decided.push({ row, weights: [], validators: [] });
    } else {
      pending.push(row.id);
    }
  }

  // A fixed order keeps row-lock order identical across concurrent batches (no deadlocks).
  decided.sort((a, b) => (a.row.id < b.row.id ? -1 : a.row.id > b.row.id ? 1 : 0));
  const planned: Planned[] = decided.map((d): Planned => {
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
      weights: d.weights,
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
        // A signed result that differs from the quorum's: evidence for a dispute (recompute, then
        // Staking.proposeSlash), and no share of the validators' part.
        dissentingValidators: d.dissenting ?? [],
        noAttribution: split.noAttribution,
      }),
    };
  });

  for (const row of await checkedTraining(pool, training, anomalies, pending)) {
    const fee = priceInference({
      inputTokens: row.input_tokens,
      outputTokens: row.output_tokens,
      priceInPer1kWei: BigInt(row.price_in),
      priceOutPer1kWei: BigInt(row.price_out),
    });
    const split = splitTrainingFee(
      fee,
      (row.trained_addresses ?? []).map((address, i) => ({
        address,
        tokens: BigInt(row.trained_tokens?.[i] ?? "0"),
      })),
    );
    planned.push({
      inferenceId: row.id,
      txId: crypto.randomUUID(),
      fee,
      entries: buildTrainingJournal({ consumer: row.account_address, treasury: ctx.treasury, split }),
      splitJson: JSON.stringify({
        ...split.bps,
        training: true,
        trainingGrantId: row.training_grant_id,
        resultHash: null,
        attestingValidators: [],
        noAttribution: split.noAttribution,
      }),
    });
  }
  planned.sort((a, b) => (a.inferenceId < b.inferenceId ? -1 : a.inferenceId > b.inferenceId ? 1 : 0));
  const inserted = await writeBatch(pool, planned, pending, anomalies);
  for (const p of planned) outcomes.set(p.inferenceId, inserted.has(p.inferenceId) ? "settled" : "already");
  for (const id of pending) outcomes.set(id, "pending");
  for (const a of anomalies) outcomes.set(a.inferenceId, "held");
  return { outcomes, settled: inserted.size, pending: pending.length, anomalies };
}

/**
 * A training fee is split by the per-contributor tokens the gateway recorded with the grant; settlement,
 * which moves the money, checks them again rather than trust the writer: they must be positive, sum to
 * the tokens billed, and name only contributors of rows in the grant's datanet versions. Rows that fail
 * pay nobody: held and reported (`training_shares_mismatch`), re-checked by the sweeper. Returns the rest.
 * (Each contributor's count itself — how many of its tokens the job trained on — is the factory's report,
 * bounded only by the total: ARCHITECTURE.md, "Who can move money".)
 */
async function checkedTraining(
  pool: ReturnType<typeof rawPool>,
  training: InferenceRow[],
  anomalies: Anomaly[],
  pending: string[],
): Promise<InferenceRow[]> {
  if (training.length === 0) return [];
  const { rows: strangers } = await pool.query<{ grant_id: string; addresses: string[] }>(
    `SELECT s.grant_id::text AS grant_id, array_agg(s.contributor_address ORDER BY s.contributor_address) AS addresses
       FROM training_grant_shares s JOIN training_grants tg ON tg.id = s.grant_id
      WHERE s.grant_id = ANY($1::uuid[])
        AND NOT EXISTS (
          SELECT 1 FROM datanet_version_rows vr JOIN datanet_rows r ON r.id = vr.row_id
           WHERE vr.version_id = ANY(tg.datanet_version_ids) AND r.contributor_address = s.contributor_address)
      GROUP BY s.grant_id`,
    [training.map((r) => r.training_grant_id)],
  );
  const notContributors = new Map(strangers.map((r) => [r.grant_id, r.addresses]));
  const ok: InferenceRow[] = [];
  for (const row of training) {
    const tokens = (row.trained_tokens ?? []).map((t) => BigInt(t));
    const sum = tokens.reduce((a, b) => a + b, 0n);
    const reasons: string[] = [];
    if (tokens.some((t) => t <= 0n)) reasons.push("a share of zero or fewer tokens");
    if (sum !== BigInt(row.input_tokens))
      reasons.push(`the shares sum to ${sum} tokens, the fee bills ${row.input_tokens}`);
    const strangersOfRow = notContributors.get(row.training_grant_id ?? "");
    if (strangersOfRow)
      reasons.push(`not contributors of the grant's datanet versions: ${strangersOfRow.join(", ")}`);
    if (reasons.length === 0) {
      ok.push(row);
      continue;
    }
    anomalies.push({
      inferenceId: row.id,
      kind: "training_shares_mismatch",
      detail: { trainingGrantId: row.training_grant_id, reasons },
    });
    pending.push(row.id);
  }
  return ok;
}

/**
 * Writes a batch in ONE statement (so one round trip, and atomic without BEGIN/COMMIT): the
 * ledger transactions `ON CONFLICT (external_key) DO NOTHING`, then the entries and settlement
 * rows of only those this statement inserted (a racing writer or a redelivery wins nothing twice),
 * the settled ids' pending rows removed, the waiting ones recorded. Returns the inference ids
 * this call settled.
 */
async function writeBatch(
  pool: ReturnType<typeof rawPool>,
  planned: Planned[],
  pending: string[],
  anomalies: Anomaly[],
): Promise<Set<string>> {
  if (planned.length === 0 && pending.length === 0) return new Set();
  const eTx: string[] = [];
  const eAccount: string[] = [];
  const eAmount: string[] = [];
  for (const p of planned) {
    for (const e of p.entries) {
      eTx.push(p.txId);
      eAccount.push(e.account);
      eAmount.push(e.amountWei.toString());
    }
  }
  const { rows } = await pool.query<{ id: string }>(
    `WITH p AS (
       SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::numeric[], $5::jsonb[])
         WITH ORDINALITY AS p(tx_id, inference_id, key, fee, split, ord)
     ), won AS (
       INSERT INTO ledger_transactions (id, kind, external_key, memo)
       SELECT tx_id, 'fee', key, NULL FROM p ORDER BY ord
       ON CONFLICT (external_key) DO NOTHING RETURNING id
     ), entries AS (
       INSERT INTO ledger_entries (transaction_id, account, amount_wei)
       SELECT e.tx_id, e.account, e.amount
         FROM unnest($6::uuid[], $7::text[], $8::numeric[]) WITH ORDINALITY AS e(tx_id, account, amount, ord)
         JOIN won ON won.id = e.tx_id ORDER BY e.ord
     ), settled AS (
       INSERT INTO settlements (inference_id, fee_wei, split_bps, transaction_id)
       SELECT p.inference_id, p.fee, p.split, p.tx_id FROM p JOIN won ON won.id = p.tx_id ORDER BY p.ord
     ), done AS (
       DELETE FROM settlement_pending WHERE inference_id IN (SELECT inference_id FROM p)
     ), waiting AS (
       INSERT INTO settlement_pending (inference_id) SELECT unnest($9::uuid[])
       ON CONFLICT (inference_id) DO UPDATE SET checked_at = now(), checks = settlement_pending.checks + 1
     ), reported AS (
       INSERT INTO settlement_anomalies (inference_id, kind, detail)
       SELECT * FROM unnest($10::uuid[], $11::text[], $12::jsonb[])
       ON CONFLICT (inference_id) DO UPDATE
         SET kind = EXCLUDED.kind, detail = EXCLUDED.detail, last_seen_at = now(), resolved_at = NULL
     ), resolved AS (
       UPDATE settlement_anomalies SET resolved_at = now()
        WHERE resolved_at IS NULL AND inference_id IN (SELECT p.inference_id FROM p JOIN won ON won.id = p.tx_id)
     )
     SELECT id::text AS id FROM won`,
    [
      planned.map((p) => p.txId),
      planned.map((p) => p.inferenceId),
      planned.map((p) => `fee:${p.inferenceId}`),
      planned.map((p) => p.fee.toString()),
      planned.map((p) => p.splitJson),
      eTx,
      eAccount,
      eAmount,
      pending,
      anomalies.map((a) => a.inferenceId),
      anomalies.map((a) => a.kind),
      anomalies.map((a) => JSON.stringify(a.detail)),
    ],
  );
  const byTx = new Map(planned.map((p) => [p.txId, p.inferenceId]));
  return new Set(rows.map((r) => byTx.get(r.id) ?? r.id));
}
