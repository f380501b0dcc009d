import type { Db } from "@openledger/db";
import { Counter, Gauge, type Registry } from "prom-client";

/** What the settlement service exports beyond the kit's HTTP, queue and job metrics. */
export interface SettlementMetrics {
  /** Inferences through settleBatch, by outcome (settled, already, pending, failed_inference, missing). */
  inferences: Counter<"outcome">;
}

/**
 * Ledger and epoch state read at scrape time (two small queries: the parked inferences, the latest
 * epochs), plus counters the runtime feeds.
 */
export function settlementMetrics(registry: Registry, db: Db): SettlementMetrics {
  new Gauge({
    name: "settlement_pending_inferences",
    help: "Inferences parked waiting for their attribution quorum (settlement_pending)",
    registers: [registry],
    async collect() {
      const [r] = await db
        .$queryRawUnsafe<{ n: number }[]>(`SELECT count(*)::int AS n FROM settlement_pending`)
        .catch(() => [undefined]);
      if (r) this.set(r.n);
    },
  });
  new Gauge({
    name: "settlement_epoch",
    help: "The latest epoch id in each state (open, closed, attested, posted, confirmed)",
    labelNames: ["status"],
    registers: [registry],
    async collect() {
      const rows = await db
        .$queryRawUnsafe<{ status: string; id: number }[]>(
          `SELECT status::text AS status, max(id)::int AS id FROM epochs GROUP BY status`,
        )
        .catch(() => undefined);
      if (!rows) return;
      this.reset();
      for (const r of rows) this.set({ status: r.status }, r.id);
    },
  });
  return {
    inferences: new Counter({
      name: "settlement_inferences_total",
      help: "Inferences through the settler by outcome",
      labelNames: ["outcome"],
      registers: [registry],
    }),
  };
}
