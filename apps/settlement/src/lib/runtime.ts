import { type ChainConnector, PastValidatorQuorums, type ValidatorQuorum } from "@openledger/chain";
import type { SettlementConfig } from "@openledger/config";
import type { Db } from "@openledger/db";
import { type Background, type BackgroundTimer, GroupCommit } from "@openledger/service-kit";
import { SignatureVerifier } from "@openledger/settlement-core";
import type { FastifyInstance } from "fastify";
import fp from "fastify-plugin";
import { Registry } from "prom-client";
import { distributorQuorum, feeSplitOf, type SettlementChain, settlementChainOf } from "./chain.ts";
import { reconcile } from "./claims.ts";
import { type EpochLogger, EpochManager } from "./epochs.ts";
import { type SettlementMetrics, settlementMetrics } from "./metrics.ts";
import { type Anomaly, type SettleContext, type SettleOutcome, settleBatch } from "./settle.ts";

/**
 * What the routes, workers and background tasks of one app share (`app.settlement`): the chain
 * (through the kit's connector: lazy, so the HTTP API and health checks work while the chain is
 * down), the group-commit settler, the epoch manager and the two periodic tasks (pending sweeper,
 * epoch ticker) it registers with the kit's `background`.
 */
type QuorumSet = Pick<SettleContext, "quorum" | "validators">;

/**
 * What settlement counts a quorum against: a fraction (>= 2/3) of the active validator set, as the distributor
 * counts it for roots, and the set itself; with no active validator nothing can reach it (the no-attribution
 * deadline applies). Now (`settleContext`) and at an inference's epoch (`quorumAt`) alike.
 */
function quorumSet(q: ValidatorQuorum): QuorumSet {
  return { quorum: Math.max(1, q.need), validators: q.need === 0 ? new Set<string>() : q.active };
}

export class SettlementRuntime {
  readonly batcher: GroupCommit<string, string, SettleOutcome>;
  readonly epochs: EpochManager;
  #epochTicker: BackgroundTimer | undefined;
  #reconciledEpoch = 0;
  readonly #verified = new Map<string, boolean>();
  readonly #signatures = new SignatureVerifier();

  constructor(
    readonly db: Db,
    readonly config: SettlementConfig,
    readonly log: EpochLogger & { error(obj: object, msg?: string): void },
    private readonly connector: ChainConnector,
    readonly metrics: SettlementMetrics = settlementMetrics(new Registry(), db),
  ) {
    const getChain = () => this.chain();
    this.batcher = new GroupCommit<string, string, SettleOutcome>({
      keyOf: (id) => id,
      run: async (ids) => (await this.#settleBatch(ids)).outcomes,
      maxBatch: config.SETTLEMENT_BATCH_MAX,
      // Two batches at once: one batch's reads and CPU work overlap another's commit.
      parallel: 2,
      gatherTurn: true,
    });
    this.epochs = new EpochManager(db, config, getChain, log);
  }

  /** Settlement's view of the kit's chain connection (the connector caches the connection). */
  async chain(): Promise<SettlementChain> {
    return settlementChainOf(await this.connector.get(), this.config);
  }

  /** Past blocks' quorums: immutable once read (packages/chain `PastValidatorQuorums`). */
  readonly #pastQuorums = new PastValidatorQuorums();

  async settleContext(): Promise<SettleContext> {
    const chain = await this.chain();
    // Both read for every batch, not cached: a split or a quorum governance changes, a validator that
    // unstakes or is removed, applies from the next settlement.
    const [bps, quorum] = await Promise.all([feeSplitOf(chain), distributorQuorum(chain)]);
    return {
      bps,
      treasury: chain.treasury,
      ...quorumSet(quorum),
      deadlineMs: this.config.SETTLEMENT_ATTRIBUTION_DEADLINE_MS,
      quorumAt: async (block) =>
        quorumSet(await this.#pastQuorums.at(chain.publicClient, chain.distributor, block)),
      signatureDomain: { chainId: chain.chainId, verifyingContract: chain.distributor },
      verified: this.#verified,
      signatures: this.#signatures,
    };
  }

  /** Settles one inference through the group commit (what the queue handler calls). */
  settle(inferenceId: string): Promise<SettleOutcome> {
    return this.batcher.submit(inferenceId);
  }

  /**
   * The deadline sweeper, settlement's only fallback on the data path (attribution hands an
   * inference over when a quorum of validators agrees; nothing re-sends jobs): re-checks the
   * inferences parked waiting for their quorum (oldest check first; past the deadline they settle
   * without attribution), then settles completed inferences past their deadline that settlement
   * never heard of (a lost hand-off, or an attribution that failed for good). Returns how many it
   * settled.
   */
  async sweep(): Promise<number> {
    return (await this.#sweepParked()) + (await this.#sweepUnheard());
  }

  async #sweepParked(): Promise<number> {
    const rows = await this.db.$queryRawUnsafe<{ id: string }[]>(
      `SELECT inference_id::text AS id FROM settlement_pending ORDER BY checked_at LIMIT $1`,
      this.config.SETTLEMENT_BATCH_MAX,
    );
    if (rows.length === 0) return 0;
    return this.#settleSwept(rows.map((r) => r.id));
  }

  /**
   * Everything created before it is settled or parked, so only what came after is read (index on
   * created_at). Times are the database's; the mark trails the deadline by a minute so a row whose
   * transaction committed late is still seen.
   */
  #unheardFrom = new Date(0);

  async #sweepUnheard(): Promise<number> {
    const limit = this.config.SETTLEMENT_BATCH_MAX;
    const rows = await this.db.$queryRawUnsafe<
      { id: string | null; created_at: Date | null; cutoff: Date }[]
    >(
      `WITH c AS (SELECT now() - make_interval(secs => $2::double precision / 1000) AS cutoff)
       SELECT i.id::text AS id, i.created_at, c.cutoff FROM c
         LEFT JOIN LATERAL (
           SELECT i.id, i.created_at FROM inferences i
            WHERE i.status = 'completed' AND i.created_at >= $1 AND i.created_at < c.cutoff
              AND NOT EXISTS (SELECT 1 FROM settlements s WHERE s.inference_id = i.id)
              AND NOT EXISTS (SELECT 1 FROM settlement_pending p WHERE p.inference_id = i.id)
            ORDER BY i.created_at, i.id LIMIT $3) i ON true`,
      this.#unheardFrom,
      this.config.SETTLEMENT_ATTRIBUTION_DEADLINE_MS,
      limit,
    );
    const found = rows.filter((r): r is { id: string; created_at: Date; cutoff: Date } => r.id !== null);
    const settled = found.length > 0 ? await this.#settleSwept(found.map((r) => r.id)) : 0;
    if (found.length > 0)
      this.log.warn({ count: found.length }, "settled inferences whose hand-off never came");
    const cutoff = rows[0]?.cutoff;
    // A full page may have more rows at its last timestamp: advance only to it.
    const next =
      found.length < limit ? cutoff && new Date(cutoff.getTime() - 60_000) : found.at(-1)?.created_at;
    if (next && next > this.#unheardFrom) this.#unheardFrom = next;
    return settled;
  }

  async #settleSwept(ids: string[]): Promise<number> {
    return (await this.#settleBatch(ids)).settled;
  }

  async #settleBatch(ids: string[]) {
    const result = await settleBatch(this.db, ids, await this.settleContext());
    for (const o of result.outcomes.values()) this.metrics.inferences.inc({ outcome: o });
    this.#report(result.anomalies);
    if (result.settled > 0) this.#maybeCloseBySize();
    return result;
  }

  /** A signed quorum result (or a training's shares) that cannot be paid from pays nobody: said loudly (and kept in settlement_anomalies). */
  #report(anomalies: readonly Anomaly[]): void {
    for (const a of anomalies) {
      this.log.error(
        { inferenceId: a.inferenceId, kind: a.kind, detail: a.detail },
        "inference not paid (its signed result or training shares do not check out): held (GET /v1/anomalies)",
      );
    }
  }

  /** An epoch may have filled up: let the ticker look now (no-op unless background work runs). */
  #maybeCloseBySize(): void {
    this.#epochTicker?.kick();
  }

  /**
   * The periodic tasks (run only where RUN_WORKERS, never overlapping, awaited on close): the
   * deadline sweeper and the epoch ticker.
   */
  schedule(background: Background): void {
    background.every("settlement deadline sweep", this.config.SETTLEMENT_RECHECK_MS, () => this.sweep());
    // The ticker runs often; `tick` itself decides (interval, size) whether an epoch closes, and
    // finishes an epoch left in flight (e.g. after a restart).
    const tickMs = Math.max(250, Math.min(this.config.SETTLEMENT_EPOCH_INTERVAL_MS || 5_000, 5_000));
    this.#epochTicker = background.every("settlement epoch tick", tickMs, async () => {
      // Only drive epochs (and take the drivers' lock) while the chain answers: a frozen chain would
      // hold them for its RPC timeouts. The probe is bounded (CHAIN_REQUEST_TIMEOUT_MS, circuit breaker).
      if (
        !(await this.connector.probe().then(
          () => true,
          () => false,
        ))
      )
        return;
      const epoch = await this.epochs.tick();
      if (epoch?.status === "confirmed" && epoch.id !== this.#reconciledEpoch) {
        // Reconcile once per confirmed epoch; differences are logged (and served by /v1/reconciliation).
        this.#reconciledEpoch = epoch.id;
        const report = await reconcile(this.db, await this.chain());
        if (!report.ok)
          this.log.error({ checks: report.checks.filter((c) => !c.ok) }, "ledger and chain differ");
        else this.log.info({ epoch: epoch.id }, "reconciled ledger with chain");
      }
    });
  }
}

declare module "fastify" {
  interface FastifyInstance {
    /** Settlement's runtime: group commit, epochs, chain view, background tasks. */
    settlement: SettlementRuntime;
  }
}

/** Decorates the app with its settlement runtime and schedules its background tasks. */
export const settlementRuntime = fp<{ config: SettlementConfig }>(
  async (app: FastifyInstance, { config }) => {
    const rt = new SettlementRuntime(
      app.db,
      config,
      app.log,
      app.chain,
      settlementMetrics(app.metrics, app.db),
    );
    app.decorate("settlement", rt);
    rt.schedule(app.background);
    // After the kit's background close (workers and ticks done): an epoch started by the API.
    app.addHook("preClose", async () => {
      await rt.epochs.idle();
    });
  },
  { name: "settlement-runtime", dependencies: ["openledger-infra", "openledger-chain"] },
);
