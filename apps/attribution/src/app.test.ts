import { describeServiceBasics } from "@openledger/service-kit/testing";
import { attributionConfig, buildAttribution } from "./app.ts";

describeServiceBasics("attribution", attributionConfig, buildAttribution, [
  "queue_jobs",
  "queue_job_duration_seconds",
  "attribution_index_builds_total",
  "attribution_index_build_duration_seconds",
  "attribution_scores_total",
  "attribution_score_duration_seconds",
  "attribution_signed_results_total",
  "attribution_settlement_handoffs_total",
]);
