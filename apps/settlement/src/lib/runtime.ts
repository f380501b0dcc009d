import type { SettlementConfig } from "@openledger/config";
import type { Db } from "@openledger/db";
import { SignatureVerifier, type SplitBps } from "@openledger/settlement-core";
import { GroupCommit } from "./batcher.ts";
import { connectSettlementChain, distributorValidators, type SettlementChain } from "./chain.ts";
import { reconcile } from "./claims.ts";
import { type EpochLogger, EpochManager } from "./epochs.ts";
import { type Anomaly, type SettleContext, type SettleOutcome, settleBatch } from "./settle.ts";

const VALIDATORS_TTL_MS = 30_000;

export function splitBpsOf(config: SettlementConfig): SplitBps {
  return {
    treasury: config.SETTLEMENT_TREASURY_BPS,
    validators: config.SETTLEMENT_VALIDATORS_BPS,
    modelOwner: config.SETTLEMENT_MODEL_OWNER_BPS,
    contributors: config.SETTLEMENT_CONTRIBUTORS_BPS,
  };
}

/**
 * What the routes, workers and timers of one app share: the chain connection (lazy, so the
 * HTTP API and health checks work while the chain is down), the group-commit settler, the
 * epoch manager and the background timers (pending sweeper, epoch ticker).
 */
export class SettlementRuntime {
  readonly batcher: GroupCommit<string, SettleOutcome>;
  readonly epochs: EpochManager;
  #chain: Promise<SettlementChain> | undefined;
  #validators: { at: number; set: Set<string> } | undefined;
  #timers: NodeJS.Timeout[] = [];
  #sweeping = false;
  #reconciledEpoch = 0;
  readonly #verified = new Map<string, boolean>();
  readonly #signatures = new SignatureVerifier();
  readonly #chainOverride: (() => Promise<SettlementChain>) | undefined;

  constructor(
    readonly db: Db,
    readonly config: SettlementConfig,
    readonly log: EpochLogger & { error(obj: object, msg?: string): void },
    chain?: () => Promise<SettlementChain>,
  ) {
    this.#chainOverride = chain;
    const getChain = () => this.chain();
    this.batcher = new GroupCommit(config.SETTLEMENT_BATCH_MAX, async (ids) => {
      const result = await settleBatch(db, ids, await this.settleContext());
      this.#report(result.anomalies);
      if (result.settled > 0) this.#maybeCloseBySize();
      return result.outcomes;
    });
    this.epochs = new EpochManager(db, config, getChain, log);
  }

  chain(): Promise<SettlementChain> {
    if (this.#chainOverride) return this.#chainOverride();
    if (!this.#chain) {
      const p = connectSettlementChain(this.config);
      p.catch(() => {
        if (this.#chain === p) this.#chain = undefined; // retry on the next call
      });
      this.#chain = p;
    }
    return this.#chain;
  }

  async settleContext(): Promise<SettleContext> {
    const chain = await this.chain();
    const now = Date.now();
    if (!this.#validators || now - this.#validators.at > VALIDATORS_TTL_MS) {
      this.#validators = { at: now, set: await distributorValidators(chain) };
    }
    return {
      bps: splitBpsOf(this.config),
      treasury: chain.treasury,
      quorum: this.config.SETTLEMENT_ATTRIBUTION_QUORUM,
      deadlineMs: this.config.SETTLEMENT_ATTRIBUTION_DEADLINE_MS,
      validators: this.#validators.set,
      signatureDomain: { chainId: chain.chainId, verifyingContract: chain.distributor },
      verified: this.#verified,
      signatures: this.#signatures,
    };
  }

  /** Settles one inference through the group commit (what the queue handler calls). */
  settle(inferenceId: string): Promise<SettleOutcome> {
    return this.batcher.submit(inferenceId);
  }

  /** Re-tries inferences waiting for their attribution quorum (oldest check first). */
  async sweepPending(): Promise<number> {
    if (this.#sweeping) return 0;
    this.#sweeping = true;
    try {
      const rows = await this.db.$queryRawUnsafe<{ id: string }[]>(
        `SELECT inference_id::text AS id FROM settlement_pending ORDER BY checked_at LIMIT $1`,
        this.config.SETTLEMENT_BATCH_MAX,
      );
      if (rows.length === 0) return 0;
      const result = await settleBatch(
        this.db,
        rows.map((r) => r.id),
        await this.settleContext(),
      );
      this.#report(result.anomalies);
      if (result.settled > 0) this.#maybeCloseBySize();
      return result.settled;
    } finally {
      this.#sweeping = false;
    }
  }

  /** A signed quorum result that cannot be paid from pays nobody: said loudly (and kept in settlement_anomalies). */
  #report(anomalies: readonly Anomaly[]): void {
    for (const a of anomalies) {
      this.log.error(
        { inferenceId: a.inferenceId, kind: a.kind, detail: a.detail },
        "signed attribution result not paid: inference held (GET /v1/anomalies)",
      );
    }
  }

  #sizeCheckQueued = false;
  #maybeCloseBySize(): void {
    if (this.#sizeCheckQueued || this.#timers.length === 0) return; // only when the timers run
    this.#sizeCheckQueued = true;
    setTimeout(() => {
      this.#sizeCheckQueued = false;
      this.epochs.tick().catch((err) => this.log.warn({ err: String(err) }, "epoch tick failed"));
    }, 50).unref();
  }

  /** Background timers (workers only): the pending sweeper and the epoch ticker. */
  start(): void {
    if (this.#timers.length > 0) return;
    const every = (ms: number, fn: () => Promise<unknown>, what: string) => {
      const t = setInterval(() => {
        fn().catch((err) =>
          this.log.warn({ err: err instanceof Error ? err.message : String(err) }, `${what} failed`),
        );
      }, ms);
      this.#timers.push(t);
    };
    every(this.config.SETTLEMENT_RECHECK_MS, () => this.sweepPending(), "pending sweep");
    // The ticker runs often; `tick` itself decides (interval, size) whether an epoch closes, and
    // finishes an epoch left in flight (e.g. after a restart).
    const tickMs = Math.max(250, Math.min(this.config.SETTLEMENT_EPOCH_INTERVAL_MS || 5_000, 5_000));
    every(
      tickMs,
      async () => {
        const epoch = await this.epochs.tick();
        if (epoch?.status === "confirmed" && epoch.id !== this.#reconciledEpoch) {
          // Reconcile once per confirmed epoch; differences are logged (and served by /v1/reconciliation).
          this.#reconciledEpoch = epoch.id;
          const report = await reconcile(this.db, await this.chain());
          if (!report.ok)
            this.log.error({ checks: report.checks.filter((c) => !c.ok) }, "ledger and chain differ");
          else this.log.info({ epoch: epoch.id }, "reconciled ledger with chain");
        }
      },
      "epoch tick",
    );
  }

  async stop(): Promise<void> {
    for (const t of this.#timers) clearInterval(t);
    this.#timers = [];
    await this.epochs.idle();
  }
}

const RUNTIMES = new WeakMap<Db, SettlementRuntime>();

/** One runtime per app (keyed by its Prisma client, shared by the root app and route plugins). */
export function runtimeFor(
  db: Db,
  config: SettlementConfig,
  log: EpochLogger & { error(obj: object, msg?: string): void },
): SettlementRuntime {
  let rt = RUNTIMES.get(db);
  if (!rt) {
    rt = new SettlementRuntime(db, config, log);
    RUNTIMES.set(db, rt);
  }
  return rt;
}
