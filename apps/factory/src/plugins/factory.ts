import { randomUUID } from "node:crypto";
import { readFile } from "node:fs/promises";
import { hostname } from "node:os";
import { join, resolve } from "node:path";
import { REPO_ROOT } from "@openledger/chain";
import { DEFAULT_BASE_MODEL_DIR, type FactoryConfig, TINY_MODEL, TINY_MODEL_DIR } from "@openledger/config";
import { baseModelHash, ensureTinyModelDir, parseHfConfig } from "@openledger/model-runtime";
import type { FastifyInstance } from "fastify";
import fp from "fastify-plugin";
import { GatewayClient } from "../lib/gateway.ts";
import { type BaseModelInfo, FineTuningJobs } from "../lib/jobs.ts";
import { JobRunner } from "../lib/runner.ts";
import { TrainingProcess } from "../train/process.ts";

/** The base model the factory trains on: its directory, the SHA-256 of its weights, its context. */
export async function loadBaseModelInfo(config: FactoryConfig): Promise<BaseModelInfo> {
  const dir =
    config.FACTORY_MODEL_DIR === TINY_MODEL
      ? await ensureTinyModelDir(join(REPO_ROOT, TINY_MODEL_DIR))
      : resolve(REPO_ROOT, config.FACTORY_MODEL_DIR ?? DEFAULT_BASE_MODEL_DIR);
  const cfg = parseHfConfig(JSON.parse(await readFile(join(dir, "config.json"), "utf8")));
  return {
    dir,
    contentHash: await baseModelHash(dir),
    maxPositionEmbeddings: cfg.maxPositionEmbeddings,
  };
}

/** The factory's parts: jobs (API side), the runner (training side), the gateway client. */
export interface Factory {
  jobs: FineTuningJobs;
  runner: JobRunner;
  gateway: GatewayClient;
  base(): Promise<BaseModelInfo>;
}

declare module "fastify" {
  interface FastifyInstance {
    factory: Factory;
  }
}

export const factoryPlugin = fp<{ config: FactoryConfig }>(
  async (app: FastifyInstance, { config }) => {
    const gateway = new GatewayClient(config.FACTORY_GATEWAY_URL);
    let loading: Promise<BaseModelInfo> | undefined;
    const base = () => {
      loading ??= loadBaseModelInfo(config).catch((err) => {
        loading = undefined;
        throw err;
      });
      return loading;
    };
    const log = app.log.child({ component: "factory" });
    const jobs = new FineTuningJobs(config, app.db, app.producer, gateway, base, log);
    const runner = new JobRunner(
      config,
      app.db,
      jobs,
      gateway,
      base,
      resolve(REPO_ROOT, config.FACTORY_DATA_DIR),
      `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`,
      (start) => new TrainingProcess(start),
      app.background.signal,
      log,
    );
    app.decorate("factory", { jobs, runner, gateway, base });
    // Jobs whose runner went away (shutdown mid-run, a crash past BullMQ's stall limit, a queue that
    // refused the job) resume from their last checkpoint.
    app.background.every("resume abandoned fine-tuning jobs", config.FACTORY_RESUME_SWEEP_MS, () =>
      jobs.resumeAbandoned(),
    );
    // Hash the weights now, not on the first request.
    await base().catch((err) => log.warn({ err }, "base model not readable yet"));
  },
  { name: "factory" },
);
