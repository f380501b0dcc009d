import { Counter, Histogram, type Registry } from "prom-client";

/** What the attribution service counts beyond the kit's HTTP, queue and job metrics. */
export interface AttributionMetrics {
  /** attribution.index runs by outcome (built, failed). */
  indexBuilds: Counter<"outcome">;
  indexBuildSeconds: Histogram<"outcome">;
  /** attribution.score runs by method (span, influence, none) and outcome. */
  scores: Counter<"method" | "outcome">;
  scoreSeconds: Histogram<"method" | "outcome">;
  /** Signed results stored, by validator. */
  signedResults: Counter<"validator">;
  /** Hand-offs to settlement (quorum reached, or nothing to attribute). */
  settlementHandOffs: Counter<"reason">;
  /** Adapter files fetched from the gateway (ATTRIBUTION_ADAPTER_SOURCE = its URL), by outcome: fetched,
   *  absent (404), refused (not the registered content hash, or too large: nothing kept), failed. */
  adapterFetches: Counter<"outcome">;
  /** Dispute filings the chain refused, by outcome: retry (backed off), given_up (never retried: an operator's case). */
  disputeRefusals: Counter<"outcome">;
}

export function attributionMetrics(registry: Registry): AttributionMetrics {
  return {
    indexBuilds: new Counter({
      name: "attribution_index_builds_total",
      help: "attribution.index runs by outcome",
      labelNames: ["outcome"],
      registers: [registry],
    }),
    indexBuildSeconds: new Histogram({
      name: "attribution_index_build_duration_seconds",
      help: "Time to build (or confirm) a version's span index and influence model",
      labelNames: ["outcome"],
      buckets: [0.05, 0.25, 1, 5, 15, 60, 300, 1800],
      registers: [registry],
    }),
    scores: new Counter({
      name: "attribution_scores_total",
      help: "attribution.score runs by method and outcome",
      labelNames: ["method", "outcome"],
      registers: [registry],
    }),
    scoreSeconds: new Histogram({
      name: "attribution_score_duration_seconds",
      help: "Time to attribute one inference and sign the results",
      labelNames: ["method", "outcome"],
      buckets: [0.005, 0.025, 0.1, 0.25, 1, 2.5, 10, 60],
      registers: [registry],
    }),
    signedResults: new Counter({
      name: "attribution_signed_results_total",
      help: "Canonical results signed and stored, by validator",
      labelNames: ["validator"],
      registers: [registry],
    }),
    settlementHandOffs: new Counter({
      name: "attribution_settlement_handoffs_total",
      help: "inference.completed enqueued for settlement, by reason",
      labelNames: ["reason"],
      registers: [registry],
    }),
    adapterFetches: new Counter({
      name: "attribution_adapter_fetches_total",
      help: "Adapter files fetched from the gateway for LoRA influence, by outcome",
      labelNames: ["outcome"],
      registers: [registry],
    }),
    disputeRefusals: new Counter({
      name: "attribution_dispute_refusals_total",
      help: "Dispute filings the chain refused, by outcome (retry: backed off; given_up: never retried)",
      labelNames: ["outcome"],
      registers: [registry],
    }),
  };
}
