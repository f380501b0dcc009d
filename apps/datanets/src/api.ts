/**
 * The datanets service's HTTP contract: every route's zod schema (params, query, body, responses),
 * exactly the objects the routes are declared with. @openledger/sdk imports these as types only, so a
 * schema change here breaks the SDK's typecheck instead of its users at run time.
 */
export {
  AuthLogoutRoute,
  AuthNonceRoute,
  AuthSessionRoute,
  AuthVerifyRoute,
} from "./routes/auth.ts";
export {
  ContributeFileRoute,
  ContributeRowsRoute,
  ContributionRowsRoute,
  GetContributionRoute,
} from "./routes/contributions.ts";
export {
  ContributorContributionsRoute,
  ContributorRoute,
  DatanetContributionsRoute,
  LeaderboardRoute,
  MeRoute,
} from "./routes/contributors.ts";
export {
  CreateDatanetRoute,
  DatanetStatsRoute,
  GetDatanetRoute,
  ListDatanetsRoute,
  RegisterDatanetRoute,
  UpdateDatanetRoute,
} from "./routes/datanets.ts";
export {
  DisputeSlashingProposalRoute,
  ExecuteSlashingProposalRoute,
  GetSlashingProposalRoute,
  ListSlashingProposalsRoute,
} from "./routes/slashing.ts";
export {
  GetVersionRoute,
  ListVersionsRoute,
  PublishVersionRoute,
  RegisterVersionRoute,
} from "./routes/versions.ts";
export { ErrorBody } from "./schemas.ts";
