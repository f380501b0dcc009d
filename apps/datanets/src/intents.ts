import {
  type ChainConnection,
  datanetRegistryAbi,
  type IntentSpec,
  StakeRole,
  stakingAbi,
  subjectOf,
} from "@openledger/chain";
import type { ChainIntent, Db } from "@openledger/db";
import { type Abi, type AbiEvent, type Address, getAbiItem, type Hex, type Log } from "viem";
import type { DatanetsContext } from "./context.ts";

/**
 * The on-chain writes of this service, each a `chain_intents` row (key = one logical write) created
 * in the same database transaction as the state it belongs to, and sent with packages/chain's one
 * `executeIntent` (as the operator):
 * - `datanet.register:<datanetId>`  DatanetRegistry.createDatanetFor(owner, uri) -> datanets.chain_datanet_id
 * - `datanet.publish:<versionId>`   DatanetRegistry.publishVersion(...)         -> version registered
 * - `staking.slash:<proposalId>`    Staking.slash(...)                          -> proposal executed
 *
 * Each write's effect is read back from the chain event that proves it (ours or anyone's), searched
 * from the block the intent was recorded at: that is `isDone` for the executor (never send a write
 * whose effect already happened), and the effect is applied from that event, idempotently — so a
 * crash between the confirmation and the database update is repaired by driving the intent again.
 */
export type IntentPayload =
  | { kind: "datanet.register"; datanetId: string; owner: Address; metadataUri: string; fromBlock: string }
  | {
      kind: "datanet.publish";
      versionId: string;
      chainDatanetId: string;
      root: Hex;
      rowCount: number;
      contributorCount: number;
      fromBlock: string;
    }
  | {
      kind: "staking.slash";
      proposalId: string;
      account: Address;
      chainDatanetId: string;
      amountWei: string;
      evidenceHash: Hex;
      fromBlock: string;
    };

export type IntentKind = IntentPayload["kind"];

export const intentKey = {
  register: (datanetId: string) => `datanet.register:${datanetId}`,
  publish: (versionId: string) => `datanet.publish:${versionId}`,
  slash: (proposalId: string) => `staking.slash:${proposalId}`,
};

/** The row to create (in the caller's transaction) for a new write; `fromBlock` = the current block. */
export async function newIntent(
  chain: ChainConnection,
  payload: DistributiveOmit<IntentPayload, "fromBlock">,
) {
  const fromBlock = (await chain.publicClient.getBlockNumber()).toString();
  const key =
    payload.kind === "datanet.register"
      ? intentKey.register(payload.datanetId)
      : payload.kind === "datanet.publish"
        ? intentKey.publish(payload.versionId)
        : intentKey.slash(payload.proposalId);
  return { key, kind: payload.kind, payload: { ...payload, fromBlock } as object };
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

/** Largest block range one log query reads (providers cap it; a local node does not care). */
const LOG_RANGE = 10_000n;

/** Logs of one event of `address` from `fromBlock` to the latest block, in bounded ranges. */
async function eventLogs(
  chain: ChainConnection,
  address: Address,
  abi: Abi,
  eventName: string,
  args: Record<string, unknown>,
  fromBlock: bigint,
): Promise<(Log & { args: Record<string, unknown> })[]> {
  const event = getAbiItem({ abi, name: eventName }) as AbiEvent;
  // Not the client's cached block number: a receipt just seen may be newer than the cache.
  const latest = await chain.publicClient.getBlockNumber({ cacheTime: 0 });
  const out: (Log & { args: Record<string, unknown> })[] = [];
  for (let from = fromBlock; from <= latest; from += LOG_RANGE) {
    const to = from + LOG_RANGE - 1n < latest ? from + LOG_RANGE - 1n : latest;
    const logs = await chain.publicClient.getLogs({
      address,
      event,
      args,
      fromBlock: from,
      toBlock: to,
    } as never);
    out.push(...(logs as unknown as (Log & { args: Record<string, unknown> })[]));
  }
  return out;
}

/** The event proving the write of `p` happened, or null. */
export async function findEffect(
  chain: ChainConnection,
  p: IntentPayload,
): Promise<(Log & { args: Record<string, unknown> }) | null> {
  const c = chain.addresses.contracts;
  const from = BigInt(p.fromBlock);
  switch (p.kind) {
    case "datanet.register": {
      const logs = await eventLogs(
        chain,
        c.DatanetRegistry,
        datanetRegistryAbi as Abi,
        "DatanetCreated",
        { owner: p.owner },
        from,
      );
      return logs.find((l) => l.args.metadataURI === p.metadataUri) ?? null;
    }
    case "datanet.publish": {
      const logs = await eventLogs(
        chain,
        c.DatanetRegistry,
        datanetRegistryAbi as Abi,
        "DatanetVersionPublished",
        { datanetId: BigInt(p.chainDatanetId) },
        from,
      );
      return logs.find((l) => String(l.args.rowsRoot).toLowerCase() === p.root.toLowerCase()) ?? null;
    }
    case "staking.slash": {
      const logs = await eventLogs(
        chain,
        c.Staking,
        stakingAbi as Abi,
        "Slashed",
        { account: p.account, role: StakeRole.Contributor, subject: subjectOf(BigInt(p.chainDatanetId)) },
        from,
      );
      return (
        logs.find((l) => String(l.args.evidenceHash).toLowerCase() === p.evidenceHash.toLowerCase()) ?? null
      );
    }
  }
}

/** The contract call of a write. */
function callOf(chain: ChainConnection, p: IntentPayload): IntentSpec["call"] {
  const c = chain.addresses.contracts;
  switch (p.kind) {
    case "datanet.register":
      return {
        address: c.DatanetRegistry,
        abi: datanetRegistryAbi as Abi,
        functionName: "createDatanetFor",
        args: [p.owner, p.metadataUri],
      };
    case "datanet.publish":
      return {
        address: c.DatanetRegistry,
        abi: datanetRegistryAbi as Abi,
        functionName: "publishVersion",
        args: [BigInt(p.chainDatanetId), p.root, BigInt(p.rowCount), BigInt(p.contributorCount)],
      };
    case "staking.slash":
      return {
        address: c.Staking,
        abi: stakingAbi as Abi,
        functionName: "slash",
        args: [
          p.account,
          StakeRole.Contributor,
          subjectOf(BigInt(p.chainDatanetId)),
          BigInt(p.amountWei),
          p.evidenceHash,
        ],
      };
  }
}

function specOf(chain: ChainConnection, key: string, p: IntentPayload): IntentSpec {
  return {
    key,
    kind: p.kind,
    payload: p,
    call: callOf(chain, p),
    isDone: async () => (await findEffect(chain, p)) !== null,
  };
}

/**
 * Drives the intent `key` to confirmation and applies its effect (both idempotent): the executor
 * sends at most one transaction, re-broadcasts a recorded one, and confirms only from its own
 * receipt or from the chain event. Throws IntentRejectedError when the chain refuses the write (a
 * revert: the intent stays pending with the reason and is retried by the sweeper) and any other
 * error when the chain cannot be reached.
 */
export async function driveIntent(ctx: DatanetsContext, key: string): Promise<void> {
  const intent = await ctx.db.chainIntent.findUniqueOrThrow({ where: { key } });
  const p = intent.payload as unknown as IntentPayload;
  const chain = await ctx.chain.get();
  await chain.execute(ctx.db, "operator", specOf(chain, key, p));
  const log = await findEffect(chain, p);
  if (!log)
    throw new Error(`intent ${key} is confirmed but its event was not found from block ${p.fromBlock}`);
  await applyEffect(ctx.db, p, log, chain.signer("operator").account.address.toLowerCase());
}

async function applyEffect(
  db: Db,
  p: IntentPayload,
  log: Log & { args: Record<string, unknown> },
  operator: string,
) {
  const txHash = log.transactionHash;
  switch (p.kind) {
    case "datanet.register":
      await db.datanet.updateMany({
        where: { id: p.datanetId, chainDatanetId: null },
        data: { chainDatanetId: String(log.args.datanetId) },
      });
      return;
    case "datanet.publish":
      await db.datanetVersion.updateMany({
        where: { id: p.versionId, status: "pending" },
        data: { status: "registered", chainTxHash: txHash },
      });
      return;
    case "staking.slash":
      await db.$transaction(async (tx) => {
        const proposal = await tx.slashingProposal.findUniqueOrThrow({ where: { id: p.proposalId } });
        if (proposal.status === "executed") return;
        const moved = await tx.slashingProposal.updateMany({
          where: { id: proposal.id, status: proposal.status },
          data: { status: "executed", executedTxHash: txHash },
        });
        if (moved.count === 0) return; // a concurrent driver recorded it
        await tx.slashingEvent.create({
          data: {
            proposalId: proposal.id,
            fromStatus: proposal.status,
            toStatus: "executed",
            actor: operator,
            note: `slashed ${String(log.args.amount ?? 0n)} wei on-chain`,
            txHash,
          },
        });
      });
      return;
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
