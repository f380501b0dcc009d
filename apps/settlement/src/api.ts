/**
 * The settlement service's HTTP contract: the route schemas the routes are declared with.
 * @openledger/sdk imports them as types only: a schema change breaks the SDK's typecheck.
 */

export {
  DatanetEarningsRoute,
  EarningsRoute,
  EpochFlowsRoute,
  LedgerStatsRoute,
  ListSettlementsRoute,
  ModelUsageRoute,
} from "./routes/reads.ts";
export {
  ClaimRoute,
  CloseEpochRoute,
  GetEpochRoute,
  InferenceSettlementRoute,
  LedgerRoute,
  ListEpochsRoute,
  ReconciliationRoute,
} from "./routes/settlement.ts";
