import { type DatanetsConfig, datanetsEnv, parseConfig } from "@openledger/config";
import { type BuildOptions, buildService, type ServiceDefinition } from "@openledger/service-kit";
import { authRoutes } from "./routes/auth.ts";
import { datanetRoutes } from "./routes/datanets.ts";

/**
 * The datanets service as a plugin: HTTP routes and (when RUN_WORKERS) queue workers.
 * Datanets, contributions, validation, versions and slashing proposals.
 */
export const datanetsService: ServiceDefinition<DatanetsConfig> = {
  name: "datanets",
  title: "OpenLedger Datanets",
  description:
    "Datanets, contributions, validation, versions and slashing proposals. Sign in with Ethereum " +
    "(POST /v1/auth/nonce, then /v1/auth/verify) and send `Authorization: Bearer <token>` on writes; reads are public.",
  routes: async (app, opts) => {
    await app.register(authRoutes, opts);
    await app.register(datanetRoutes, opts);
  },
  queues: [],
};

/** Builds the app from a config (tests pass their own; the server parses the environment). */
export function buildDatanets(config: DatanetsConfig, options?: BuildOptions) {
  return buildService(datanetsService, config, options);
}

/** Config from an explicit environment map, for tests. */
export function datanetsConfig(env: Record<string, string | undefined>): DatanetsConfig {
  return parseConfig("datanets", datanetsEnv, env);
}
