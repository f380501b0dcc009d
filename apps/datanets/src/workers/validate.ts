import {
  computeBandKeys,
  DatanetIndex,
  DatanetValidator,
  indexParamsOf,
  type SubmissionStats,
  signatureFromBytes,
  signatureToBytes,
} from "@openledger/datanet-core";
import { type Tx, toWei, withTransaction } from "@openledger/db";
import type { JobContext, JobPayload } from "@openledger/queue";
import type { CachedIndex, DatanetsContext } from "../context.ts";
import { contributorPosition } from "../stake.ts";

const BATCH = 5000;
const REBUILD_PAGE = 10_000;

/**
 * The datanet's dedupe index, up to date with Postgres. Accepted rows never change status, so the
 * cached index is current iff it holds as many rows as the datanet has accepted (with signatures);
 * otherwise (first use after a start, or another replica validated meanwhile) it is rebuilt from
 * the signatures stored in `datanet_rows.signature`. Called under the datanet's validation lock.
 */
async function currentIndex(ctx: DatanetsContext, tx: Tx, datanetId: string): Promise<CachedIndex> {
  const [row] = await tx.$queryRaw<{ n: bigint }[]>`
    SELECT count(*)::bigint AS n FROM datanet_rows
    WHERE datanet_id = ${datanetId}::uuid AND status = 'accepted' AND signature IS NOT NULL`;
  const count = Number(row?.n ?? 0n);
  const cached = ctx.indexes.get(datanetId);
  if (cached && cached.index.size === count) return cached;
  const params = indexParamsOf(ctx.validation);
  const index = new DatanetIndex(params, Math.max(1024, Math.ceil(count * 1.25)));
  const keys = new Uint32Array(params.bands);
  let after = 0n;
  for (;;) {
    const page = await tx.$queryRaw<{ id: bigint; normalized_hash: string; signature: Uint8Array }[]>`
      SELECT id, normalized_hash, signature FROM datanet_rows
      WHERE datanet_id = ${datanetId}::uuid AND status = 'accepted' AND signature IS NOT NULL AND id > ${after}
      ORDER BY id LIMIT ${REBUILD_PAGE}`;
    for (const r of page) {
      const sig = signatureFromBytes(r.signature);
      index.add(Number(r.id), Buffer.from(r.normalized_hash, "hex"), sig, computeBandKeys(sig, params, keys));
    }
    if (page.length < REBUILD_PAGE) break;
    after = page[page.length - 1]!.id;
  }
  const fresh = { index };
  ctx.indexes.set(datanetId, fresh);
  return fresh;
}

/**
 * Keeps the cached indexes within DATANETS_INDEX_CACHE_BYTES: the Map's insertion order is the
 * recency order (an index is re-inserted when used), so the first entries are the least recently
 * used. The index just used is never dropped.
 */
export function evictIndexes(ctx: DatanetsContext, justUsed: string): void {
  const used = ctx.indexes.get(justUsed);
  if (used) {
    ctx.indexes.delete(justUsed);
    ctx.indexes.set(justUsed, used);
  }
  let total = 0;
  for (const c of ctx.indexes.values()) total += c.index.memoryBytes;
  for (const [id, c] of ctx.indexes) {
    if (total <= ctx.config.DATANETS_INDEX_CACHE_BYTES || id === justUsed) break;
    ctx.indexes.delete(id);
    total -= c.index.memoryBytes;
  }
}

/**
 * `datanet.validate`: runs datanet-core's pipeline over the pending rows of one contribution,
 * against the datanet's accepted rows and the earlier rows of the same submission, in ONE
 * transaction holding the datanet's validation lock (so two submissions never both accept the
 * same new row). Outcomes, counts and a slashing proposal (if the verdict asks) commit together;
 * only then are the accepted rows added to the in-memory index. Redelivery is a no-op once the
 * contribution is validated, and a crashed attempt rolled back entirely.
 */
export async function validateContribution(
  ctx: DatanetsContext,
  payload: JobPayload<"datanet.validate">,
  job: Pick<JobContext, "progress">,
): Promise<{ skipped: string } | (SubmissionStats & { slashingProposalId: string | null })> {
  const { db } = ctx;
  const c = await db.contribution.findUnique({ where: { id: payload.contributionId } });
  if (!c) return { skipped: "unknown contribution" };
  if (c.status === "validated") return { skipped: "already validated" };
  if (c.status !== "validating") {
    await db.contribution.updateMany({
      where: { id: c.id, status: { in: ["pending", "failed"] } },
      data: { status: "validating" },
    });
  }
  const datanet = await db.datanet.findUniqueOrThrow({ where: { id: c.datanetId } });

  const result = await withTransaction(
    db,
    async (tx) => {
      await tx.$executeRaw`SELECT pg_advisory_xact_lock(hashtextextended(${`validate:${c.datanetId}`}, 0))`;
      const fresh = await tx.contribution.findUniqueOrThrow({ where: { id: c.id } });
      if (fresh.status === "validated") return null;
      const cached = await currentIndex(ctx, tx, c.datanetId);
      const validator = new DatanetValidator(ctx.validation, cached.index);
      const sub = validator.startSubmission({ dedupe: true });
      const idByOrdinal: bigint[] = [];
      let after = -1;
      let processed = 0;
      for (;;) {
        const rows = await tx.datanetRow.findMany({
          where: { contributionId: c.id, ordinal: { gt: after } },
          orderBy: { ordinal: "asc" },
          take: BATCH,
          select: { id: true, ordinal: true, text: true },
        });
        if (rows.length === 0) break;
        for (const r of rows) idByOrdinal[r.ordinal] = r.id;
        const outcomes = sub.validateBatch(rows);
        const cols = {
          id: [] as string[],
          status: [] as string[],
          reason: [] as (string | null)[],
          dup: [] as (string | null)[],
          sim: [] as (string | null)[],
          q: [] as string[],
          h: [] as string[],
          sig: [] as (string | null)[],
        };
        for (const o of outcomes) {
          const r = rows[o.rowIndex - processed]!;
          const dup =
            o.duplicateOf === undefined
              ? null
              : o.duplicateOf.scope === "datanet"
                ? String(o.duplicateOf.id)
                : String(idByOrdinal[o.duplicateOf.rowIndex]);
          cols.id.push(r.id.toString());
          cols.status.push(o.status);
          cols.reason.push(o.reason ?? null);
          cols.dup.push(dup);
          cols.sim.push(
            o.similarity === undefined || o.duplicateOf === undefined
              ? null
              : String(Math.round(o.similarity * 1_000_000)),
          );
          cols.q.push(String(o.qualityScore));
          cols.h.push(o.contentHash);
          cols.sig.push(
            o.status === "accepted" && o.signature ? signatureToBytes(o.signature).toString("hex") : null,
          );
        }
        await tx.$executeRawUnsafe(
          `UPDATE datanet_rows AS r SET status = v.status::"RowStatus", reject_reason = v.reason,
             duplicate_of_row_id = v.dup::bigint, similarity_ppm = v.sim::int, quality_score = v.q::int,
             normalized_hash = v.h, signature = decode(v.sig, 'hex')
           FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[])
             AS v(id, status, reason, dup, sim, q, h, sig)
           WHERE r.id = v.id::bigint`,
          cols.id,
          cols.status,
          cols.reason,
          cols.dup,
          cols.sim,
          cols.q,
          cols.h,
          cols.sig,
        );
        processed += rows.length;
        after = rows[rows.length - 1]!.ordinal;
        await job.progress({ processed, total: c.rowCount });
      }
      const verdict = sub.verdict({
        datanetId: c.datanetId,
        contributor: c.contributorAddress,
        submissionId: c.id,
      });
      await tx.contribution.update({
        where: { id: c.id },
        data: {
          status: "validated",
          acceptedCount: verdict.stats.accepted,
          rejectedCount: verdict.stats.rows - verdict.stats.accepted,
          validatedAt: new Date(),
        },
      });
      let proposalId: string | null = null;
      if (verdict.slash && verdict.evidence && verdict.evidenceHash) {
        // Ask for a share of the stake the submission was backed by (active + unbonding when it was
        // submitted): unbonding between submitting and validation changes nothing, and Staking.slash takes
        // unbonding stake too. Contributions stored before that was recorded: the position now, unbonding
        // included.
        let stake = c.stakeAtSubmissionWei === null ? null : toWei(c.stakeAtSubmissionWei);
        if (stake === null && datanet.chainDatanetId !== null) {
          const chain = await ctx.chain.get();
          const p = await contributorPosition(chain, c.contributorAddress, toWei(datanet.chainDatanetId));
          stake = p.active + p.unbonding;
        }
        stake ??= 0n;
        const amount = (stake * BigInt(ctx.config.DATANETS_SLASH_BPS)) / 10_000n;
        const p = await tx.slashingProposal.create({
          data: {
            datanetId: c.datanetId,
            contributorAddress: c.contributorAddress,
            contributionId: c.id,
            reason: verdict.reasons.join(","),
            evidence: verdict.evidence as object,
            evidenceHash: verdict.evidenceHash,
            amountWei: amount.toString(),
            disputeDeadline: new Date(Date.now() + ctx.config.DATANETS_DISPUTE_WINDOW_SECONDS * 1000),
          },
        });
        await tx.slashingEvent.create({
          data: {
            proposalId: p.id,
            fromStatus: null,
            toStatus: "proposed",
            actor: "validator",
            note: `${verdict.reasons.join(", ")}: duplicate ratio ${verdict.duplicateRatioPpm} ppm, low-quality ratio ${verdict.lowQualityRatioPpm} ppm`,
          },
        });
        proposalId = p.id;
      }
      return { sub, idByOrdinal, stats: verdict.stats, proposalId };
    },
    { timeoutMs: 10 * 60_000, maxAttempts: 2 },
  );
  if (result === null) return { skipped: "already validated" };
  // The rows are committed: now (and only now) they join the in-memory index.
  result.sub.commit((rowIndex) => Number(result.idByOrdinal[rowIndex]));
  evictIndexes(ctx, c.datanetId);
  return { ...result.stats, slashingProposalId: result.proposalId };
}

/**
 * The `datanet.validate` handler: validates, and on the last failed attempt says so on the
 * contribution (the job stays in the failed set, re-drivable; a re-driven job validates it from
 * scratch).
 */
export async function validateJob(
  ctx: DatanetsContext,
  payload: JobPayload<"datanet.validate">,
  job: JobContext,
) {
  const started = performance.now();
  const observe = (outcome: string) => {
    ctx.metrics.validations.inc({ outcome });
    ctx.metrics.validationSeconds.observe({ outcome }, (performance.now() - started) / 1000);
  };
  try {
    const result = await validateContribution(ctx, payload, job);
    if ("skipped" in result) observe("skipped");
    else {
      observe("validated");
      const m = ctx.metrics.rows;
      m.inc({ result: "accepted" }, result.accepted);
      m.inc({ result: "exact_duplicate" }, result.exactDuplicates);
      m.inc({ result: "near_duplicate" }, result.nearDuplicates);
      m.inc({ result: "low_quality" }, result.lowQuality);
      m.inc({ result: "too_short" }, result.tooShort);
      if (result.slashingProposalId) ctx.metrics.slashingProposals.inc();
    }
    return result;
  } catch (err) {
    observe("failed");
    if (job.attempt >= job.maxAttempts) {
      await ctx.db.contribution
        .updateMany({
          where: { id: payload.contributionId, status: { not: "validated" } },
          data: { status: "failed" },
        })
        .catch(() => {});
    }
    throw err;
  }
}
