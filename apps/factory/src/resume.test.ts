// A fine-tuning job survives its factory: stopped gracefully (SIGTERM: it checkpoints and is resumed by
// the sweep) and killed outright (SIGKILL: resumed from its last checkpoint once its lease and queue
// lock lapse), the job still finishes, and its adapter is bit-identical to an uninterrupted run's.
// The factory runs as a real process here, restarted after each stop; the gateway and the chain
// are real too.
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { REPO_ROOT } from "@openledger/chain";
import { loadModel, PackedDataset, type TrainDocument, Trainer } from "@openledger/model-runtime";
import { freePort, waitFor } from "@openledger/service-kit/testing";
import { factoryConfig } from "./app.ts";
import { documentTokens, resolveHyperparameters, totalSteps, trainerOptions } from "./lib/plan.ts";
import { loadBaseModelInfo } from "./plugins/factory.ts";
import { createKey, deposit, type Platform, ROWS, startPlatform } from "./testing.ts";

let p: Platform;
let port: number;
let env: Record<string, string>;
let server: ChildProcess | undefined;
let key: string;

function startFactory(): Promise<void> {
  const child = spawn(process.execPath, ["--import", "tsx", join(REPO_ROOT, "apps/factory/src/server.ts")], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...env },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr?.on("data", (c: Buffer) => {
    stderr = (stderr + c.toString()).slice(-4000);
  });
  server = child;
  return waitFor(
    "the factory to listen",
    async () => {
      if (child.exitCode !== null) assert.fail(`the factory exited: ${stderr}`);
      try {
        return (await fetch(`http://127.0.0.1:${port}/readyz`)).ok;
      } catch {
        return false;
      }
    },
    120_000,
  ).then(() => {});
}

function stopFactory(signal: NodeJS.Signals): Promise<void> {
  const child = server!;
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once("exit", () => resolve());
    child.kill(signal);
  });
}

before(async () => {
  p = await startPlatform("factory-resume");
  port = await freePort();
  env = {
    ...p.env.env,
    ...p.chainEnv,
    FACTORY_PORT: String(port),
    FACTORY_GATEWAY_URL: p.gatewayUrl,
    FACTORY_DATA_DIR: join(p.dir, "factory"),
    FACTORY_CHECKPOINT_EVERY_STEPS: "50",
    FACTORY_TRAIN_THREADS: "1",
    FACTORY_RESUME_SWEEP_MS: "1000",
  };
  const user = p.chain.accounts.users[1]!;
  await deposit(p.chain, user);
  key = await createKey(p, user.address);
  await startFactory();
});

after(async () => {
  if (server) await stopFactory("SIGKILL");
  await p?.close();
});

const HYPER = { n_epochs: 100, batch_size: 1, seq_len: 16, lora_rank: 4, max_steps: 1200 };
const SEED = 7;

/** The adapter an uninterrupted run of the same job produces, trained here in-process. */
async function referenceAdapterHash(): Promise<string> {
  const base = await loadBaseModelInfo(factoryConfig(env));
  const { model, tokenizer } = await loadModel({ dir: base.dir });
  const docs: TrainDocument[] = ROWS.map((r) => ({
    tokens: documentTokens(tokenizer, r.text),
    source: r.who,
  }));
  const h = resolveHyperparameters(HYPER, { maxRank: 16, maxSeq: 2048, maxSteps: 20_000 });
  const data = new PackedDataset(docs, { seq: h.seq_len, separator: tokenizer.eosTokenIds[0]!, seed: SEED });
  const steps = totalSteps(h, data.windows);
  const trainer = await Trainer.create(model, trainerOptions(h, steps, SEED, 1));
  for (let s = 0; s < steps; s++) await trainer.trainStep(data.batchAt(s, h.batch_size));
  const files = trainer.toPeft("openledger-tiny");
  await trainer.dispose();
  const sha = (b: Uint8Array) => createHash("sha256").update(b).digest();
  const config = new TextEncoder().encode(JSON.stringify(files.adapterConfig, null, 2));
  return createHash("sha256").update(sha(config)).update(sha(files.safetensors)).digest("hex");
}

async function job(id: string) {
  return p.db.fineTuningJob.findUniqueOrThrow({ where: { id } });
}

test("stopped and killed mid-run, a job resumes from its checkpoints and ends bit-identical", async () => {
  const res = await fetch(`http://127.0.0.1:${port}/v1/fine_tuning/jobs`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
    body: JSON.stringify({
      model: "openledger-tiny",
      training_file: p.versions.published,
      seed: SEED,
      suffix: "resume",
      hyperparameters: HYPER,
    }),
  });
  assert.equal(res.status, 200, await res.clone().text());
  const { id } = (await res.json()) as { id: string };

  // 1. A graceful stop mid-run: the run checkpoints where it is; the next factory resumes it.
  await waitFor("a few steps", async () => (await job(id)).step >= 7, 120_000);
  await stopFactory("SIGTERM");
  const paused = await job(id);
  assert.equal(paused.status, "running");
  assert.equal(paused.runnerId, null, "the stopping runner let go of its lease");
  await startFactory();
  const resumedAt = await waitFor(
    "the resumed run",
    async () => {
      const events = await p.db.fineTuningEvent.findMany({ where: { jobId: id }, orderBy: { id: "asc" } });
      const e = events.find((x) => x.message.startsWith("Resumed from the checkpoint"));
      return e ? Number(/step (\d+)/.exec(e.message)![1]) : undefined;
    },
    120_000,
  );
  assert.equal(resumedAt, paused.step, "resumed exactly where it paused");

  // 2. A crash: the factory (and with it the training process) is killed; the job resumes from its
  //    last periodic checkpoint once its lease and queue lock lapse.
  await waitFor("more steps", async () => (await job(id)).step >= resumedAt + 120, 120_000);
  await stopFactory("SIGKILL");
  // The newest checkpoint the job had reported when it died: the resume must not start before it.
  // (It may start after it: the orphaned trainer notices the lost parent only between steps and can
  // save one more checkpoint the dead factory never recorded; the job row's step also lags.)
  const reported = await p.db.fineTuningEvent.findMany({ where: { jobId: id }, orderBy: { id: "asc" } });
  const lastCheckpoint = Math.max(
    0,
    ...reported
      .filter((e) => e.message.startsWith("Checkpoint saved at step"))
      .map((e) => Number(/step (\d+)/.exec(e.message)![1])),
  );
  await startFactory();
  const finished = await waitFor(
    "the job to finish after the crash",
    async () => {
      const j = await job(id);
      if (j.status === "failed" || j.status === "cancelled") assert.fail(JSON.stringify(j.error));
      return j.status === "succeeded" ? j : undefined;
    },
    240_000,
  );
  const events = await p.db.fineTuningEvent.findMany({ where: { jobId: id }, orderBy: { id: "asc" } });
  const resumes = events.filter((e) => e.message.startsWith("Resumed from the checkpoint"));
  assert.equal(resumes.length, 2);
  const second = Number(/step (\d+)/.exec(resumes[1]!.message)![1]);
  assert.ok(second % 50 === 0, `resumed at a checkpoint (${second})`);
  assert.ok(
    second >= lastCheckpoint,
    `resumed at ${second}, not before the last reported checkpoint ${lastCheckpoint}`,
  );
  assert.ok(second > resumedAt, `the crash resume (${second}) is past the first resume (${resumedAt})`);
  assert.equal(finished.step, finished.totalSteps);

  // The adapter is the one an uninterrupted run gives, bit for bit.
  assert.equal(finished.adapterContentHash, await referenceAdapterHash());
  // Registered once, billed once.
  const grant = await p.db.trainingGrant.findUniqueOrThrow({ where: { jobRef: id } });
  assert.equal(grant.modelId, finished.fineTunedModel);
  assert.equal(await p.db.inference.count({ where: { id: grant.inferenceId! } }), 1);
});
