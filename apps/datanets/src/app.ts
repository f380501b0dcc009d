import { type DatanetsConfig, datanetsEnv, parseConfig } from "@openledger/config";
import { type BuildOptions, buildService, type ServiceDefinition } from "@openledger/service-kit";
import { contextOf } from "./context.ts";
import { authRoutes } from "./routes/auth.ts";
import { contributionRoutes } from "./routes/contributions.ts";
import { contributorRoutes } from "./routes/contributors.ts";
import { datanetRoutes } from "./routes/datanets.ts";
import { slashingRoutes } from "./routes/slashing.ts";
import { versionRoutes } from "./routes/versions.ts";
import { sweepOnce } from "./workers/sweeper.ts";
import { validateContribution } from "./workers/validate.ts";

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
    await app.register(contributionRoutes, opts);
    await app.register(versionRoutes, opts);
    await app.register(slashingRoutes, opts);
    await app.register(contributorRoutes, opts);
  },
  queues: ["datanets"],
  registerWorkers: (workers, app, config) => {
    const ctx = contextOf(app, config);
    workers.handle("datanet.validate", async (payload, job) => {
      try {
        return await validateContribution(ctx, payload, job);
      } catch (err) {
        // Last attempt: say so on the contribution (the job stays in the failed set, re-drivable;
        // a re-driven job validates it from scratch).
        if (job.attempt >= job.maxAttempts) {
          await ctx.db.contribution
            .updateMany({
              where: { id: payload.contributionId, status: { not: "validated" } },
              data: { status: "failed" },
            })
            .catch(() => {});
        }
        throw err;
      }
    });
    if (config.DATANETS_SWEEP_INTERVAL_MS > 0) {
      // Finishes what a lost enqueue, a crash or a chain outage left half-way (see workers/sweeper.ts).
      let timer: NodeJS.Timeout | undefined;
      let busy = false;
      let running: Promise<unknown> = Promise.resolve();
      app.addHook("onReady", async () => {
        timer = setInterval(() => {
          if (busy) return; // a slow sweep (chain down) never overlaps the next one
          busy = true;
          running = sweepOnce(ctx, app.producer, app.log)
            .catch((err) => app.log.warn({ err: (err as Error).message }, "sweep failed"))
            .finally(() => {
              busy = false;
            });
        }, config.DATANETS_SWEEP_INTERVAL_MS);
        timer.unref();
      });
      app.addHook("preClose", async () => {
        clearInterval(timer);
        await running;
      });
    }
  },
  // JSON row submissions; files are streamed (multipart) and limited by DATANETS_MAX_FILE_BYTES.
  bodyLimit: 16 * 1024 * 1024,
};

/** Builds the app from a config (tests pass their own; the server parses the environment). */
export function buildDatanets(config: DatanetsConfig, options?: BuildOptions) {
  return buildService(datanetsService, config, options);
}

/** Config from an explicit environment map, for tests. */
export function datanetsConfig(env: Record<string, string | undefined>): DatanetsConfig {
  return parseConfig("datanets", datanetsEnv, env);
}
