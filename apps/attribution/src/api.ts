/**
 * The attribution service's HTTP contract: the route schemas the routes are declared with.
 * @openledger/sdk imports them as types only: a schema change breaks the SDK's typecheck.
 */
export { BuildIndexRoute, GetIndexRoute } from "./routes/indexes.ts";
export { InferenceAttributionRoute, InferenceTraceRoute } from "./routes/inferences.ts";
