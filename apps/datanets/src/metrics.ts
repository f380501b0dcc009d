import { Counter, Histogram, type Registry } from "prom-client";

/** What the datanets service counts beyond the kit's HTTP, queue and job metrics. */
export interface DatanetsMetrics {
  /** Validation jobs by outcome (validated, skipped, failed). */
  validations: Counter<"outcome">;
  validationSeconds: Histogram<"outcome">;
  /** Rows validated, by result: accepted, or the reason they were rejected. */
  rows: Counter<"result">;
  slashingProposals: Counter;
}

export function datanetsMetrics(registry: Registry): DatanetsMetrics {
  return {
    validations: new Counter({
      name: "datanets_validations_total",
      help: "datanet.validate runs by outcome",
      labelNames: ["outcome"],
      registers: [registry],
    }),
    validationSeconds: new Histogram({
      name: "datanets_validation_duration_seconds",
      help: "Time to validate one contribution",
      labelNames: ["outcome"],
      buckets: [0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300],
      registers: [registry],
    }),
    rows: new Counter({
      name: "datanets_validated_rows_total",
      help: "Rows validated, by result (accepted or the rejection reason)",
      labelNames: ["result"],
      registers: [registry],
    }),
    slashingProposals: new Counter({
      name: "datanets_slashing_proposals_total",
      help: "Slashing proposals drawn by validation",
      registers: [registry],
    }),
  };
}
