/**
 * The factory's HTTP contract: the route schemas the routes are declared with (OpenAI's fine-tuning
 * API shape plus the platform's fields). @openledger/sdk imports these as types only: a schema change
 * breaks the SDK's typecheck.
 */
export {
  CancelJobRoute,
  CreateJobRoute,
  GetJobRoute,
  JobEventsRoute,
  ListJobsRoute,
} from "./routes/fine-tuning.ts";
