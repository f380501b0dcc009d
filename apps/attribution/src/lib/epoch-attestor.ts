import { buildEarningsTree, rewardDistributorAbi, signEpochRoot } from "@openledger/chain";
import type { Db } from "@openledger/db";
import { earningsByAddress, earningsLeaves, nextCumulativeBalances } from "@openledger/settlement-core";
import type { Address, Hex } from "viem";
import type { ChainContext, ValidatorIdentity } from "./context.ts";
import { meetsValidatorStake } from "./validator.ts";

/**
 * Epoch roots are attested by the validators, not by settlement: each validator process recomputes a
 * closed epoch's cumulative-earnings root itself, from public inputs — the distributor's last valid root
 * (its balances in the ledger must rebuild exactly that root and total) plus the credits of the epoch's
 * settlements in the double-entry ledger — and signs the EIP-712 `EpochRoot` only when it gets the very
 * root and total settlement closed. A validator that gets something else signs nothing and says so
 * (`epoch_disagreements`); without a quorum of signatures the distributor takes no root.
 */
export interface AttestorLog {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}

export interface EpochRecount {
  root: Hex;
  cumulativeTotal: bigint;
  /** The distributor's last valid epoch the root builds on. */
  previous: number;
}

/** Recomputes epoch `epochId`'s root from the chain's last valid root and the ledger (no trust in `epochs`). */
export async function recountEpoch(db: Db, chain: ChainContext, epochId: number): Promise<EpochRecount> {
  const distributor = chain.addresses.contracts.RewardDistributor;
  const tree = (epoch: number, balances: Map<string, bigint>) =>
    buildEarningsTree({
      chainId: chain.chainId,
      distributor,
      epoch: BigInt(epoch),
      entries: earningsLeaves(balances).map((l) => ({
        account: l.account as Address,
        cumulativeAmount: l.cumulativeAmount,
      })),
    });
  const previous = Number(
    await chain.publicClient.readContract({
      address: distributor,
      abi: rewardDistributorAbi,
      functionName: "lastValidEpoch",
    }),
  );
  const balances = new Map<string, bigint>();
  if (previous > 0) {
    const rows = await db.$queryRawUnsafe<{ address: string; amount: string }[]>(
      `SELECT address, cumulative_wei::text AS amount FROM epoch_balances WHERE epoch_id = $1`,
      previous,
    );
    for (const r of rows) balances.set(r.address.toLowerCase(), BigInt(r.amount));
    const onChain = await chain.publicClient.readContract({
      address: distributor,
      abi: rewardDistributorAbi,
      functionName: "getEpoch",
      args: [BigInt(previous)],
    });
    const rebuilt = tree(previous, balances);
    if (rebuilt.root.toLowerCase() !== onChain.root.toLowerCase()) {
      throw new Error(`the ledger's balances of epoch ${previous} do not rebuild the distributor's root`);
    }
  }
  // Credits of the epoch's settlements in the ledger (credits of several roles to one address add up).
  // Deliberately its own query, not settlement's (lib/epochs.ts has the same shape): the validator
  // recounts the root independently of the code that built it.
  const credits = await db.$queryRawUnsafe<{ account: string; amount: string }[]>(
    `SELECT e.account, sum(e.amount_wei)::text AS amount
       FROM ledger_entries e JOIN settlements s ON s.transaction_id = e.transaction_id
      WHERE s.epoch_id = $1 AND e.amount_wei > 0 GROUP BY e.account`,
    epochId,
  );
  // Never lower than the last valid root: nextCumulativeBalances throws on any account that would go down.
  const next = nextCumulativeBalances(
    balances,
    earningsByAddress(credits.map((c) => ({ account: c.account, amountWei: BigInt(c.amount) }))),
  );
  const built = tree(epochId, next);
  return { root: built.root as Hex, cumulativeTotal: built.cumulativeTotal, previous };
}

/**
 * One pass of a validator's attestor: every closed epoch it has not attested yet is recounted and, when
 * it agrees, signed and stored in `epoch_attestations` (settlement posts once a quorum is there).
 * Returns the epochs attested. Nothing is signed while the validator is below its minimum stake.
 */
export async function attestClosedEpochs(
  db: Db,
  chain: ChainContext,
  identity: ValidatorIdentity,
  log: AttestorLog,
): Promise<number[]> {
  const open = await db.$queryRawUnsafe<{ id: number; merkle_root: string; total: string }[]>(
    `SELECT e.id, e.merkle_root, e.cumulative_total_wei::text AS total FROM epochs e
      WHERE e.status = 'closed' AND e.merkle_root IS NOT NULL
        AND NOT EXISTS (SELECT 1 FROM epoch_attestations a
                         WHERE a.epoch_id = e.id AND a.validator_address = $1)
        AND NOT EXISTS (SELECT 1 FROM epoch_disagreements d
                         WHERE d.epoch_id = e.id AND d.validator_address = $1)
      ORDER BY e.id`,
    identity.address,
  );
  if (open.length === 0) return [];
  if (!(await meetsValidatorStake(chain, identity.address))) {
    log.warn({ validator: identity.address }, "validator below minimum stake: not attesting epochs");
    return [];
  }
  const attested: number[] = [];
  for (const epoch of open) {
    const mine = await recountEpoch(db, chain, epoch.id);
    if (
      mine.root.toLowerCase() !== epoch.merkle_root.toLowerCase() ||
      mine.cumulativeTotal !== BigInt(epoch.total)
    ) {
      log.warn(
        { epoch: epoch.id, validator: identity.address, closed: epoch.merkle_root, recounted: mine.root },
        "epoch root differs from this validator's recount: not attested",
      );
      await db.$executeRawUnsafe(
        `INSERT INTO epoch_disagreements (epoch_id, validator_address, closed_root, recounted_root,
                closed_total_wei, recounted_total_wei)
         VALUES ($1, $2, $3, $4, $5::numeric, $6::numeric) ON CONFLICT DO NOTHING`,
        epoch.id,
        identity.address,
        epoch.merkle_root,
        mine.root,
        epoch.total,
        mine.cumulativeTotal.toString(),
      );
      continue;
    }
    const signature = await signEpochRoot(
      identity.account,
      chain.chainId,
      chain.addresses.contracts.RewardDistributor,
      {
        epoch: BigInt(epoch.id),
        root: mine.root,
        cumulativeTotal: mine.cumulativeTotal,
      },
    );
    await db.$executeRawUnsafe(
      `INSERT INTO epoch_attestations (epoch_id, validator_address, signature) VALUES ($1, $2, $3)
       ON CONFLICT (epoch_id, validator_address) DO NOTHING`,
      epoch.id,
      identity.address,
      signature,
    );
    attested.push(epoch.id);
    log.info({ epoch: epoch.id, validator: identity.address, root: mine.root }, "epoch root attested");
  }
  return attested;
}
