import type { DatanetsContext } from "../context.ts";
import { registerOnChain } from "../routes/datanets.ts";
import { executeProposal } from "../slashing.ts";
import { registerVersion } from "../versions.ts";

export interface SweepLog {
  warn(o: object, m: string): void;
  info(o: object, m: string): void;
}

/** Work older than this is considered stuck (its request/worker would have finished it). */
const STALE_MS = 5_000;

/**
 * Finishes whatever a crash or an outage left half-way, all idempotent, chosen by the state of the
 * data (not of the intents, so a write confirmed but not yet applied is finished too):
 * - contributions still `pending` (the enqueue after commit failed): enqueue `datanet.validate`
 *   (the job id is derived from the contribution id, so a live job is not duplicated);
 * - datanets without their on-chain id: drive the registration intent;
 * - versions frozen but not registered, and registered ones: register, then queue `attribution.index`;
 * - slashing proposals whose dispute window closed undisputed, or upheld: execute `Staking.slash`.
 * Runs as the kit's background task `datanets sweep` (never two at once).
 */
export async function sweepOnce(ctx: DatanetsContext, log: SweepLog) {
  const stale = new Date(Date.now() - STALE_MS);
  const done = { enqueued: 0, registered: 0, versions: 0, executed: 0 };
  const pending = await ctx.db.contribution.findMany({
    where: { status: "pending", createdAt: { lt: stale } },
    select: { id: true },
    take: 1000,
  });
  for (const c of pending) {
    await ctx.producer.enqueue("datanet.validate", { contributionId: c.id });
    done.enqueued++;
  }
  const chain = await ctx.chain.get().catch(() => null);
  if (!chain) return done;
  const unregistered = await ctx.db.datanet.findMany({
    where: { chainDatanetId: null, createdAt: { lt: stale } },
    select: { id: true },
    orderBy: { createdAt: "asc" },
    take: 100,
  });
  for (const d of unregistered) {
    await registerOnChain(ctx, d.id, log);
    done.registered++;
  }
  const versions = await ctx.db.datanetVersion.findMany({
    where: { status: { in: ["pending", "registered"] }, createdAt: { lt: stale } },
    select: { id: true },
    take: 100,
  });
  for (const v of versions) {
    await registerVersion(
      ctx,
      v.id,
      (id) => ctx.producer.enqueue("attribution.index", { datanetVersionId: id }),
      log,
    );
    done.versions++;
  }
  const due = await ctx.db.slashingProposal.findMany({
    where: {
      OR: [{ status: "proposed", disputeDeadline: { lte: new Date() } }, { status: "upheld" }],
    },
    select: { id: true },
    take: 100,
  });
  const operator = chain.signer("operator").account.address.toLowerCase();
  for (const p of due) {
    try {
      await executeProposal(ctx, p.id, operator);
      done.executed++;
    } catch (err) {
      log.warn({ err: (err as Error).message, proposalId: p.id }, "slashing execution failed; will retry");
    }
  }
  return done;
}
