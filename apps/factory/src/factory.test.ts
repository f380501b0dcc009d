// The factory against real Postgres, Redis, a local Hardhat chain and a real gateway: the official
// `openai` client creates, lists and follows a fine-tuning job on a published datanet version; the
// adapter is registered through the gateway (and on chain with its lineage), answers chat
// completions at once, and its training is billed from the builder's escrow hold; bad input is
// refused with nothing written; a cancelled job releases its hold and registers nothing.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { createChainPublicClient, modelRegistryAbi } from "@openledger/chain";
import { TINY_MODEL_ENV } from "@openledger/config";
import type { App } from "@openledger/service-kit";
import { waitFor } from "@openledger/service-kit/testing";
import OpenAI from "openai";
import { buildFactory, factoryConfig } from "./app.ts";
import { ALICE, BOB, createKey, deposit, type Platform, startPlatform } from "./testing.ts";

let p: Platform;
let factory: App;
let factoryUrl: string;
let builderKey: string;
let builder: string;
let poorKey: string;

before(async () => {
  p = await startPlatform("factory");
  factory = await buildFactory(
    factoryConfig({
      ...TINY_MODEL_ENV,
      ...p.env.env,
      ...p.chainEnv,
      FACTORY_GATEWAY_URL: p.gatewayUrl,
      FACTORY_DATA_DIR: join(p.dir, "factory"),
      FACTORY_CHECKPOINT_EVERY_STEPS: "3",
      FACTORY_TRAIN_THREADS: "1",
      FACTORY_RESUME_SWEEP_MS: "2000",
    }),
  );
  await factory.listen({ port: 0, host: "127.0.0.1" });
  const addr = factory.server.address();
  factoryUrl = `http://127.0.0.1:${typeof addr === "object" && addr ? addr.port : 0}`;
  const [, b, poor] = p.chain.accounts.users;
  builder = b!.address.toLowerCase();
  await deposit(p.chain, b!);
  builderKey = await createKey(p, b!.address);
  poorKey = await createKey(p, poor!.address);
});

after(async () => {
  await factory?.close();
  await p?.close();
});

const openai = (apiKey: string, baseURL = `${factoryUrl}/v1`) =>
  new OpenAI({ apiKey, baseURL, maxRetries: 0 });

const small = (extra: Record<string, unknown> = {}) => ({
  n_epochs: 2,
  batch_size: 2,
  seq_len: 32,
  lora_rank: 4,
  max_steps: 6,
  ...extra,
});

async function counts() {
  return {
    jobs: await p.db.fineTuningJob.count(),
    grants: await p.db.trainingGrant.count(),
    holds: await p.db.gatewayReservation.count(),
    models: await p.db.model.count(),
  };
}

test("the openai client creates, lists and follows a job; its model answers chat completions at once", async () => {
  const client = openai(builderKey);
  const created = await client.fineTuning.jobs.create({
    model: "openledger-tiny",
    training_file: p.versions.published,
    suffix: "moby",
    seed: 42,
    hyperparameters: small() as never,
  });
  assert.equal(created.object, "fine_tuning.job");
  assert.match(created.id, /^ftjob-[0-9a-f]{24}$/);
  assert.equal(created.status, "queued");
  assert.equal(created.training_file, p.versions.published);
  assert.equal(created.seed, 42);
  // The escrow hold is taken at once, and counted by the gateway's balance check.
  const grant = await p.db.trainingGrant.findUniqueOrThrow({ where: { jobRef: created.id } });
  const hold = await p.db.gatewayReservation.findUniqueOrThrow({ where: { id: grant.reservationId } });
  assert.equal(hold.maxCostWei.toFixed(0), grant.maxFeeWei.toFixed(0));
  assert.ok(BigInt(grant.maxFeeWei.toFixed(0)) > 0n);

  const listed = [];
  for await (const j of client.fineTuning.jobs.list({ limit: 1 })) listed.push(j.id);
  assert.ok(listed.includes(created.id));

  // Follow it: progress in the job object and in its events, until it succeeds.
  let sawProgress = false;
  const done = await waitFor(
    "the job to finish",
    async () => {
      const j = await client.fineTuning.jobs.retrieve(created.id);
      const progress = (j as unknown as { progress: { step: number; total_steps: number | null } }).progress;
      if (j.status === "running" && progress.step > 0) sawProgress = true;
      if (j.status === "failed" || j.status === "cancelled") assert.fail(JSON.stringify(j.error));
      return j.status === "succeeded" ? j : undefined;
    },
    120_000,
  );
  const events = [];
  for await (const e of client.fineTuning.jobs.listEvents(created.id, { limit: 5 })) events.push(e);
  const metrics = events.filter((e) => e.type === "metrics");
  assert.equal(metrics.length, 6, "one metrics event per step of a short job");
  for (const m of metrics) {
    const d = m.data as { step: number; train_loss: number };
    assert.ok(d.step >= 1 && Number.isFinite(d.train_loss));
  }
  assert.ok(events.some((e) => e.message.startsWith("New fine-tuned model created")));
  assert.ok(events.some((e) => e.message.startsWith("Training plan")));
  assert.ok(sawProgress || metrics.length > 0);
  const view = done as unknown as {
    progress: { step: number; total_steps: number; tokens_per_second: number };
    fee: { fee_wei: string; escrow_hold_wei: string };
    training_config_hash: string;
    adapter_content_hash: string;
  };
  assert.equal(view.progress.step, 6);
  assert.equal(view.progress.total_steps, 6);
  assert.ok(view.progress.tokens_per_second > 0);
  assert.ok(done.fine_tuned_model?.startsWith("ft-openledger-tiny-moby-"));
  assert.ok(done.trained_tokens! > 0);

  // The model answers through the gateway (the same official client) at once.
  const chat = await openai(builderKey, `${p.gatewayUrl}/v1`).chat.completions.create({
    model: done.fine_tuned_model!,
    messages: [{ role: "user", content: "Call me" }],
    max_tokens: 8,
    temperature: 0,
  });
  assert.equal(chat.choices.length, 1);
  assert.ok(chat.usage!.completion_tokens > 0);

  // Registered on chain with its lineage: base model, datanet version, training-config hash.
  const model = await p.db.model.findUniqueOrThrow({
    where: { id: done.fine_tuned_model! },
    include: { trainingVersions: true },
  });
  assert.equal(model.ownerAddress, builder);
  assert.equal(model.contentHash, view.adapter_content_hash);
  assert.deepEqual(
    model.trainingVersions.map((t) => t.datanetVersionId),
    [p.versions.published],
  );
  const chainModelId = await waitFor(
    "the on-chain registration",
    async () => {
      const m = await p.db.model.findUnique({ where: { id: model.id } });
      return m?.chainModelId ? BigInt(m.chainModelId.toFixed(0)) : undefined;
    },
    120_000,
  );
  const pub = createChainPublicClient({ rpcUrl: p.chain.rpcUrl, chainId: p.chain.chainId });
  const onChain = await pub.readContract({
    address: p.chain.addresses!.contracts.ModelRegistry,
    abi: modelRegistryAbi,
    functionName: "getModel",
    args: [chainModelId],
  });
  assert.equal(onChain.owner.toLowerCase(), builder);
  assert.equal(onChain.contentHash, `0x${model.contentHash}`);
  assert.equal(onChain.baseModel, `0x${p.gateway.host.contentHash}`);
  assert.match(onChain.metadataURI, new RegExp(`job=${created.id}`));
  assert.match(onChain.metadataURI, new RegExp(`training_config=${view.training_config_hash}`));
  const trainedOn = await pub.readContract({
    address: p.chain.addresses!.contracts.ModelRegistry,
    abi: modelRegistryAbi,
    functionName: "getTrainingData",
    args: [chainModelId],
  });
  assert.equal(trainedOn.length, 1);

  // The training is billed: one metered usage row at the job's price, its fee moved from the hold
  // into the builder's billed total, split basis (tokens per contributor) recorded for settlement.
  const used = await p.db.trainingGrant.findUniqueOrThrow({
    where: { id: grant.id },
    include: { shares: true },
  });
  assert.ok(used.usedAt && used.inferenceId);
  const usage = await p.db.inference.findUniqueOrThrow({ where: { id: used.inferenceId } });
  assert.equal(usage.accountAddress, builder);
  assert.equal(usage.inputTokens, done.trained_tokens);
  assert.equal(
    used.shares.reduce((t, s) => t + s.tokens, 0n),
    BigInt(done.trained_tokens!),
  );
  assert.deepEqual(used.shares.map((s) => s.contributorAddress).sort(), [ALICE, BOB].sort());
  assert.equal(await p.db.gatewayReservation.count({ where: { id: grant.reservationId } }), 0);
  const fee = BigInt(view.fee.fee_wei);
  assert.ok(fee > 0n && fee <= BigInt(view.fee.escrow_hold_wei));
  const billing = p.gateway.billing;
  assert.equal(await billing.owed(builder), fee + (await chatFees()));
  assert.deepEqual(await billing.reconcile(), []);
});

/** Fees of the builder's chat inferences (everything it owes but the training). */
async function chatFees(): Promise<bigint> {
  const rows = await p.db.$queryRaw<{ fee: string }[]>`
    SELECT COALESCE(SUM(CEIL(input_tokens * price_in_per_1k_wei / 1000) + CEIL(output_tokens * price_out_per_1k_wei / 1000)), 0)::text AS fee
      FROM inferences i WHERE account_address = ${builder}
       AND NOT EXISTS (SELECT 1 FROM training_grants g WHERE g.inference_id = i.id)`;
  return BigInt(rows[0]!.fee);
}

test("bad input is refused with a code, and nothing is written (no job, no grant, no hold)", async () => {
  const before = await counts();
  const good = { model: "openledger-tiny", training_file: p.versions.published, hyperparameters: small() };
  const cases: [string | null, unknown, number, string][] = [
    [null, good, 401, "missing_api_key"],
    ["sk-nope", good, 401, "invalid_api_key"],
    [poorKey, good, 402, "payment_required"],
    [builderKey, { ...good, model: "gpt-4o-mini" }, 404, "model_not_found"],
    [builderKey, { ...good, training_file: "file-abc123" }, 400, "invalid_value"],
    [
      builderKey,
      { ...good, training_file: "00000000-0000-4000-8000-000000000000" },
      404,
      "datanet_version_not_found",
    ],
    [builderKey, { ...good, training_file: p.versions.unpublished }, 409, "datanet_version_not_published"],
    [
      builderKey,
      { ...good, training_file: `${p.versions.published},${p.versions.unpublished}` },
      409,
      "datanet_version_not_published",
    ],
    [builderKey, { ...good, hyperparameters: { n_epochs: 0 } }, 400, "invalid_value"],
    [builderKey, { ...good, hyperparameters: { batch_size: "big" } }, 400, "invalid_value"],
    [builderKey, { ...good, hyperparameters: { learning_rate: 0.1 } }, 400, "invalid_value"],
    [builderKey, { ...good, hyperparameters: { lora_rank: 32 } }, 400, "invalid_value"],
    [builderKey, { ...good, hyperparameters: { seq_len: 100_000 } }, 400, "invalid_value"],
    [builderKey, { ...good, hyperparameters: { max_steps: 10_000_000 } }, 400, "invalid_value"],
    [builderKey, { ...good, hyperparameters: { n_epochs: 100, seq_len: 8, batch_size: 1 } }, 200, ""],
    [builderKey, { ...good, suffix: "no spaces please" }, 400, "invalid_value"],
    [builderKey, { ...good, validation_file: "file-1" }, 400, "invalid_value"],
    [builderKey, { ...good, surprise: true }, 400, "invalid_value"],
  ];
  for (const [key, body, status, code] of cases) {
    if (status === 200) continue; // (a big job is fine; shown only to keep the bound case next to the others)
    const res = await fetch(`${factoryUrl}/v1/fine_tuning/jobs`, {
      method: "POST",
      headers: { "content-type": "application/json", ...(key ? { authorization: `Bearer ${key}` } : {}) },
      body: JSON.stringify(body),
    });
    const json = (await res.json()) as { error: { code: string; message: string } };
    assert.equal(res.status, status, `${JSON.stringify(body)}: ${JSON.stringify(json)}`);
    assert.equal(json.error.code, code, JSON.stringify(json));
    assert.ok(json.error.message.length > 0);
  }
  assert.deepEqual(await counts(), before);
  // Other accounts' jobs are not found; unknown ids neither.
  const job = await p.db.fineTuningJob.findFirst();
  const res = await fetch(`${factoryUrl}/v1/fine_tuning/jobs/${job?.id ?? "ftjob-0"}`, {
    headers: { authorization: `Bearer ${poorKey}` },
  });
  assert.equal(res.status, 404);
});

test("a cancelled job stops training, releases its escrow hold and registers nothing", async () => {
  const client = openai(builderKey);
  const models = await p.db.model.count();
  const job = await client.fineTuning.jobs.create({
    model: "openledger-tiny",
    training_file: `${p.versions.published},${p.versions.second}`,
    hyperparameters: small({ max_steps: 5000, n_epochs: 100, seq_len: 16, batch_size: 1 }) as never,
  });
  await waitFor(
    "the job to train",
    async () => {
      const j = await p.db.fineTuningJob.findUniqueOrThrow({ where: { id: job.id } });
      return j.status === "running" && j.step > 0;
    },
    120_000,
  );
  const cancelled = await client.fineTuning.jobs.cancel(job.id);
  assert.equal(cancelled.status, "cancelled");
  const grant = await p.db.trainingGrant.findUniqueOrThrow({ where: { jobRef: job.id } });
  await waitFor(
    "the hold to be released",
    async () => {
      const g = await p.db.trainingGrant.findUniqueOrThrow({ where: { id: grant.id } });
      const hold = await p.db.gatewayReservation.findUnique({ where: { id: grant.reservationId } });
      return g.releasedAt !== null && hold === null;
    },
    120_000,
  );
  // Training stopped: the step no longer moves, and the runner let go of the job.
  const stopped = await waitFor(
    "the runner to let go",
    async () => {
      const j = await p.db.fineTuningJob.findUniqueOrThrow({ where: { id: job.id } });
      return j.runnerId === null ? j : undefined;
    },
    120_000,
  );
  await new Promise((r) => setTimeout(r, 1500));
  const later = await p.db.fineTuningJob.findUniqueOrThrow({ where: { id: job.id } });
  assert.equal(later.step, stopped.step);
  assert.equal(later.status, "cancelled");
  assert.equal(await p.db.model.count(), models);
  // Cancelling again is a no-op; a finished job cannot be cancelled.
  assert.equal((await client.fineTuning.jobs.cancel(job.id)).status, "cancelled");
  const succeeded = await p.db.fineTuningJob.findFirstOrThrow({ where: { status: "succeeded" } });
  await assert.rejects(
    client.fineTuning.jobs.cancel(succeeded.id),
    (err: InstanceType<typeof OpenAI.APIError>) => {
      assert.equal(err.status, 409);
      assert.equal(err.code, "job_not_cancellable");
      return true;
    },
  );
});

async function createJob(key: string, body: unknown) {
  const res = await fetch(`${factoryUrl}/v1/fine_tuning/jobs`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
    body: JSON.stringify(body),
  });
  return {
    status: res.status,
    json: (await res.json()) as {
      id: string;
      error: { code: string; message: string; param: string; details?: { job?: string; model?: string } };
    },
  };
}

test("an identical job is refused up front (409) while one is queued, running or succeeded; cancelled ones do not block", async () => {
  const client = openai(builderKey);
  const body = {
    model: "openledger-tiny",
    training_file: p.versions.published,
    seed: 7001,
    hyperparameters: small({ max_steps: 2 }),
  };
  const first = await createJob(builderKey, body);
  assert.equal(first.status, 200, JSON.stringify(first.json));
  // Refused before any hold is taken: no job, no grant, no escrow hold. Its owner is told which job.
  const before = await counts();
  const again = await createJob(builderKey, body);
  assert.equal(again.status, 409, JSON.stringify(again.json));
  assert.equal(again.json.error.code, "duplicate_job");
  assert.match(again.json.error.message, new RegExp(first.json.id));
  assert.equal(again.json.error.param, "seed");
  assert.equal(again.json.error.details?.job, first.json.id, "the existing job's id, for a program");
  // The official client reads it too (its APIError keeps the whole error object).
  await assert.rejects(
    client.fineTuning.jobs.create({ ...body, hyperparameters: body.hyperparameters as never }),
    (e: unknown) => {
      assert.ok(e instanceof OpenAI.ConflictError, String(e));
      assert.equal(e.code, "duplicate_job");
      assert.equal((e.error as { details?: { job?: string } }).details?.job, first.json.id);
      return true;
    },
  );
  // The same training is refused for another account too, without disclosing the job's id (and
  // before its missing escrow matters).
  const other = await createJob(poorKey, body);
  assert.equal(other.status, 409, JSON.stringify(other.json));
  assert.doesNotMatch(other.json.error.message, new RegExp(first.json.id));
  assert.equal(other.json.error.details?.job, undefined);
  const afterRefusals = await counts();
  assert.equal(afterRefusals.jobs, before.jobs);
  assert.equal(afterRefusals.grants, before.grants);
  // The same rows with another hyperparameter: another training.
  const moreSteps = await createJob(builderKey, { ...body, hyperparameters: small({ max_steps: 3 }) });
  assert.equal(moreSteps.status, 200, JSON.stringify(moreSteps.json));
  await client.fineTuning.jobs.cancel(moreSteps.json.id);

  // Succeeded: still refused (it was the case that trained fully, then got 409 at registration).
  const done = await waitFor(
    "the job to finish",
    async () => {
      const j = await p.db.fineTuningJob.findUniqueOrThrow({ where: { id: first.json.id } });
      if (j.status === "failed" || j.status === "cancelled") assert.fail(JSON.stringify(j.error));
      return j.status === "succeeded" ? j : undefined;
    },
    120_000,
  );
  const afterSuccess = await createJob(builderKey, body);
  assert.equal(afterSuccess.status, 409, JSON.stringify(afterSuccess.json));
  assert.match(afterSuccess.json.error.message, new RegExp(done.fineTunedModel!));

  // A cancelled job does not block its repeat.
  const cancelledBody = { ...body, seed: 7002 };
  const cancelled = await createJob(builderKey, cancelledBody);
  assert.equal(cancelled.status, 200);
  await client.fineTuning.jobs.cancel(cancelled.json.id);
  const repeat = await createJob(builderKey, cancelledBody);
  assert.equal(repeat.status, 200, JSON.stringify(repeat.json));
  await client.fineTuning.jobs.cancel(repeat.json.id);
});

test("two concurrent identical creates make one job; the other is refused and holds nothing", async () => {
  const body = {
    model: "openledger-tiny",
    training_file: p.versions.published,
    seed: 7003,
    hyperparameters: small({ max_steps: 2 }),
  };
  const before = await counts();
  const results = await Promise.all([createJob(builderKey, body), createJob(builderKey, body)]);
  assert.deepEqual(
    results.map((r) => r.status).sort(),
    [200, 409],
    JSON.stringify(results.map((r) => r.json)),
  );
  const winner = results.find((r) => r.status === 200)!;
  const loser = results.find((r) => r.status === 409)!;
  assert.equal(loser.json.error.code, "duplicate_job");
  assert.match(loser.json.error.message, new RegExp(winner.json.id));
  const after = await counts();
  assert.equal(after.jobs, before.jobs + 1);
  // The loser's grant, if it got as far as one, was released (its escrow hold gone) before it answered.
  const grants = await p.db.trainingGrant.findMany({
    orderBy: { createdAt: "desc" },
    take: after.grants - before.grants,
  });
  for (const g of grants.filter((g) => g.jobRef !== winner.json.id)) {
    assert.ok(g.releasedAt, `grant ${g.id} of the refused create is released`);
    assert.equal(await p.db.gatewayReservation.count({ where: { id: g.reservationId } }), 0);
  }
  await openai(builderKey).fineTuning.jobs.cancel(winner.json.id);
});
