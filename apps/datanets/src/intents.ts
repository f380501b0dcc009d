import { datanetRegistryAbi, stakingAbi } from "@openledger/chain";
import type { ChainIntent } from "@openledger/db";
import { parseEventLogs } from "viem";
import { type ChainAccess, type IntentOutcome, runIntent } from "./chain.ts";
import type { DatanetsContext } from "./context.ts";

/**
 * The on-chain writes of this service, each recorded in `chain_intents` (key = one logical write):
 * - `datanet.register:<datanetId>`   DatanetRegistry.createDatanetFor(owner, uri) -> datanets.chain_datanet_id
 * - `datanet.publish:<versionId>`    DatanetRegistry.publishVersion(...)         -> version registered
 * - `staking.slash:<proposalId>`     Staking.slash(...)                          -> proposal executed
 * The effect of a receipt is written in the same DB transaction that confirms the intent.
 */
export async function resumeIntent(
  ctx: DatanetsContext,
  chain: ChainAccess,
  intent: ChainIntent,
): Promise<IntentOutcome> {
  const payload = intent.payload as Record<string, string>;
  switch (intent.kind) {
    case "datanet.register":
      return runIntent(ctx.db, chain, intent.id, async (tx, receipt) => {
        const [created] = parseEventLogs({
          abi: datanetRegistryAbi,
          eventName: "DatanetCreated",
          logs: receipt.logs,
        });
        if (!created) throw new Error(`no DatanetCreated event in ${receipt.transactionHash}`);
        await tx.datanet.update({
          where: { id: payload.datanetId! },
          data: { chainDatanetId: created.args.datanetId.toString() },
        });
      });
    case "datanet.publish":
      return runIntent(ctx.db, chain, intent.id, async (tx, receipt) => {
        const [published] = parseEventLogs({
          abi: datanetRegistryAbi,
          eventName: "DatanetVersionPublished",
          logs: receipt.logs,
        });
        if (!published) throw new Error(`no DatanetVersionPublished event in ${receipt.transactionHash}`);
        await tx.datanetVersion.update({
          where: { id: payload.versionId! },
          data: { status: "registered", chainTxHash: receipt.transactionHash },
        });
      });
    case "staking.slash":
      return runIntent(ctx.db, chain, intent.id, async (tx, receipt) => {
        const [slashed] = parseEventLogs({ abi: stakingAbi, eventName: "Slashed", logs: receipt.logs });
        const proposal = await tx.slashingProposal.findUniqueOrThrow({ where: { id: payload.proposalId! } });
        await tx.slashingProposal.update({
          where: { id: proposal.id },
          data: { status: "executed", executedTxHash: receipt.transactionHash },
        });
        await tx.slashingEvent.create({
          data: {
            proposalId: proposal.id,
            fromStatus: proposal.status,
            toStatus: "executed",
            actor: chain.operator.toLowerCase(),
            note: `slashed ${slashed?.args.amount?.toString() ?? "0"} wei on-chain`,
            txHash: receipt.transactionHash,
          },
        });
      });
    default:
      throw new Error(`unknown intent kind ${intent.kind}`);
  }
}

export function intentView(intent: ChainIntent | null) {
  if (!intent) return null;
  return {
    id: intent.id,
    kind: intent.kind,
    status: intent.status,
    txHash: intent.txHash,
    error: intent.error,
  };
}
