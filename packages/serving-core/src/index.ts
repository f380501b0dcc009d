export {
  AdapterCache,
  type AdapterCacheListener,
  type AdapterCacheOptions,
  type AdapterTier,
  type CacheMetrics,
  type SlotLookup,
  type SlotWriter,
} from "./adapter-cache.ts";
export { type Clock, ManualClock, monotonicClock } from "./clock.ts";
export {
  BASE_SLOT,
  DeviceSlotTable,
  type SlotInfo,
  type SlotReservation,
  type SlotStatus,
} from "./device-slots.ts";
export {
  Engine,
  type EngineMetrics,
  type EngineOptions,
  type EngineTotals,
  type RequestHandle,
  type StepExecutor,
  type StepStats,
  type SubmitOptions,
} from "./engine.ts";
export { isServingError, SERVING_ERROR_HTTP_STATUS, ServingError, type ServingErrorCode } from "./errors.ts";
export {
  type AdapterLoader,
  AdapterRamCache,
  type LoadedAdapter,
  type LoadPriority,
  type RamCacheListener,
  type RamCacheOptions,
  type RamCacheStats,
} from "./ram-cache.ts";
export {
  AccountRateLimiter,
  type AccountRateLimits,
  type BucketLimit,
  TokenBucket,
} from "./rate-limit.ts";
export {
  type CommitResult,
  type CompletionResult,
  type FinishReason,
  type InferenceRequest,
  type RequestTimings,
  Scheduler,
  type SchedulerEvent,
  type SchedulerOptions,
  type SchedulerStats,
  type StepBatch,
  type StepPlan,
  type StepRow,
} from "./scheduler.ts";
