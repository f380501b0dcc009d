export * from "./catalog.ts";
export { CompletedBatcher } from "./completions.ts";
export {
  createRedisClient,
  producerConnection,
  type QueueConnection,
  queueConnection,
  redisOptionsFromUrl,
  workerConnection,
} from "./connection.ts";
export { type FailedJobView, listFailed, queueDepth, redriveFailed } from "./inspect.ts";
export { type EnqueuedJob, type EnqueueOptions, jobId, Producer, type ProducerOptions } from "./producer.ts";
export {
  type JobContext,
  type JobHandler,
  type JobHandlers,
  type JobOutcome,
  type WorkerLogger,
  WorkerSet,
  type WorkerSetOptions,
  WorkerSetupError,
} from "./worker.ts";
