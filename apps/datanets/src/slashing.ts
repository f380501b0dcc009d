import { StakeRole, stakingAbi, subjectOf } from "@openledger/chain";
import { Prisma, type SlashingProposal, toWei } from "@openledger/db";
import { AppError } from "@openledger/errors";
import { encodeFunctionData } from "viem";
import type { DatanetsContext } from "./context.ts";
import { resumeIntent } from "./intents.ts";

/**
 * Slashing proposal lifecycle (each change is a row in slashing_events):
 *   proposed --(accused, before the deadline)--> disputed --(datanet owner)--> upheld | dismissed
 *   proposed (deadline passed) | upheld --(operator: Staking.slash via a chain intent)--> executed
 * A proposal asking for 0 wei (no stake left) is dismissed instead of sent (the contract refuses 0).
 */
export function executable(p: SlashingProposal, now = new Date()): boolean {
  return (p.status === "proposed" && p.disputeDeadline.getTime() <= now.getTime()) || p.status === "upheld";
}

const slashKey = (id: string) => `staking.slash:${id}`;

export async function executeProposal(ctx: DatanetsContext, proposalId: string, actor: string) {
  let intent = await ctx.db.chainIntent.findUnique({ where: { key: slashKey(proposalId) } });
  if (!intent) {
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
    intent = await createIntentOnce(ctx, slashKey(p.id), {
      data: {
        key: slashKey(p.id),
        kind: "staking.slash",
        payload: {
          proposalId: p.id,
          call: {
            to: chain.addresses.contracts.Staking,
            data: encodeFunctionData({
              abi: stakingAbi,
              functionName: "slash",
              args: [
                p.contributorAddress as `0x${string}`,
                StakeRole.Contributor,
                subjectOf(toWei(p.datanet.chainDatanetId)),
                toWei(p.amountWei),
                p.evidenceHash as `0x${string}`,
              ],
            }),
          },
        },
      },
    });
  }
  if (intent.status !== "confirmed") {
    const chain = await ctx.chain.require();
    const outcome = await resumeIntent(ctx, chain, intent);
    if (outcome.status === "failed") {
      throw new AppError("CHAIN_WRITE_FAILED", `Staking.slash failed: ${outcome.error}`, { status: 409 });
    }
  }
  return ctx.db.slashingProposal.findUniqueOrThrow({ where: { id: proposalId } });
}

/** Creates an intent, or returns the one a concurrent caller created with the same key. */
async function createIntentOnce(
  ctx: DatanetsContext,
  key: string,
  args: Parameters<DatanetsContext["db"]["chainIntent"]["create"]>[0],
) {
  try {
    return await ctx.db.chainIntent.create(args);
  } catch (err) {
    if (err instanceof Prisma.PrismaClientKnownRequestError && err.code === "P2002") {
      return ctx.db.chainIntent.findUniqueOrThrow({ where: { key } });
    }
    throw err;
  }
}
