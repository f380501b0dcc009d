import { inferenceEscrowAbi } from "@openledger/chain";
import { type Db, ensureAccountsSql, lockAccountsSql, withTransaction } from "@openledger/db";
import {
  type Abi,
  type Address,
  decodeEventLog,
  type Hex,
  keccak256,
  type TransactionReceipt,
  TransactionReceiptNotFoundError,
  toBytes,
} from "viem";
import type { SettlementChain } from "./chain.ts";
import type { EpochLogger } from "./epochs.ts";
import { executeIntent, type IntentSpec } from "./intents.ts";

/** Consumers charged per InferenceEscrow.charge call (bounded gas per transaction). */
export const CHARGE_CHUNK = 200;
/** Escrow balances read at once when planning a charge round. */
const BALANCE_READS_IN_FLIGHT = 16;
/** Blocks per eth_getLogs call when looking a charge up by its event (providers cap the range). */
const LOG_RANGE_BLOCKS = 10_000n;

export interface ChargeItem {
  consumer: string;
  amountWei: string;
  outcome: "charged" | "skipped" | null;
}

export interface ChargeRound {
  /** Charge batches applied in this round (resumed ones included). */
  batches: number;
  chargedWei: bigint;
  /** Consumers whose charge the escrow skipped (balance or daily cap short when the batch ran). */
  skipped: number;
  /** Consumers left with fees carried over (short at planning or skipped). */
  deferred: number;
}

interface PlannedRow {
  id: string;
  batch_id: string;
  items: ChargeItem[];
  tx_hash: string | null;
}

/** The escrow batch id of a charge row: bound to the chain, the deployment and the row. */
export function chargeBatchId(chain: SettlementChain, chargeId: string): Hex {
  return keccak256(
    toBytes(
      `openledger.settlement.charge:${chain.chainId}:${chain.addresses.contracts.InferenceEscrow}:${chargeId}`,
    ),
  );
}

/**
 * Charges settled fees in InferenceEscrow before an epoch closes, so an epoch holds only fees the
 * escrow has taken (its root total = what the distributor draws). Per consumer it is all or
 * nothing: the escrow skips a consumer whose balance is short instead of reverting the batch, and
 * their fees stay unassigned (`escrow_deferrals` says why) until a later round can charge them.
 *
 * A round: finish charge batches left `planned` (a crash, a chain refusal), then plan new ones:
 * read each consumer's escrow balance, take their uncharged fees oldest first while the balance
 * covers them, and record the batches (rows + their settlements' `charge_id`) BEFORE sending
 * them as chain intents. Each batch's outcome is read from its receipt (`Charged` /
 * `ChargeSkipped`); a skipped consumer's settlements are released for a later round.
 */
export class EscrowCharger {
  constructor(
    private readonly db: Db,
    private readonly chain: () => Promise<SettlementChain>,
    private readonly log: EpochLogger,
    /** A consumer found short is not re-read before this much time (unless a round is forced). */
    private readonly recheckMs: number,
  ) {}

  async run(options: { force?: boolean } = {}): Promise<ChargeRound> {
    const round: ChargeRound = { batches: 0, chargedWei: 0n, skipped: 0, deferred: 0 };
    for (const planned of await this.#planned()) await this.#execute(planned, round);
    for (const planned of await this.plan(options.force ?? false, round)) await this.#execute(planned, round);
    return round;
  }

  async #planned(): Promise<PlannedRow[]> {
    return this.db.$queryRawUnsafe<PlannedRow[]>(
      `SELECT id::text AS id, batch_id, items, tx_hash FROM escrow_charges WHERE status = 'planned' ORDER BY created_at, id`,
    );
  }

  /** Plans (records) the charge batches of every uncharged fee the balances cover; returns them. */
  async plan(force: boolean, round?: ChargeRound): Promise<PlannedRow[]> {
    const chain = await this.chain();
    const rows = await this.db.$queryRawUnsafe<{ id: string; consumer: string; fee: string }[]>(
      `SELECT s.inference_id::text AS id, i.account_address AS consumer, s.fee_wei::text AS fee
         FROM settlements s JOIN inferences i ON i.id = s.inference_id
        WHERE s.epoch_id IS NULL AND s.charge_id IS NULL AND s.fee_wei > 0 AND s.writeoff_id IS NULL
          AND ($1::boolean OR NOT EXISTS (
                SELECT 1 FROM escrow_deferrals d WHERE d.consumer = i.account_address
                   AND d.checked_at > now() - make_interval(secs => $2::double precision / 1000)))
        ORDER BY i.account_address, i.created_at, s.inference_id`,
      force,
      this.recheckMs,
    );
    if (rows.length === 0) return [];
    const byConsumer = new Map<string, { id: string; fee: bigint }[]>();
    for (const r of rows) {
      const list = byConsumer.get(r.consumer) ?? [];
      list.push({ id: r.id, fee: BigInt(r.fee) });
      byConsumer.set(r.consumer, list);
    }
    const balances = await this.#balances(chain, [...byConsumer.keys()]);

    const { covered, short, clear } = planCharges(byConsumer, balances);

    const planned = await withTransaction(this.db, async (tx) => {
      const out: PlannedRow[] = [];
      for (let c = 0; c * CHARGE_CHUNK < covered.length; c++) {
        const part = covered.slice(c * CHARGE_CHUNK, (c + 1) * CHARGE_CHUNK);
        const id = crypto.randomUUID();
        const batchId = chargeBatchId(chain, id);
        const items: ChargeItem[] = part.map((p) => ({
          consumer: p.consumer,
          amountWei: p.amount.toString(),
          outcome: null,
        }));
        await tx.$executeRawUnsafe(
          `INSERT INTO escrow_charges (id, batch_id, status, items, total_wei)
           VALUES ($1::uuid, $2, 'planned', $3::jsonb, $4::numeric)`,
          id,
          batchId,
          JSON.stringify(items),
          part.reduce((t, p) => t + p.amount, 0n).toString(),
        );
        const ids = part.flatMap((p) => p.ids);
        const taken = await tx.$executeRawUnsafe(
          `UPDATE settlements SET charge_id = $1::uuid
            WHERE inference_id = ANY($2::uuid[]) AND charge_id IS NULL AND epoch_id IS NULL AND writeoff_id IS NULL`,
          id,
          ids,
        );
        // The epoch lock makes this the only planner; anything else is a bug, not a race to absorb.
        if (taken !== ids.length) throw new Error(`charge ${id}: ${taken} of ${ids.length} settlements free`);
        out.push({ id, batch_id: batchId, items, tx_hash: null });
      }
      for (const s of short) await upsertDeferral(tx, s.consumer, s.wei, s.count, s.balance);
      if (clear.length > 0) {
        await tx.$executeRawUnsafe(`DELETE FROM escrow_deferrals WHERE consumer = ANY($1::text[])`, clear);
      }
      return out;
    });
    if (round) round.deferred += short.length;
    if (short.length > 0) {
      this.log.warn(
        {
          consumers: short.map((s) => s.consumer),
          deferredWei: short.reduce((t, s) => t + s.wei, 0n).toString(),
        },
        "escrow balance (or daily cap) short: fees carried over to a later epoch",
      );
    }
    return planned;
  }

  async #balances(chain: SettlementChain, consumers: string[]): Promise<Map<string, bigint>> {
    const out = new Map<string, bigint>();
    for (let i = 0; i < consumers.length; i += BALANCE_READS_IN_FLIGHT) {
      const part = consumers.slice(i, i + BALANCE_READS_IN_FLIGHT);
      const values = await Promise.all(
        part.map((c) =>
          chain.publicClient.readContract({
            address: chain.addresses.contracts.InferenceEscrow,
            abi: inferenceEscrowAbi,
            // What a charge can take now: the balance, within what is left of the consumer's daily cap
            // (InferenceEscrow bounds the settler by it); fees beyond it are carried over.
            functionName: "chargeableOf",
            args: [c as Address],
          }),
        ),
      );
      for (const [k, c] of part.entries()) out.set(c, values[k]!);
    }
    return out;
  }

  spec(chain: SettlementChain, planned: PlannedRow): IntentSpec {
    const batchId = planned.batch_id as Hex;
    const consumers = planned.items.map((i) => i.consumer as Address);
    const amounts = planned.items.map((i) => BigInt(i.amountWei));
    return {
      key: `escrow.charge:${planned.id}`,
      kind: "escrow.charge",
      payload: { chargeId: planned.id, batchId, consumers, amounts },
      call: {
        address: chain.addresses.contracts.InferenceEscrow,
        abi: inferenceEscrowAbi as Abi,
        functionName: "charge",
        args: [batchId, consumers, amounts],
      },
      isDone: () =>
        chain.publicClient.readContract({
          address: chain.addresses.contracts.InferenceEscrow,
          abi: inferenceEscrowAbi,
          functionName: "chargeBatchApplied",
          args: [batchId],
        }),
    };
  }

  async #execute(planned: PlannedRow, round: ChargeRound): Promise<void> {
    const chain = await this.chain();
    const { txHash } = await executeIntent(this.db, chain, this.spec(chain, planned));
    const receipt = await this.#receipt(chain, planned.batch_id as Hex, txHash as Hex | null);
    const outcome = outcomesOf(chain, planned, receipt);
    const skipped = outcome.items.filter((i) => i.outcome === "skipped").map((i) => i.consumer);
    await withTransaction(this.db, async (tx) => {
      const done = await tx.$executeRawUnsafe(
        `UPDATE escrow_charges SET status = 'applied', items = $2::jsonb, charged_wei = $3::numeric, tx_hash = $4,
                applied_at = now() WHERE id = $1::uuid AND status = 'planned'`,
        planned.id,
        JSON.stringify(outcome.items),
        outcome.charged.toString(),
        receipt.transactionHash,
      );
      if (done === 0) return; // applied by another run already
      // What each consumer owes the escrow drops by what it took, in this transaction: the gateway's
      // running total (gateway_accounts.cleared_wei; apps/gateway README, "Billing check").
      await addCleared(tx, chargedByConsumer(outcome.items));
      if (skipped.length === 0) return;
      // Released for a later round; recorded as deferred with what the escrow saw.
      await tx.$executeRawUnsafe(
        `UPDATE settlements s SET charge_id = NULL FROM inferences i
          WHERE s.charge_id = $1::uuid AND i.id = s.inference_id AND i.account_address = ANY($2::text[])`,
        planned.id,
        skipped,
      );
      const owed = await tx.$queryRawUnsafe<{ consumer: string; wei: string; n: number }[]>(
        `SELECT i.account_address AS consumer, sum(s.fee_wei)::text AS wei, count(*)::int AS n
           FROM settlements s JOIN inferences i ON i.id = s.inference_id
          WHERE s.epoch_id IS NULL AND s.charge_id IS NULL AND s.fee_wei > 0 AND s.writeoff_id IS NULL
            AND i.account_address = ANY($1::text[])
          GROUP BY i.account_address`,
        skipped,
      );
      for (const o of owed) {
        await upsertDeferral(tx, o.consumer, BigInt(o.wei), o.n, outcome.balances.get(o.consumer) ?? 0n);
      }
    });
    round.batches++;
    round.chargedWei += outcome.charged;
    round.skipped += skipped.length;
    round.deferred += skipped.length;
    if (skipped.length > 0) {
      this.log.warn(
        { charge: planned.id, consumers: skipped },
        "escrow skipped consumers whose balance fell short: fees carried over to a later epoch",
      );
    }
  }

  /** The receipt of the batch's transaction. Found by its event when the intent was confirmed
   *  from chain state (no hash of ours did it), and also when the recorded hash has no receipt or
   *  reverted: a row confirmed before intents cleared a stale hash would otherwise fail every run. */
  async #receipt(chain: SettlementChain, batchId: Hex, txHash: Hex | null): Promise<TransactionReceipt> {
    if (txHash) {
      const receipt = await chain.publicClient.getTransactionReceipt({ hash: txHash }).catch((err) => {
        if (err instanceof TransactionReceiptNotFoundError) return undefined;
        throw err;
      });
      if (receipt?.status === "success") return receipt;
    }
    const hash = await this.#appliedIn(chain, batchId);
    if (!hash) throw new Error(`charge batch ${batchId} applied but its event was not found`);
    return chain.publicClient.getTransactionReceipt({ hash });
  }

  /** The transaction that emitted ChargeBatchApplied(batchId), newest range first. The range is
   *  read in bounded chunks up to the current block: providers cap eth_getLogs ranges. */
  async #appliedIn(chain: SettlementChain, batchId: Hex): Promise<Hex | undefined> {
    const from = BigInt(chain.addresses.deployedAtBlock);
    const latest = await chain.publicClient.getBlockNumber();
    for (let to = latest; to >= from; to -= LOG_RANGE_BLOCKS) {
      const start = to - LOG_RANGE_BLOCKS + 1n > from ? to - LOG_RANGE_BLOCKS + 1n : from;
      const [event] = await chain.publicClient.getContractEvents({
        address: chain.addresses.contracts.InferenceEscrow,
        abi: inferenceEscrowAbi,
        eventName: "ChargeBatchApplied",
        args: { batchId },
        fromBlock: start,
        toBlock: to,
      });
      if (event?.transactionHash) return event.transactionHash;
    }
    return undefined;
  }
}

export interface ChargePlan {
  /** Per consumer: the fees their balance covers (oldest first) and their sum. */
  covered: { consumer: string; amount: bigint; ids: string[] }[];
  /** Per consumer: what their balance does not cover (carried over). */
  short: { consumer: string; wei: bigint; count: number; balance: bigint }[];
  /** Consumers covered in full (a stale deferral of theirs is cleared). */
  clear: string[];
}

/**
 * Which fees each consumer's balance covers: their fees in the given order (oldest first), as
 * long as the running sum stays within the balance; the first fee that does not fit and every
 * later one wait (a later, smaller fee does not jump the queue). Pure; property-tested.
 */
export function planCharges(
  feesByConsumer: ReadonlyMap<string, readonly { id: string; fee: bigint }[]>,
  balances: ReadonlyMap<string, bigint>,
): ChargePlan {
  const plan: ChargePlan = { covered: [], short: [], clear: [] };
  for (const [consumer, fees] of feesByConsumer) {
    const balance = balances.get(consumer) ?? 0n;
    let amount = 0n;
    let n = 0;
    while (n < fees.length && amount + fees[n]!.fee <= balance) amount += fees[n++]!.fee;
    if (n > 0) plan.covered.push({ consumer, amount, ids: fees.slice(0, n).map((f) => f.id) });
    if (n < fees.length) {
      const rest = fees.slice(n);
      plan.short.push({ consumer, wei: rest.reduce((t, f) => t + f.fee, 0n), count: rest.length, balance });
    } else plan.clear.push(consumer);
  }
  return plan;
}

/**
 * Fees the escrow took (or that were written off) leave the gateway's running totals:
 * `cleared_wei += amount` per account (apps/gateway README, "Billing check"), inside the caller's
 * transaction. The rows are locked in address order (`lockAccountsSql`), as the gateway's sweep
 * locks them: two transactions locking overlapping accounts in different orders deadlock (40P01).
 */
export async function addCleared(
  tx: Pick<Db, "$executeRaw">,
  amounts: ReadonlyMap<string, bigint>,
): Promise<void> {
  const accounts = [...amounts.keys()].sort();
  if (accounts.length === 0) return;
  await tx.$executeRaw(ensureAccountsSql(accounts));
  await tx.$executeRaw`
    WITH locked AS (${lockAccountsSql(accounts)})
    UPDATE gateway_accounts a SET cleared_wei = a.cleared_wei + v.amount::numeric, updated_at = now()
      FROM unnest(${accounts}::text[], ${accounts.map((a) => amounts.get(a)!.toString())}::text[]) AS v(account, amount)
      JOIN locked ON locked.account_address = v.account
     WHERE a.account_address = v.account`;
}

/** Each charged consumer's total in a batch's outcome. */
export function chargedByConsumer(items: readonly ChargeItem[]): Map<string, bigint> {
  const out = new Map<string, bigint>();
  for (const i of items) {
    if (i.outcome === "charged") out.set(i.consumer, (out.get(i.consumer) ?? 0n) + BigInt(i.amountWei));
  }
  return out;
}

async function upsertDeferral(
  tx: Pick<Db, "$executeRawUnsafe">,
  consumer: string,
  wei: bigint,
  count: number,
  balance: bigint,
): Promise<void> {
  await tx.$executeRawUnsafe(
    `INSERT INTO escrow_deferrals (consumer, deferred_wei, settlement_count, balance_wei, since, checked_at)
     VALUES ($1, $2::numeric, $3, $4::numeric, now(), now())
     ON CONFLICT (consumer) DO UPDATE SET deferred_wei = EXCLUDED.deferred_wei,
       settlement_count = EXCLUDED.settlement_count, balance_wei = EXCLUDED.balance_wei, checked_at = now()`,
    consumer,
    wei.toString(),
    count,
    balance.toString(),
  );
}

/**
 * Each consumer's outcome in a batch, from the receipt's `Charged` / `ChargeSkipped` events of
 * this batch id. Every item must be accounted for with its exact amount, or this throws: money
 * is never guessed.
 */
export function outcomesOf(
  chain: SettlementChain,
  planned: Pick<PlannedRow, "id" | "batch_id" | "items">,
  receipt: Pick<TransactionReceipt, "logs" | "status" | "transactionHash">,
): { items: ChargeItem[]; charged: bigint; balances: Map<string, bigint> } {
  if (receipt.status !== "success") throw new Error(`charge ${planned.id}: transaction reverted`);
  const escrow = chain.addresses.contracts.InferenceEscrow.toLowerCase();
  const seen = new Map<string, { outcome: "charged" | "skipped"; amount: bigint; balance: bigint }>();
  for (const log of receipt.logs) {
    if (log.address.toLowerCase() !== escrow) continue;
    let ev: ReturnType<typeof decodeEventLog<typeof inferenceEscrowAbi>>;
    try {
      ev = decodeEventLog({ abi: inferenceEscrowAbi, data: log.data, topics: log.topics });
    } catch {
      continue;
    }
    if (ev.eventName !== "Charged" && ev.eventName !== "ChargeSkipped") continue;
    if (ev.args.batchId.toLowerCase() !== planned.batch_id.toLowerCase()) continue;
    const consumer = ev.args.consumer.toLowerCase();
    if (ev.eventName === "Charged") {
      seen.set(consumer, { outcome: "charged", amount: ev.args.amount, balance: ev.args.newBalance });
    } else {
      // What the escrow could have taken: the balance, within what was left of the daily cap.
      const { balance, capRemaining } = ev.args;
      seen.set(consumer, {
        outcome: "skipped",
        amount: ev.args.amount,
        balance: balance < capRemaining ? balance : capRemaining,
      });
    }
  }
  let charged = 0n;
  const balances = new Map<string, bigint>();
  const items = planned.items.map((item): ChargeItem => {
    const s = seen.get(item.consumer.toLowerCase());
    if (!s || s.amount !== BigInt(item.amountWei)) {
      throw new Error(
        `charge ${planned.id}: receipt ${receipt.transactionHash} does not account for ${item.consumer}`,
      );
    }
    if (s.outcome === "charged") charged += s.amount;
    balances.set(item.consumer, s.balance);
    return { ...item, outcome: s.outcome };
  });
  return { items, charged, balances };
}
