import { describeServiceBasics } from "@openledger/service-kit/testing";
import { buildDatanets, datanetsConfig } from "./app.ts";

describeServiceBasics("datanets", datanetsConfig, buildDatanets, [
  "queue_jobs",
  "queue_job_duration_seconds",
  "background_task_duration_seconds",
  "datanets_validations_total",
  "datanets_validation_duration_seconds",
  "datanets_validated_rows_total",
  "datanets_slashing_proposals_total",
]);
