// A fine-tuning run in its own process, so that training (onnxruntime runs a session on the calling
// thread) never blocks the factory's event loop, and a crash or a kill takes down only this run:
// the factory resumes it from its last checkpoint. Started by `TrainingProcess` (./process.ts).
import { createReadStream } from "node:fs";
import { rename, rm } from "node:fs/promises";
import { createInterface } from "node:readline";
import {
  loadModel,
  PackedDataset,
  type TrainDocument,
  Trainer,
  trainingConfigHash,
  writePeftAdapter,
} from "@openledger/model-runtime";
import { documentTokens, totalSteps, trainerOptions } from "../lib/plan.ts";
import type { FromTrainer, ToTrainer } from "./protocol.ts";

function send(message: FromTrainer): Promise<void> {
  return new Promise((resolve, reject) => {
    process.send?.(message, (err: Error | null) => (err ? reject(err) : resolve()));
  });
}

let stopRequested = false;
let started = false;

process.on("message", (message: ToTrainer) => {
  if (message.type === "stop") stopRequested = true;
  else if (message.type === "start" && !started) {
    started = true;
    run(message).then(
      () => process.exit(0),
      async (err: unknown) => {
        const e = err as { message?: string; code?: string };
        await send({
          type: "error",
          message: String(e?.message ?? err),
          ...(e?.code ? { code: e.code } : {}),
        }).catch(() => {});
        process.exit(1);
      },
    );
  }
});
// The factory went away: nothing will read our reports; the next run resumes from the checkpoint.
process.on("disconnect", () => process.exit(2));

async function readDocuments(file: string, encode: (text: string) => number[]): Promise<TrainDocument[]> {
  const docs: TrainDocument[] = [];
  const lines = createInterface({
    input: createReadStream(file, "utf8"),
    crlfDelay: Number.POSITIVE_INFINITY,
  });
  for await (const line of lines) {
    if (!line) continue;
    const row = JSON.parse(line) as { s: string; t: string };
    docs.push({ tokens: encode(row.t), source: row.s });
  }
  return docs;
}

async function run(job: Extract<ToTrainer, { type: "start" }>): Promise<void> {
  const { model, tokenizer } = await loadModel({ dir: job.modelDir });
  const docs = await readDocuments(job.dataFile, (t) => documentTokens(tokenizer, t));
  const separator = tokenizer.eosTokenIds[0] ?? 0;
  const h = job.hyperparameters;
  const data = new PackedDataset(docs, { seq: h.seq_len, separator, seed: job.seed });
  // The step count (hence the LR schedule) is known once the rows are tokenized; the same rows,
  // tokenizer and hyperparameters give the same options on a resume, so the checkpoint's
  // configuration hash matches.
  const steps = totalSteps(h, data.windows, job.stepBound);
  const options = trainerOptions(h, steps, job.seed, job.threads);
  // Label tokens per step (cumulative), and per contributor over the whole run: a pure function of
  // (rows, tokenizer, seq, batch, seed), so the fee and its split are known before the first step.
  const perRun = data.tokensBySourceOfRun(steps * options.batch);
  const planned = [...perRun.values()].reduce((a, b) => a + b, 0);
  const trainer = await Trainer.create(model, options);
  const resumed = await trainer.loadCheckpoint(job.checkpointDir);
  let trained = 0;
  for (let s = 0; s < trainer.step; s++) trained += data.batchAt(s, options.batch).tokens;
  await send({
    type: "plan",
    windows: data.windows,
    totalSteps: steps,
    plannedTokens: planned,
    tokensByContributor: Object.fromEntries(perRun),
    resumedAt: resumed ? trainer.step : 0,
    options,
    configHash: trainingConfigHash(options),
  });
  while (trainer.step < steps) {
    if (stopRequested) {
      await trainer.saveCheckpoint(job.checkpointDir);
      await send({ type: "stopped", step: trainer.step });
      return;
    }
    const started = performance.now();
    const r = await trainer.trainStep(data.batchAt(trainer.step, options.batch));
    trained += r.tokens;
    await send({
      type: "step",
      step: r.step,
      loss: r.loss,
      trainedTokens: trained,
      tokens: r.tokens,
      ms: performance.now() - started,
    });
    if (r.step % job.checkpointEvery === 0 && r.step < steps) {
      await trainer.saveCheckpoint(job.checkpointDir);
      await send({ type: "checkpoint", step: r.step });
    }
  }
  await trainer.saveCheckpoint(job.checkpointDir);
  const tmp = `${job.outDir}.tmp-${process.pid}`;
  await rm(tmp, { recursive: true, force: true });
  await writePeftAdapter(tmp, trainer.toPeft(job.baseModelName));
  await rm(job.outDir, { recursive: true, force: true });
  await rename(tmp, job.outDir);
  await trainer.dispose();
  await send({ type: "done", step: trainer.step, trainedTokens: trained, outDir: job.outDir });
}
