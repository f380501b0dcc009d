export { ApiKeys, hashApiKey } from "./api-keys.ts";
export { authenticateCaller, bearerMatches, type Caller } from "./auth.ts";
export { Background, type BackgroundJobs, type BackgroundTimer } from "./background.ts";
export { type ChainRoles, chainPlugin, createServiceChain, ServiceChain } from "./chain.ts";
export { type ErrorReply, registerErrorHandler, toErrorReply } from "./error-handler.ts";
export { assertSafeExposure, isLoopbackHost } from "./exposure.ts";
export { GroupCommit, type GroupCommitOptions } from "./group-commit.ts";
export {
  type DependencyCheck,
  type Readiness,
  registerHealthRoutes,
  standardChecks,
  type WhenDown,
} from "./health.ts";
export { infraPlugin } from "./infra.ts";
export { registerMetrics } from "./metrics.ts";
export { type OpenAIErrorObject, toOpenAIError } from "./openai-errors.ts";
export { RenewingCache, type RenewingCacheOptions } from "./renewing-cache.ts";
export { Address, ErrorBody, Uuid, Wei } from "./schemas.ts";
export { runService } from "./server.ts";
export {
  type App,
  type BuildOptions,
  buildService,
  defineService,
  type ServiceDefinition,
} from "./service.ts";
export { findUnstorableText, safeText, storableJson, textPath, unstorableText } from "./text.ts";
export { CreateGrantBody, type GrantRequest, grantRequestBody, grantRequestOf } from "./training-grants.ts";
