import type { Producer } from "@openledger/queue";
import type { DatanetsContext } from "../context.ts";
import { resumeIntent } from "../intents.ts";
import { executeProposal } from "../slashing.ts";
import { registerVersion } from "../versions.ts";

export interface SweepLog {
  warn(o: object, m: string): void;
  info(o: object, m: string): void;
}

/** Work older than this is considered stuck (its request/worker would have finished it). */
const STALE_MS = 5_000;

/**
 * Finishes whatever a crash or an outage left half-way, all idempotent:
 * - contributions still `pending` (the enqueue after commit failed): enqueue `datanet.validate`
 *   (the job id is derived from the contribution id, so a live job is not duplicated);
 * - chain intents `pending`/`submitted`: resume (re-broadcast the same signed tx / confirm);
 * - versions frozen but not registered, and registered ones: register, then queue `attribution.index`;
 * - slashing proposals whose dispute window closed undisputed, or upheld: execute `Staking.slash`.
 */
export async function sweepOnce(ctx: DatanetsContext, producer: Producer, log: SweepLog) {
  const stale = new Date(Date.now() - STALE_MS);
  const done = { enqueued: 0, intents: 0, versions: 0, executed: 0 };
  const pending = await ctx.db.contribution.findMany({
    where: { status: "pending", createdAt: { lt: stale } },
    select: { id: true },
    take: 1000,
  });
  for (const c of pending) {
    await producer.enqueue("datanet.validate", { contributionId: c.id });
    done.enqueued++;
  }
  const chain = await ctx.chain.get().catch(() => null);
  if (!chain) return done;
  const intents = await ctx.db.chainIntent.findMany({
    where: {
      status: { in: ["pending", "submitted"] },
      kind: { in: ["datanet.register", "staking.slash"] },
      updatedAt: { lt: stale },
    },
    take: 100,
  });
  for (const intent of intents) {
    try {
      await resumeIntent(ctx, chain, intent);
      done.intents++;
    } catch (err) {
      log.warn({ err: (err as Error).message, intent: intent.key }, "intent still not confirmed");
    }
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
      (id) => producer.enqueue("attribution.index", { datanetVersionId: id }),
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
  for (const p of due) {
    try {
      await executeProposal(ctx, p.id, chain.operator.toLowerCase());
      done.executed++;
    } catch (err) {
      log.warn({ err: (err as Error).message, proposalId: p.id }, "slashing execution failed; will retry");
    }
  }
  return done;
}
