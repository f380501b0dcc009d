import {
  buildEarningsTree,
  type EarningsTree,
  recoverEpochRootSigner,
  rewardDistributorAbi,
  sortSignatures,
} from "@openledger/chain";
import type { SettlementConfig } from "@openledger/config";
import { type Db, withTransaction } from "@openledger/db";
import { earningsByAddress, earningsLeaves, nextCumulativeBalances } from "@openledger/settlement-core";
import type { Abi, Address, Hex } from "viem";
import { distributorQuorum, type SettlementChain } from "./chain.ts";
import { EscrowCharger } from "./charges.ts";
import { executeIntent, type IntentSpec } from "./intents.ts";

/** pg advisory lock id: one epoch driver at a time across replicas. */
export const EPOCH_LOCK = 0x5e771e;

export interface EpochRow {
  id: number;
  status: "open" | "closed" | "attested" | "posted" | "confirmed" | "revoked";
  merkle_root: string | null;
  total_wei: string;
  cumulative_total_wei: string;
  settlement_count: number;
  recipient_count: number;
  post_tx_hash: string | null;
  closed_at: Date | null;
  confirmed_at: Date | null;
  /** The distributor's activatesAt (chain clock); null until read after posting. */
  activates_at: Date | null;
  /** Seen active (chain clock past activates_at, not revoked): can never be revoked any more. */
  final_at: Date | null;
  revoked_at: Date | null;
  released_at: Date | null;
}

export interface EpochLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}

const EPOCH_COLUMNS = `id, status::text AS status, merkle_root, total_wei::text AS total_wei,
  cumulative_total_wei::text AS cumulative_total_wei, settlement_count, recipient_count, post_tx_hash,
  closed_at, confirmed_at, activates_at, final_at, revoked_at, released_at`;

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

/** The latest posted root that is not revoked (pending or active): the distributor's `lastValidEpoch`. */
export async function latestConfirmedEpoch(db: Db): Promise<EpochRow | undefined> {
  const rows = await db.$queryRawUnsafe<EpochRow[]>(
    `SELECT ${EPOCH_COLUMNS} FROM epochs WHERE status = 'confirmed' ORDER BY id DESC LIMIT 1`,
  );
  return rows[0];
}

/** The chain's clock: the latest block's timestamp (activation is judged by it, not by this machine's clock). */
export async function chainNow(chain: SettlementChain): Promise<Date> {
  const block = await chain.publicClient.getBlock({ blockTag: "latest" });
  return new Date(Number(block.timestamp) * 1000);
}

/** Thrown when the last valid root in the database does not match the chain's: nothing is closed. */
export class LedgerChainMismatchError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "LedgerChainMismatchError";
  }
}

/** The ledger account a revoked epoch's credits are moved to until they are released. */
export const heldAccount = (epochId: number) => `held:epoch:${epochId}`;

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
    // The guardian may have revoked a pending root: follow it before anything new is built on it.
    await this.syncRevocations();
    const inflight = await this.db.$queryRawUnsafe<EpochRow[]>(
      `SELECT ${EPOCH_COLUMNS} FROM epochs WHERE status NOT IN ('confirmed', 'revoked') ORDER BY id LIMIT 1`,
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
        WHERE s.epoch_id IS NULL AND s.held_by_epoch_id IS NULL AND s.writeoff_id IS NULL
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
    // What the new root builds on: the last valid root, checked against the chain's (a database whose
    // balances were altered, or that missed a revocation, must not produce the next root).
    const lastValid = await this.verifiedLastValid(chain);
    // Where the next epoch begins on chain: its inferences are counted against the validator set then.
    const closedBlock = await chain.publicClient.getBlockNumber();
    const closed = await withTransaction(
      this.db,
      async (tx) => {
        const [maxRow] = await tx.$queryRawUnsafe<{ id: number | null }[]>(
          `SELECT max(id) AS id FROM epochs`,
        );
        const id = (maxRow?.id ?? 0) + 1;
        await tx.$executeRawUnsafe(
          `INSERT INTO epochs (id, status, closed_at, closed_block) VALUES ($1, 'closed', now(), $2)`,
          id,
          closedBlock,
        );
        // Charged fees only (and zero fees, which need no charge): the epoch's total is then exactly
        // what the escrow holds for the distributor to draw.
        const [assigned] = await tx.$queryRawUnsafe<{ n: number; total: string }[]>(
          `WITH u AS (UPDATE settlements s SET epoch_id = $1
                       WHERE s.epoch_id IS NULL AND s.held_by_epoch_id IS NULL
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
        // Never lower than the last valid root (a revoked root does not count): nextCumulativeBalances
        // throws on any account that would go down.
        const cumulative = nextCumulativeBalances(
          lastValid.balances,
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
        const expected = lastValid.total + total;
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

  /**
   * Waits (up to SETTLEMENT_ATTESTATION_WAIT_MS) for the validators' attestations: each validator process
   * recounts the closed root and stores its EIP-712 `EpochRoot` signature (settlement holds no validator
   * key). True when signatures that recover to active validators for exactly this root reach the
   * distributor's quorum (`requiredSignatures`: a fraction of its active validators).
   */
  async attest(epoch: EpochRow): Promise<boolean> {
    const chain = await this.chain();
    const message = {
      epoch: BigInt(epoch.id),
      root: epoch.merkle_root as Hex,
      cumulativeTotal: BigInt(epoch.cumulative_total_wei),
    };
    const deadline = Date.now() + this.config.SETTLEMENT_ATTESTATION_WAIT_MS;
    for (;;) {
      const { need, active } = await distributorQuorum(chain);
      const valid = await this.#validAttestations(chain, epoch.id, message, active);
      if (need > 0 && valid.length >= need) break;
      if (Date.now() >= deadline) {
        this.log.warn(
          { epoch: epoch.id, have: valid.length, need },
          "epoch waits for validator attestations",
        );
        return false;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    await this.db.$executeRawUnsafe(
      `UPDATE epochs SET status = 'attested' WHERE id = $1 AND status = 'closed'`,
      epoch.id,
    );
    return true;
  }

  /** Stored attestations of active validators whose signature recovers to them for this very root. */
  async #validAttestations(
    chain: SettlementChain,
    epochId: number,
    message: { epoch: bigint; root: Hex; cumulativeTotal: bigint },
    active: ReadonlySet<string>,
  ): Promise<{ signer: Address; signature: Hex }[]> {
    const atts = await this.db.$queryRawUnsafe<{ validator_address: string; signature: string }[]>(
      `SELECT validator_address, signature FROM epoch_attestations WHERE epoch_id = $1`,
      epochId,
    );
    const out: { signer: Address; signature: Hex }[] = [];
    for (const a of atts) {
      if (!active.has(a.validator_address)) continue;
      const signer = await recoverEpochRootSigner(
        chain.chainId,
        chain.distributor,
        message,
        a.signature as Hex,
      ).catch(() => undefined);
      if (signer?.toLowerCase() === a.validator_address)
        out.push({ signer: a.validator_address as Address, signature: a.signature as Hex });
    }
    return out;
  }

  /** postEpoch with the quorum's signatures (sorted by signer, as the contract wants). */
  async postSpec(epoch: EpochRow): Promise<IntentSpec> {
    const chain = await this.chain();
    const root = epoch.merkle_root as Hex;
    const cumulativeTotal = BigInt(epoch.cumulative_total_wei);
    // Only `requiredSignatures` of active validators go on chain (each extra one costs ~7k gas to
    // verify); the lowest signers, sorted ascending as the contract requires.
    const { need, active } = await distributorQuorum(chain);
    const valid = await this.#validAttestations(
      chain,
      epoch.id,
      { epoch: BigInt(epoch.id), root, cumulativeTotal },
      active,
    );
    const signatures = sortSignatures(valid).slice(0, need);
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
      const onChain = await chain.publicClient.readContract({
        address: chain.distributor,
        abi: rewardDistributorAbi,
        functionName: "getEpoch",
        args: [BigInt(epoch.id)],
      });
      await this.db.$executeRawUnsafe(
        `UPDATE epochs SET status = 'confirmed', post_tx_hash = COALESCE($2, post_tx_hash), confirmed_at = now(),
                activates_at = to_timestamp($3::double precision) WHERE id = $1`,
        epoch.id,
        posted.txHash,
        Number(onChain.activatesAt),
      );
      this.log.info({ epoch: epoch.id, txHash: posted.txHash }, "epoch posted and confirmed");
    }
    return (await readEpoch(this.db, epoch.id)) ?? epoch;
  }

  /**
   * The last valid root's balances and total, checked against the chain: its id must be the
   * distributor's `lastValidEpoch`, and the tree rebuilt from `epoch_balances` must have the root and
   * total the distributor holds. Throws `LedgerChainMismatchError` otherwise (nothing gets closed).
   */
  async verifiedLastValid(
    chain: SettlementChain,
  ): Promise<{ id: number; balances: Map<string, bigint>; total: bigint }> {
    const last = await latestConfirmedEpoch(this.db);
    const onChainId = await chain.publicClient.readContract({
      address: chain.distributor,
      abi: rewardDistributorAbi,
      functionName: "lastValidEpoch",
    });
    if (BigInt(last?.id ?? 0) !== onChainId) {
      throw new LedgerChainMismatchError(
        `the ledger's last valid epoch is ${last?.id ?? 0}, the distributor's is ${onChainId}: not closing an epoch on it`,
      );
    }
    if (!last) return { id: 0, balances: new Map(), total: 0n };
    const { balances, tree } = await this.#storedTree(chain, last.id);
    const onChain = await chain.publicClient.readContract({
      address: chain.distributor,
      abi: rewardDistributorAbi,
      functionName: "getEpoch",
      args: [BigInt(last.id)],
    });
    if (
      tree.root.toLowerCase() !== onChain.root.toLowerCase() ||
      tree.cumulativeTotal !== onChain.cumulativeTotal
    ) {
      throw new LedgerChainMismatchError(
        `epoch ${last.id}: the balances stored in the ledger give root ${tree.root} (total ${tree.cumulativeTotal}), ` +
          `the distributor holds ${onChain.root} (total ${onChain.cumulativeTotal}): not closing an epoch on them`,
      );
    }
    return { id: last.id, balances, total: tree.cumulativeTotal };
  }

  /** An epoch's tree rebuilt from its stored balances (`epoch_balances`), with those balances. */
  async #storedTree(
    chain: SettlementChain,
    epochId: number,
  ): Promise<{ balances: Map<string, bigint>; tree: EarningsTree }> {
    const rows = await this.db.$queryRawUnsafe<{ address: string; amount: string }[]>(
      `SELECT address, cumulative_wei::text AS amount FROM epoch_balances WHERE epoch_id = $1 ORDER BY address`,
      epochId,
    );
    const balances = new Map(rows.map((r) => [r.address, BigInt(r.amount)]));
    const tree = buildEarningsTree({
      chainId: chain.chainId,
      distributor: chain.distributor,
      epoch: BigInt(epochId),
      entries: [...balances].map(([account, cumulativeAmount]) => ({
        account: account as Address,
        cumulativeAmount,
      })),
    });
    return { balances, tree };
  }

  /**
   * Follows the guardian's `EpochRevoked`: every posted root not yet final (its activation not yet seen
   * on the chain's clock) is read back; a revoked one becomes `revoked` (never served again), its
   * settlements are held out of later epochs and the ledger records the correction (`epoch_revoked:<id>`:
   * each credited account debited, `held:epoch:<id>` credited). One that the chain's clock has passed
   * unrevoked is marked final (it can never be revoked). Returns the epochs it found revoked.
   */
  async syncRevocations(through?: SettlementChain): Promise<number[]> {
    const open = await this.db.$queryRawUnsafe<{ id: number }[]>(
      `SELECT id FROM epochs WHERE status = 'confirmed' AND final_at IS NULL ORDER BY id`,
    );
    if (open.length === 0) return [];
    const chain = through ?? (await this.chain());
    const now = await chainNow(chain);
    const revoked: number[] = [];
    for (const { id } of open) {
      const e = await chain.publicClient.readContract({
        address: chain.distributor,
        abi: rewardDistributorAbi,
        functionName: "getEpoch",
        args: [BigInt(id)],
      });
      if (/^0x0+$/.test(e.root)) continue; // not on chain (cannot happen for a confirmed epoch)
      if (e.revoked) {
        await this.#applyRevocation(id);
        revoked.push(id);
      } else {
        const activatesAt = Number(e.activatesAt) * 1000;
        await this.db.$executeRawUnsafe(
          `UPDATE epochs SET activates_at = to_timestamp($2::double precision),
                  final_at = CASE WHEN $3::boolean THEN now() ELSE NULL END
            WHERE id = $1 AND status = 'confirmed'`,
          id,
          activatesAt / 1000,
          now.getTime() >= activatesAt,
        );
      }
    }
    return revoked;
  }

  async #applyRevocation(id: number): Promise<void> {
    await withTransaction(this.db, async (tx) => {
      const moved = await tx.$executeRawUnsafe(
        `UPDATE epochs SET status = 'revoked', revoked_at = now() WHERE id = $1 AND status = 'confirmed'`,
        id,
      );
      if (moved === 0) return; // another replica did it
      const credits = await tx.$queryRawUnsafe<{ account: string; amount: string }[]>(
        `SELECT e.account, sum(e.amount_wei)::text AS amount
           FROM ledger_entries e JOIN settlements s ON s.transaction_id = e.transaction_id
          WHERE s.epoch_id = $1 AND e.amount_wei > 0 GROUP BY e.account ORDER BY e.account`,
        id,
      );
      await tx.$executeRawUnsafe(
        `UPDATE settlements SET held_by_epoch_id = $1, epoch_id = NULL WHERE epoch_id = $1`,
        id,
      );
      await this.#correction(tx, `epoch_revoked:${id}`, "epoch_revoked", id, credits, -1n);
    });
    this.#trees.delete(id);
    this.log.warn(
      { epoch: id },
      "epoch revoked by the guardian: never served for claims; its settlements are held (ledger epoch_revoked)",
    );
  }

  /** One balanced ledger transaction moving `credits` between their accounts and the epoch's held account. */
  async #correction(
    tx: Parameters<Parameters<typeof withTransaction>[1]>[0],
    key: string,
    kind: string,
    epochId: number,
    credits: { account: string; amount: string }[],
    sign: 1n | -1n,
  ): Promise<void> {
    if (credits.length === 0) return;
    const txId = crypto.randomUUID();
    const inserted = await tx.$executeRawUnsafe(
      `INSERT INTO ledger_transactions (id, kind, external_key, memo) VALUES ($1::uuid, $2, $3, $4)
       ON CONFLICT (external_key) DO NOTHING`,
      txId,
      kind,
      key,
      sign < 0n
        ? `root of epoch ${epochId} revoked by the guardian: its credits are held`
        : `held credits of revoked epoch ${epochId} released into the next epoch`,
    );
    if (inserted === 0) return;
    let total = 0n;
    const accounts: string[] = [];
    const amounts: string[] = [];
    for (const c of credits) {
      const v = BigInt(c.amount);
      total += v;
      accounts.push(c.account);
      amounts.push((sign * v).toString());
    }
    accounts.push(heldAccount(epochId));
    amounts.push((-sign * total).toString());
    await tx.$executeRawUnsafe(
      `INSERT INTO ledger_entries (transaction_id, account, amount_wei)
       SELECT $1::uuid, a, v FROM unnest($2::text[], $3::numeric[]) AS t(a, v)`,
      txId,
      accounts,
      amounts,
    );
  }

  /**
   * Releases a revoked epoch's held settlements into the next epoch (an operator's decision that they
   * were right after all); the ledger reverses the hold (`epoch_released:<id>`). Returns how many.
   */
  async release(id: number): Promise<number> {
    return withTransaction(this.db, async (tx) => {
      const [epoch] = await tx.$queryRawUnsafe<{ status: string; released_at: Date | null }[]>(
        `SELECT status::text AS status, released_at FROM epochs WHERE id = $1 FOR UPDATE`,
        id,
      );
      if (epoch?.status !== "revoked") throw new NotRevokedError(id);
      if (epoch.released_at) return 0;
      const credits = await tx.$queryRawUnsafe<{ account: string; amount: string }[]>(
        `SELECT e.account, sum(e.amount_wei)::text AS amount
           FROM ledger_entries e JOIN settlements s ON s.transaction_id = e.transaction_id
          WHERE s.held_by_epoch_id = $1 AND e.amount_wei > 0 GROUP BY e.account ORDER BY e.account`,
        id,
      );
      const n = await tx.$executeRawUnsafe(
        `UPDATE settlements SET held_by_epoch_id = NULL WHERE held_by_epoch_id = $1`,
        id,
      );
      await this.#correction(tx, `epoch_released:${id}`, "epoch_released", id, credits, 1n);
      await tx.$executeRawUnsafe(`UPDATE epochs SET released_at = now() WHERE id = $1`, id);
      return n;
    });
  }

  /**
   * The root claims use: the newest posted root that the distributor accepts claims against now
   * (not revoked, the chain's clock past its activation), checked on chain; and the next one still
   * pending, if any (with when it activates). A root found revoked is followed at once.
   */
  async claimableEpochs(
    through?: SettlementChain,
  ): Promise<{ active: EpochRow | undefined; next: EpochRow | undefined }> {
    // A request passes its bounded connection (CHAIN_REQUEST_TIMEOUT_MS per read, circuit breaker).
    const chain = through ?? (await this.chain());
    for (let attempt = 0; attempt < 3; attempt++) {
      await this.syncRevocations(chain);
      const now = await chainNow(chain);
      const rows = await this.db.$queryRawUnsafe<EpochRow[]>(
        `SELECT ${EPOCH_COLUMNS} FROM epochs WHERE status = 'confirmed' ORDER BY id DESC LIMIT 100`,
      );
      // Newest first: the first root past its activation is the one to serve; the oldest of the
      // pending ones is the next to activate.
      const pending = rows.filter((r) => r.activates_at !== null && r.activates_at.getTime() > now.getTime());
      const next = pending[pending.length - 1];
      const candidate = rows.find(
        (r) => r.activates_at !== null && r.activates_at.getTime() <= now.getTime(),
      );
      if (!candidate) return { active: undefined, next };
      const active = await chain.publicClient.readContract({
        address: chain.distributor,
        abi: rewardDistributorAbi,
        functionName: "isEpochActive",
        args: [BigInt(candidate.id)],
      });
      if (active) return { active: candidate, next };
      // Revoked since the last sync (or the clocks disagree): sync again and re-pick.
    }
    return { active: undefined, next: undefined };
  }

  /** The earnings tree of an epoch (cached; rebuilt from `epoch_balances` and checked against the stored root). */
  async tree(epoch: EpochRow): Promise<EarningsTree> {
    const cached = this.#trees.get(epoch.id);
    if (cached) return cached;
    const { tree } = await this.#storedTree(await this.chain(), epoch.id);
    if (tree.root.toLowerCase() !== epoch.merkle_root?.toLowerCase()) {
      throw new Error(`epoch ${epoch.id}: rebuilt root ${tree.root} differs from the stored one`);
    }
    // Keep the four newest trees: claims use the latest active epoch, which trails the newest ones by
    // the activation delay.
    this.#trees.set(epoch.id, tree);
    for (const k of [...this.#trees.keys()].sort((a, b) => a - b).slice(0, -4)) this.#trees.delete(k);
    return tree;
  }
}

class NothingToClose extends Error {}

export class NotRevokedError extends Error {
  constructor(readonly epochId: number) {
    super(`epoch ${epochId} is not revoked`);
    this.name = "NotRevokedError";
  }
}
