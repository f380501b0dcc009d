import {
  buildEarningsTree,
  type EarningsTree,
  rewardDistributorAbi,
  signEpochRoot,
  sortSignatures,
} from "@openledger/chain";
import type { SettlementConfig } from "@openledger/config";
import { type Db, withTransaction } from "@openledger/db";
import { accumulateEarnings, earningsByAddress, earningsLeaves } from "@openledger/settlement-core";
import type { Abi, Address, Hex } from "viem";
import { distributorQuorum, type SettlementChain } from "./chain.ts";
import { EscrowCharger } from "./charges.ts";
import { executeIntent, type IntentSpec } from "./intents.ts";

/** pg advisory lock id: one epoch driver at a time across replicas. */
export const EPOCH_LOCK = 0x5e771e;

export interface EpochRow {
  id: number;
  status: "open" | "closed" | "attested" | "posted" | "confirmed";
  merkle_root: string | null;
  total_wei: string;
  cumulative_total_wei: string;
  settlement_count: number;
  recipient_count: number;
  post_tx_hash: string | null;
  closed_at: Date | null;
  confirmed_at: Date | null;
}

export interface EpochLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}

const EPOCH_COLUMNS = `id, status::text AS status, merkle_root, total_wei::text AS total_wei,
  cumulative_total_wei::text AS cumulative_total_wei, settlement_count, recipient_count, post_tx_hash,
  closed_at, confirmed_at`;

export async function readEpoch(db: Db, id: number): Promise<EpochRow | undefined> {
  const rows = await db.$queryRawUnsafe<EpochRow[]>(`SELECT ${EPOCH_COLUMNS} FROM epochs WHERE id = $1`, id);
  return rows[0];
}

export async function listEpochs(db: Db, limit = 50): Promise<EpochRow[]> {
  return db.$queryRawUnsafe<EpochRow[]>(
    `SELECT ${EPOCH_COLUMNS} FROM epochs ORDER BY id DESC LIMIT $1`,
    limit,
  );
}

export async function latestConfirmedEpoch(db: Db): Promise<EpochRow | undefined> {
  const rows = await db.$queryRawUnsafe<EpochRow[]>(
    `SELECT ${EPOCH_COLUMNS} FROM epochs WHERE status = 'confirmed' ORDER BY id DESC LIMIT 1`,
  );
  return rows[0];
}

/** How often a consumer found short is re-read when epochs close only by size or API. */
export const DEFAULT_DEFERRED_RECHECK_MS = 60_000;

/**
 * Epochs: charge the waiting fees in the escrow (`EscrowCharger`: a consumer who cannot cover
 * theirs is skipped and carried over), close (assign the charged settlements, compute cumulative
 * earnings, build the tree), attest (validators sign the root), post the root (a chain intent;
 * the distributor draws exactly the epoch's charged total), then confirm. One epoch is in flight
 * at a time, because the distributor accepts only `latestEpoch + 1`.
 */
export class EpochManager {
  readonly #trees = new Map<number, EarningsTree>();
  #running: Promise<EpochRow | undefined> | undefined;
  #again = false;
  readonly startedAt = Date.now();
  readonly charger: EscrowCharger;
  readonly #recheckMs: number;

  constructor(
    private readonly db: Db,
    private readonly config: SettlementConfig,
    private readonly chain: () => Promise<SettlementChain>,
    private readonly log: EpochLogger,
  ) {
    this.#recheckMs = config.SETTLEMENT_EPOCH_INTERVAL_MS || DEFAULT_DEFERRED_RECHECK_MS;
    this.charger = new EscrowCharger(db, chain, log, this.#recheckMs);
  }

  /**
   * Single-flight: concurrent calls share one run (a call during a run schedules one more, so a
   * `force` is never lost). Returns the epoch that was driven, if any.
   */
  tick(options: { force?: boolean } = {}): Promise<EpochRow | undefined> {
    if (this.#running) {
      if (options.force) this.#again = true;
      return this.#running;
    }
    const run = (async () => {
      try {
        let result = await this.#tickLocked(options.force ?? false);
        while (this.#again) {
          this.#again = false;
          result = await this.#tickLocked(true);
        }
        return result;
      } finally {
        this.#running = undefined;
      }
    })();
    this.#running = run;
    return run;
  }

  /** Resolves when no tick is running (used on shutdown). */
  async idle(): Promise<void> {
    await this.#running?.catch(() => undefined);
  }

  async #tickLocked(force: boolean): Promise<EpochRow | undefined> {
    // A transaction-scoped advisory lock: one driver at a time across replicas.
    return withTransaction(
      this.db,
      async (tx) => {
        // A forced tick (the API) waits for another driver to finish; a timer tick just skips.
        if (force) {
          await tx.$queryRawUnsafe(`SELECT pg_advisory_xact_lock($1)::text AS locked`, EPOCH_LOCK);
        } else {
          const got = await tx.$queryRawUnsafe<{ ok: boolean }[]>(
            `SELECT pg_try_advisory_xact_lock($1) AS ok`,
            EPOCH_LOCK,
          );
          if (!got[0]?.ok) return undefined;
        }
        return this.#drive(force);
      },
      { timeoutMs: 10 * 60_000, maxAttempts: 1 },
    );
  }

  async #drive(force: boolean): Promise<EpochRow | undefined> {
    const inflight = await this.db.$queryRawUnsafe<EpochRow[]>(
      `SELECT ${EPOCH_COLUMNS} FROM epochs WHERE status <> 'confirmed' ORDER BY id LIMIT 1`,
    );
    let epoch = inflight[0];
    if (!epoch) {
      if (!(await this.#shouldClose(force))) return undefined;
      // Only what the escrow actually took goes into the epoch.
      await this.charger.run({ force });
      epoch = await this.closeEpoch();
      if (!epoch) return undefined;
    }
    return this.#advance(epoch);
  }

  async #shouldClose(force: boolean): Promise<boolean> {
    // Waiting fees, except (unless forced) those of consumers found short less than a recheck
    // period ago: their backlog must not close (and re-read balances) on every tick.
    const [w] = await this.db.$queryRawUnsafe<{ n: number; total: string; oldest: Date | null }[]>(
      `SELECT count(*)::int AS n, COALESCE(sum(s.fee_wei), 0)::text AS total, min(s.created_at) AS oldest
         FROM settlements s JOIN inferences i ON i.id = s.inference_id
        WHERE s.epoch_id IS NULL
          AND ($1::boolean OR s.charge_id IS NOT NULL OR NOT EXISTS (
                SELECT 1 FROM escrow_deferrals d WHERE d.consumer = i.account_address
                   AND d.checked_at > now() - make_interval(secs => $2::double precision / 1000)))`,
      force,
      this.#recheckMs,
    );
    if (!w || BigInt(w.total) === 0n) return false; // nothing to pay: an epoch needs a non-zero total
    if (force || w.n >= this.config.SETTLEMENT_EPOCH_MAX_SETTLEMENTS) return true;
    const interval = this.config.SETTLEMENT_EPOCH_INTERVAL_MS;
    if (interval === 0) return false;
    const [last] = await this.db.$queryRawUnsafe<{ at: Date | null }[]>(
      `SELECT max(closed_at) AS at FROM epochs`,
    );
    const since = last?.at?.getTime() ?? Math.min(this.startedAt, w.oldest?.getTime() ?? this.startedAt);
    return Date.now() - since >= interval;
  }

  /** Closes the next epoch in one transaction; undefined when there is nothing to close. */
  async closeEpoch(): Promise<EpochRow | undefined> {
    const chain = await this.chain();
    const closed = await withTransaction(
      this.db,
      async (tx) => {
        const [maxRow] = await tx.$queryRawUnsafe<{ id: number | null }[]>(
          `SELECT max(id) AS id FROM epochs`,
        );
        const id = (maxRow?.id ?? 0) + 1;
        await tx.$executeRawUnsafe(
          `INSERT INTO epochs (id, status, closed_at) VALUES ($1, 'closed', now())`,
          id,
        );
        // Charged fees only (and zero fees, which need no charge): the epoch's total is then exactly
        // what the escrow holds for the distributor to draw.
        const [assigned] = await tx.$queryRawUnsafe<{ n: number; total: string }[]>(
          `WITH u AS (UPDATE settlements s SET epoch_id = $1
                       WHERE s.epoch_id IS NULL
                         AND (s.fee_wei = 0 OR EXISTS (SELECT 1 FROM escrow_charges c
                                                        WHERE c.id = s.charge_id AND c.status = 'applied'))
                       RETURNING s.fee_wei)
           SELECT count(*)::int AS n, COALESCE(sum(fee_wei), 0)::text AS total FROM u`,
          id,
        );
        const total = BigInt(assigned?.total ?? "0");
        if (!assigned || total === 0n) throw new NothingToClose();
        const credits = await tx.$queryRawUnsafe<{ account: string; amount: string }[]>(
          `SELECT e.account, sum(e.amount_wei)::text AS amount
             FROM ledger_entries e JOIN settlements s ON s.transaction_id = e.transaction_id
            WHERE s.epoch_id = $1 AND e.amount_wei > 0 GROUP BY e.account`,
          id,
        );
        const previous = await tx.$queryRawUnsafe<{ address: string; amount: string }[]>(
          `SELECT address, cumulative_wei::text AS amount FROM epoch_balances WHERE epoch_id = $1`,
          id - 1,
        );
        const [prevEpoch] = await tx.$queryRawUnsafe<{ total: string }[]>(
          `SELECT cumulative_total_wei::text AS total FROM epochs WHERE id = $1`,
          id - 1,
        );
        const cumulative = accumulateEarnings(
          new Map(previous.map((p) => [p.address, BigInt(p.amount)])),
          earningsByAddress(credits.map((c) => ({ account: c.account, amountWei: BigInt(c.amount) }))),
        );
        const leaves = earningsLeaves(cumulative);
        const tree = buildEarningsTree({
          chainId: chain.chainId,
          distributor: chain.distributor,
          epoch: BigInt(id),
          entries: leaves.map((l) => ({
            account: l.account as Address,
            cumulativeAmount: l.cumulativeAmount,
          })),
        });
        const expected = BigInt(prevEpoch?.total ?? "0") + total;
        if (tree.cumulativeTotal !== expected) {
          throw new Error(
            `epoch ${id}: tree total ${tree.cumulativeTotal} != previous total + fees ${expected}`,
          );
        }
        await tx.$executeRawUnsafe(
          `INSERT INTO epoch_balances (epoch_id, address, cumulative_wei)
           SELECT $1, * FROM unnest($2::text[], $3::numeric[])`,
          id,
          leaves.map((l) => l.account),
          leaves.map((l) => l.cumulativeAmount.toString()),
        );
        await tx.$executeRawUnsafe(
          `UPDATE epochs SET merkle_root = $2, total_wei = $3::numeric, cumulative_total_wei = $4::numeric,
                  settlement_count = $5, recipient_count = $6 WHERE id = $1`,
          id,
          tree.root,
          total.toString(),
          tree.cumulativeTotal.toString(),
          assigned.n,
          leaves.length,
        );
        this.#trees.set(id, tree);
        return id;
      },
      { timeoutMs: 5 * 60_000 },
    ).catch((err) => {
      if (err instanceof NothingToClose) return undefined;
      throw err;
    });
    if (closed === undefined) return undefined;
    this.log.info({ epoch: closed }, "epoch closed");
    return readEpoch(this.db, closed);
  }

  /** Every attester signs the EIP-712 EpochRoot; true when the distributor's quorum (requiredSignatures:
   *  a fraction of its active validators) is met. */
  async attest(epoch: EpochRow): Promise<boolean> {
    const chain = await this.chain();
    const message = {
      epoch: BigInt(epoch.id),
      root: epoch.merkle_root as Hex,
      cumulativeTotal: BigInt(epoch.cumulative_total_wei),
    };
    for (const account of chain.attesters) {
      const signature = await signEpochRoot(account, chain.chainId, chain.distributor, message);
      await this.db.$executeRawUnsafe(
        `INSERT INTO epoch_attestations (epoch_id, validator_address, signature) VALUES ($1, $2, $3)
         ON CONFLICT (epoch_id, validator_address) DO NOTHING`,
        epoch.id,
        account.address.toLowerCase(),
        signature,
      );
    }
    const { need, active } = await distributorQuorum(chain);
    const rows = await this.db.$queryRawUnsafe<{ validator_address: string }[]>(
      `SELECT validator_address FROM epoch_attestations WHERE epoch_id = $1`,
      epoch.id,
    );
    // Only active validators' signatures count (the contract rejects the others).
    const have = rows.filter((r) => active.has(r.validator_address)).length;
    if (need === 0 || have < need) {
      this.log.warn({ epoch: epoch.id, have, need }, "epoch waits for attestations");
      return false;
    }
    await this.db.$executeRawUnsafe(
      `UPDATE epochs SET status = 'attested' WHERE id = $1 AND status = 'closed'`,
      epoch.id,
    );
    return true;
  }

  /** postEpoch with the quorum's signatures (sorted by signer, as the contract wants). */
  async postSpec(epoch: EpochRow): Promise<IntentSpec> {
    const chain = await this.chain();
    const root = epoch.merkle_root as Hex;
    const cumulativeTotal = BigInt(epoch.cumulative_total_wei);
    const atts = await this.db.$queryRawUnsafe<{ validator_address: string; signature: string }[]>(
      `SELECT validator_address, signature FROM epoch_attestations WHERE epoch_id = $1`,
      epoch.id,
    );
    // Only `requiredSignatures` of active validators go on chain (each extra one costs ~7k gas to
    // verify); the lowest signers, sorted ascending as the contract requires.
    const { need, active } = await distributorQuorum(chain);
    const signatures = sortSignatures(
      atts
        .filter((a) => active.has(a.validator_address))
        .map((a) => ({ signer: a.validator_address as Address, signature: a.signature as Hex })),
    ).slice(0, need);
    return {
      key: `epoch.post:${epoch.id}`,
      kind: "epoch.post",
      payload: { epoch: epoch.id, root, cumulativeTotal: cumulativeTotal.toString(), signatures },
      call: {
        address: chain.distributor,
        abi: rewardDistributorAbi as Abi,
        functionName: "postEpoch",
        args: [BigInt(epoch.id), root, cumulativeTotal, signatures],
      },
      isDone: async () => {
        const onChain = await chain.publicClient.readContract({
          address: chain.distributor,
          abi: rewardDistributorAbi,
          functionName: "getEpoch",
          args: [BigInt(epoch.id)],
        });
        if (/^0x0+$/.test(onChain.root)) return false;
        if (onChain.root.toLowerCase() !== root.toLowerCase()) {
          throw new Error(
            `epoch ${epoch.id} is on chain with another root ${onChain.root}: ledger and chain diverged`,
          );
        }
        return true;
      },
    };
  }

  async #advance(start: EpochRow): Promise<EpochRow> {
    const chain = await this.chain();
    let epoch = start;
    if (!epoch.merkle_root) throw new Error(`epoch ${epoch.id} has no root`);
    if (epoch.status === "closed") {
      if (!(await this.attest(epoch))) return epoch;
      epoch = { ...epoch, status: "attested" };
    }
    if (epoch.status === "attested" || epoch.status === "posted") {
      // Its fees were charged before it closed. `posted`: the root is on its way to the chain.
      if (epoch.status === "attested") {
        await this.db.$executeRawUnsafe(`UPDATE epochs SET status = 'posted' WHERE id = $1`, epoch.id);
        epoch = { ...epoch, status: "posted" };
      }
      // The distributor draws the epoch total from the escrow in the same call.
      const posted = await executeIntent(this.db, chain, await this.postSpec(epoch));
      await this.db.$executeRawUnsafe(
        `UPDATE epochs SET status = 'confirmed', post_tx_hash = COALESCE($2, post_tx_hash), confirmed_at = now() WHERE id = $1`,
        epoch.id,
        posted.txHash,
      );
      this.log.info({ epoch: epoch.id, txHash: posted.txHash }, "epoch posted and confirmed");
    }
    return (await readEpoch(this.db, epoch.id)) ?? epoch;
  }

  /** The earnings tree of an epoch (cached; rebuilt from `epoch_balances` and checked against the stored root). */
  async tree(epoch: EpochRow): Promise<EarningsTree> {
    const cached = this.#trees.get(epoch.id);
    if (cached) return cached;
    const chain = await this.chain();
    const rows = await this.db.$queryRawUnsafe<{ address: string; amount: string }[]>(
      `SELECT address, cumulative_wei::text AS amount FROM epoch_balances WHERE epoch_id = $1 ORDER BY address`,
      epoch.id,
    );
    const tree = buildEarningsTree({
      chainId: chain.chainId,
      distributor: chain.distributor,
      epoch: BigInt(epoch.id),
      entries: rows.map((r) => ({ account: r.address as Address, cumulativeAmount: BigInt(r.amount) })),
    });
    if (tree.root.toLowerCase() !== epoch.merkle_root?.toLowerCase()) {
      throw new Error(`epoch ${epoch.id}: rebuilt root ${tree.root} differs from the stored one`);
    }
    // Keep the two newest trees: claims use the latest confirmed epoch.
    this.#trees.set(epoch.id, tree);
    for (const k of [...this.#trees.keys()].sort((a, b) => a - b).slice(0, -2)) this.#trees.delete(k);
    return tree;
  }
}

class NothingToClose extends Error {}
