/**
 * The gateway's HTTP contract: the route schemas the routes are declared with (the OpenAI routes'
 * request bodies; their answers are OpenAI's shapes). @openledger/sdk imports these as types only: a
 * schema change breaks the SDK's typecheck.
 */
export { AdapterFileParams, GetAdapterFileRoute } from "./routes/adapter-files.ts";
export {
  GetAdapterRoute,
  ListAdaptersRoute,
  RetireAdapterRoute,
  UploadAdapterRoute,
} from "./routes/adapters.ts";
export { CatalogModelRoute, CatalogRoute } from "./routes/catalog.ts";
export { CreateApiKeyRoute } from "./routes/keys.ts";
export { ChatBody, CompletionBody } from "./routes/openai.ts";
export {
  GetSmallModelRoute,
  ListSmallModelsRoute,
  RegisterSmallModelRoute,
  RetireSmallModelRoute,
} from "./routes/small-models.ts";
