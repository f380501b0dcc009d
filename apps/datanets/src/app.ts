import { type DatanetsConfig, datanetsEnv, parseConfig } from "@openledger/config";
import { type BuildOptions, buildService, defineService } from "@openledger/service-kit";
import type { FastifyInstance } from "fastify";
import fp from "fastify-plugin";
import { datanetsContext } from "./context.ts";
import { authRoutes } from "./routes/auth.ts";
import { contributionRoutes } from "./routes/contributions.ts";
import { contributorRoutes } from "./routes/contributors.ts";
import { datanetRoutes } from "./routes/datanets.ts";
import { slashingRoutes } from "./routes/slashing.ts";
import { versionRoutes } from "./routes/versions.ts";
import { assertDisputeWindowFits } from "./stake.ts";
import { sweepOnce } from "./workers/sweeper.ts";
import { validateJob } from "./workers/validate.ts";

/** The sweeper as a background task: finishes what a lost enqueue, a crash or a chain outage left. */
const sweeper = fp<{ config: DatanetsConfig }>(
  async (app: FastifyInstance, { config }) => {
    app.background.every("datanets sweep", config.DATANETS_SWEEP_INTERVAL_MS, () =>
      sweepOnce(app.datanets, app.log),
    );
  },
  { name: "datanets-sweeper", dependencies: ["datanets-context"] },
);

/**
 * Start-up check: the dispute window must be shorter than Staking's unbonding period, or an accused
 * contributor unbonding when the proposal is made could withdraw before it executes. The chain is
 * read once here (a service that cannot reach it still starts; `executeProposal` checks before
 * every slash it sends).
 */
const disputeWindowCheck = fp<{ config: DatanetsConfig }>(
  async (app: FastifyInstance, { config }) => {
    app.addHook("onReady", async () => {
      const chain = await Promise.race([
        app.chain.get().catch(() => undefined),
        new Promise<undefined>((r) => setTimeout(() => r(undefined), 5_000).unref()),
      ]);
      if (!chain) {
        app.log.warn("chain unreachable at start: the dispute window is checked before each slash instead");
        return;
      }
      await assertDisputeWindowFits(chain, config.DATANETS_DISPUTE_WINDOW_SECONDS);
    });
  },
  { name: "datanets-dispute-window-check", dependencies: ["openledger-chain"] },
);

/**
 * The datanets service as a plugin: HTTP routes and (when RUN_WORKERS) queue workers.
 * Datanets, contributions, validation, versions and slashing proposals.
 */
export const datanetsService = defineService({
  name: "datanets",
  title: "OpenLedger Datanets",
  description:
    "Datanets, contributions, validation, versions and slashing proposals. Sign in with Ethereum " +
    "(POST /v1/auth/nonce, then /v1/auth/verify) and send `Authorization: Bearer <token>` on writes; reads are public.",
  plugins: [datanetsContext, disputeWindowCheck, sweeper],
  chain: { operator: "DATANETS_OPERATOR_PRIVATE_KEY" },
  routes: async (app, opts: { config: DatanetsConfig }) => {
    await app.register(authRoutes, opts);
    await app.register(datanetRoutes, opts);
    await app.register(contributionRoutes, opts);
    await app.register(versionRoutes, opts);
    await app.register(slashingRoutes, opts);
    await app.register(contributorRoutes, opts);
  },
  background: {
    queues: ["datanets"],
    jobs: (app) => ({
      "datanet.validate": (payload, job) => validateJob(app.datanets, payload, job),
    }),
  },
  // JSON row submissions; files are streamed (multipart) and limited by DATANETS_MAX_FILE_BYTES.
  bodyLimit: 16 * 1024 * 1024,
});

/** Builds the app from a config (tests pass their own; the server parses the environment). */
export function buildDatanets(config: DatanetsConfig, options?: BuildOptions) {
  return buildService(datanetsService, config, options);
}

/** Config from an explicit environment map, for tests. */
export function datanetsConfig(env: Record<string, string | undefined>): DatanetsConfig {
  return parseConfig("datanets", datanetsEnv, env);
}
