import { type Address, type Hash, keccak256, type TransactionReceipt, toBytes } from "viem";
import type { ChainPublicClient, ChainWalletClient } from "./clients.ts";
import { openGovernorAbi, openTimelockAbi, openTokenAbi } from "./generated/abis.ts";
import { type AdminCall, encodeAdminCalls } from "./timelock.ts";

/** A governance proposal: the calls the timelock will make once it passes, and its description. */
export interface Proposal {
  calls: readonly AdminCall[];
  description: string;
}

export interface GovernanceContext {
  publicClient: ChainPublicClient;
  governor: Address;
}

function encoded(p: Proposal) {
  const { targets, values, payloads } = encodeAdminCalls(p.calls);
  return { targets, values, calldatas: payloads, descriptionHash: keccak256(toBytes(p.description)) };
}

async function send(
  ctx: GovernanceContext,
  wallet: ChainWalletClient,
  address: Address,
  abi: unknown,
  functionName: string,
  args: readonly unknown[],
): Promise<TransactionReceipt> {
  const hash: Hash = await wallet.writeContract({
    address,
    abi,
    functionName,
    args,
    account: wallet.account,
    chain: wallet.chain,
  } as never);
  const receipt = await ctx.publicClient.waitForTransactionReceipt({ hash });
  if (receipt.status !== "success") throw new Error(`${functionName} reverted (${hash})`);
  return receipt;
}

/** The governor's id of a proposal (hash of its calls and description). */
export async function proposalIdOf(ctx: GovernanceContext, p: Proposal): Promise<bigint> {
  const e = encoded(p);
  return ctx.publicClient.readContract({
    address: ctx.governor,
    abi: openGovernorAbi,
    functionName: "getProposalId",
    args: [e.targets, e.values, e.calldatas, e.descriptionHash],
  });
}

/** Approve the proposal deposit (proposal staking) and propose. Returns the proposal id. */
export async function propose(
  ctx: GovernanceContext,
  proposer: ChainWalletClient,
  p: Proposal,
): Promise<bigint> {
  const deposit = await ctx.publicClient.readContract({
    address: ctx.governor,
    abi: openGovernorAbi,
    functionName: "proposalDeposit",
  });
  if (deposit > 0n) {
    const token = await ctx.publicClient.readContract({
      address: ctx.governor,
      abi: openGovernorAbi,
      functionName: "token",
    });
    await send(ctx, proposer, token, openTokenAbi, "approve", [ctx.governor, deposit]);
  }
  const e = encoded(p);
  await send(ctx, proposer, ctx.governor, openGovernorAbi, "propose", [
    e.targets,
    e.values,
    e.calldatas,
    p.description,
  ]);
  return proposalIdOf(ctx, p);
}

/** 0 against, 1 for, 2 abstain (GovernorCountingSimple). */
export async function castVote(
  ctx: GovernanceContext,
  voter: ChainWalletClient,
  proposalId: bigint,
  support: 0 | 1 | 2 = 1,
): Promise<TransactionReceipt> {
  return send(ctx, voter, ctx.governor, openGovernorAbi, "castVote", [proposalId, support]);
}

/** queue / execute / cancel: the governor's calls that take a proposal's calls and description hash. */
async function onProposal(
  fn: "queue" | "execute" | "cancel",
  ctx: GovernanceContext,
  wallet: ChainWalletClient,
  p: Proposal,
): Promise<TransactionReceipt> {
  const e = encoded(p);
  return send(ctx, wallet, ctx.governor, openGovernorAbi, fn, [
    e.targets,
    e.values,
    e.calldatas,
    e.descriptionHash,
  ]);
}

export const queueProposal = (ctx: GovernanceContext, wallet: ChainWalletClient, p: Proposal) =>
  onProposal("queue", ctx, wallet, p);
export const executeProposal = (ctx: GovernanceContext, wallet: ChainWalletClient, p: Proposal) =>
  onProposal("execute", ctx, wallet, p);
/** The proposer while pending, or the proposal guardian while live (forfeits the deposit). */
export const cancelProposal = (ctx: GovernanceContext, wallet: ChainWalletClient, p: Proposal) =>
  onProposal("cancel", ctx, wallet, p);

export async function governorSettings(ctx: GovernanceContext): Promise<{
  votingDelay: bigint;
  votingPeriod: bigint;
  timelockDelay: bigint;
  timelock: Address;
}> {
  const read = (functionName: "votingDelay" | "votingPeriod" | "timelock") =>
    ctx.publicClient.readContract({ address: ctx.governor, abi: openGovernorAbi, functionName } as never);
  const [votingDelay, votingPeriod, timelock] = (await Promise.all([
    read("votingDelay"),
    read("votingPeriod"),
    read("timelock"),
  ])) as [bigint, bigint, Address];
  const timelockDelay = await ctx.publicClient.readContract({
    address: timelock,
    abi: openTimelockAbi,
    functionName: "getMinDelay",
  });
  return { votingDelay, votingPeriod, timelockDelay, timelock };
}

/**
 * The whole cycle on a chain whose clock can be moved (a local Hardhat node): propose (locking the deposit),
 * wait the voting delay, every voter votes for, wait the voting period, queue in the timelock, wait its
 * delay, execute, and return the deposit. The voters must have delegated their votes before the proposal.
 */
export async function passProposal(options: {
  ctx: GovernanceContext;
  proposer: ChainWalletClient;
  voters: readonly ChainWalletClient[];
  proposal: Proposal;
  /** Moves the chain's clock forward and mines a block (evm_increaseTime + evm_mine). */
  advanceTime: (seconds: number) => Promise<void>;
}): Promise<{ proposalId: bigint; executed: TransactionReceipt }> {
  const { ctx, proposer, proposal, advanceTime } = options;
  const s = await governorSettings(ctx);
  const proposalId = await propose(ctx, proposer, proposal);
  await advanceTime(Number(s.votingDelay) + 1);
  for (const voter of options.voters) await castVote(ctx, voter, proposalId, 1);
  await advanceTime(Number(s.votingPeriod) + 1);
  await queueProposal(ctx, proposer, proposal);
  await advanceTime(Number(s.timelockDelay) + 1);
  const executed = await executeProposal(ctx, proposer, proposal);
  await send(ctx, proposer, ctx.governor, openGovernorAbi, "settleDeposit", [proposalId]);
  return { proposalId, executed };
}
