import { IntentRejectedError } from "@openledger/chain";
import { type SlashingProposal, toWei } from "@openledger/db";
import { AppError } from "@openledger/errors";
import type { Address, Hex } from "viem";
import type { DatanetsContext } from "./context.ts";
import { driveIntent, intentKey, newIntent } from "./intents.ts";
import { assertDisputeWindowFits } from "./stake.ts";

/**
 * Slashing proposal lifecycle (each change is a row in slashing_events):
 *   proposed --(accused, before the deadline)--> disputed --(datanet owner)--> upheld | dismissed
 *   proposed (deadline passed) | upheld --(operator: Staking.slash via a chain intent)--> executed
 * A proposal asking for 0 wei (no stake left) is dismissed instead of sent (the contract refuses 0).
 */
export function executable(p: SlashingProposal, now = new Date()): boolean {
  return (p.status === "proposed" && p.disputeDeadline.getTime() <= now.getTime()) || p.status === "upheld";
}

/**
 * Executes a proposal: records the `staking.slash` intent once (a concurrent caller reuses it) and
 * drives it (packages/chain `executeIntent`: one transaction at most, confirmed from its receipt or
 * the Slashed event). A write the chain refuses answers 409 CHAIN_WRITE_REJECTED with the reason;
 * the intent stays pending and the sweeper retries it (a refusal can be temporary: a missing role,
 * a paused contract).
 */
export async function executeProposal(ctx: DatanetsContext, proposalId: string, actor: string) {
  const key = intentKey.slash(proposalId);
  if (!(await ctx.db.chainIntent.findUnique({ where: { key } }))) {
    const p = await ctx.db.slashingProposal.findUniqueOrThrow({
      where: { id: proposalId },
      include: { datanet: true },
    });
    if (p.status === "executed") return p;
    if (!executable(p)) {
      throw new AppError(
        "NOT_EXECUTABLE",
        p.status === "proposed"
          ? `the dispute window is open until ${p.disputeDeadline.toISOString()}`
          : `a ${p.status} proposal cannot be executed`,
        { status: 409 },
      );
    }
    if (toWei(p.amountWei) === 0n || p.datanet.chainDatanetId === null) {
      await ctx.db.$transaction(async (tx) => {
        const moved = await tx.slashingProposal.updateMany({
          where: { id: p.id, status: p.status },
          data: { status: "dismissed" },
        });
        if (moved.count === 1) {
          await tx.slashingEvent.create({
            data: {
              proposalId: p.id,
              fromStatus: p.status,
              toStatus: "dismissed",
              actor,
              note: "nothing to slash",
            },
          });
        }
      });
      return ctx.db.slashingProposal.findUniqueOrThrow({ where: { id: p.id } });
    }
    const chain = await ctx.chain.require();
    try {
      await assertDisputeWindowFits(chain, ctx.config.DATANETS_DISPUTE_WINDOW_SECONDS);
    } catch (err) {
      throw new AppError("DISPUTE_WINDOW_TOO_LONG", (err as Error).message, { status: 409 });
    }
    const intent = await newIntent(chain, {
      kind: "staking.slash",
      proposalId: p.id,
      account: p.contributorAddress as Address,
      chainDatanetId: p.datanet.chainDatanetId.toFixed(),
      amountWei: toWei(p.amountWei).toString(),
      evidenceHash: p.evidenceHash as Hex,
    });
    // Unique key: of concurrent callers one creates it, the others drive the same row.
    await ctx.db.chainIntent.createMany({ data: [intent], skipDuplicates: true });
  }
  const current = await ctx.db.slashingProposal.findUniqueOrThrow({ where: { id: proposalId } });
  if (current.status !== "executed") {
    await ctx.chain.require();
    try {
      await driveIntent(ctx, key);
    } catch (err) {
      if (err instanceof IntentRejectedError) {
        throw new AppError("CHAIN_WRITE_REJECTED", `Staking.slash was refused: ${err.reason}`, {
          status: 409,
        });
      }
      throw err;
    }
  }
  return ctx.db.slashingProposal.findUniqueOrThrow({ where: { id: proposalId } });
}
