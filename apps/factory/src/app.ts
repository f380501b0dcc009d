import { type FactoryConfig, factoryEnv, parseConfig } from "@openledger/config";
import { type BuildOptions, buildService, defineService } from "@openledger/service-kit";
import { factoryPlugin } from "./plugins/factory.ts";
import { fineTuningRoutes } from "./routes/fine-tuning.ts";
import { fineTuningRunWorker } from "./workers/run.ts";

/**
 * The factory (ModelFactory) as a plugin: OpenAI's fine-tuning API over published datanet
 * versions, and (when RUN_WORKERS) the `factory` queue's runner, which trains each job in a child
 * process, resumes it from its last checkpoint after a crash or a shutdown, and registers the
 * resulting PEFT adapter through the gateway with its lineage.
 */
export const factoryService = defineService({
  name: "factory",
  title: "OpenLedger Factory",
  description:
    "Fine-tuning jobs (OpenAI's API shape) on published datanet versions; adapters registered with lineage.",
  plugins: [factoryPlugin],
  routes: fineTuningRoutes,
  background: {
    queues: ["factory"],
    concurrency: (config: FactoryConfig) => ({ factory: config.FACTORY_WORKER_CONCURRENCY }),
    jobs: (app) => ({ "finetuning.run": fineTuningRunWorker(app) }),
  },
});

/** Builds the app from a config (tests pass their own; the server parses the environment). */
export function buildFactory(config: FactoryConfig, options?: BuildOptions) {
  return buildService(factoryService, config, options);
}

/** Config from an explicit environment map, for tests. */
export function factoryConfig(env: Record<string, string | undefined>): FactoryConfig {
  return parseConfig("factory", factoryEnv, env);
}
