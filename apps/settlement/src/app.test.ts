import { describeServiceBasics } from "@openledger/service-kit/testing";
import { buildSettlement, settlementConfig } from "./app.ts";

describeServiceBasics("settlement", settlementConfig, buildSettlement, [
  "queue_jobs",
  "queue_job_duration_seconds",
  "background_task_duration_seconds",
  "settlement_inferences_total",
  "settlement_pending_inferences",
  "settlement_epoch",
]);
