// The SDK against the real platform: a local chain with the contracts, Postgres, Redis and the four
// services as processes (scripts/lib/launch.ts). Fresh keys (funded by the dev faucet) play every role
// through the SDK only: sign in, create and register a datanet, stake, contribute a file (streamed,
// with progress), publish, index, API keys by signature, a small model with the owner's approval,
// escrow, inference, attribution, settlement, an epoch, a claim equal to the ledger, unbond/withdraw,
// escrow withdrawal, validator registration, a validator fetching an adapter's files. Errors keep the services'
// {code, message}.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { HARDHAT_DEV_ACCOUNTS } from "@openledger/chain/dev";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { ALICE_ROWS, BOB_ROWS, SMALL_MODEL_PROMPTS } from "../../../scripts/lib/corpus.ts";
import { type LaunchedPlatform, launchPlatform } from "../../../scripts/lib/launch.ts";
import { OPEN, OpenLedger, OpenLedgerError, type Progress, subjectOf, ZERO_SUBJECT } from "./index.ts";

let p: LaunchedPlatform;
let dir: string;
const deployer = privateKeyToAccount(HARDHAT_DEV_ACCOUNTS[0]!.privateKey);

function client(account = privateKeyToAccount(generatePrivateKey())): OpenLedger {
  return new OpenLedger({
    endpoints: {
      datanets: p.platform.datanetsUrl,
      attribution: p.platform.attributionUrl,
      gateway: p.platform.gatewayUrl,
      settlement: p.platform.settlementUrl,
      factory: p.platform.factoryUrl,
    },
    rpcUrl: p.platform.rpcUrl,
    addresses: p.platform.addresses,
    account,
    ...(p.platform.settlementAdminToken ? { settlementAdminToken: p.platform.settlementAdminToken } : {}),
  });
}

/** A fresh key with gas and OPEN from the dev faucet. */
async function funded(open = 10_000n * OPEN): Promise<OpenLedger> {
  const c = client();
  await c.chain.faucet(deployer, c.address, { openWei: open });
  return c;
}

async function rejects(p: Promise<unknown>, code: string, status?: number): Promise<OpenLedgerError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof OpenLedgerError, `expected OpenLedgerError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (status !== undefined) assert.equal(err.status, status);
    assert.ok(err.message.length > 0);
    return err;
  }
  assert.fail(`expected ${code}`);
}

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "openledger-sdk-"));
  p = await launchPlatform();
});
after(async () => {
  await p?.stop();
  await rm(dir, { recursive: true, force: true });
});

test("every role's steps through the SDK, and claims equal the ledger", async () => {
  // One after the other: the faucet's funder sends each transfer with its next nonce.
  const owner = await funded();
  const contributor = await funded();
  const builder = await funded();
  const consumer = await funded();
  assert.deepEqual(await owner.unreachable(), []);

  // Sign in (SIWE) and create a datanet; it gets its DatanetRegistry id.
  const session = await owner.signIn();
  assert.equal(session.address, owner.address.toLowerCase());
  assert.equal((await owner.datanets.session()).address, owner.address.toLowerCase());
  const created = await owner.datanets.create({
    slug: "sdk-reviews",
    name: "SDK reviews",
    type: "classification",
    license: "CC-BY-4.0",
    minStakeWei: (50n * OPEN).toString(),
  });
  const datanet = await owner.datanets.waitRegistered(created.id, { retry: true });
  assert.match(datanet.chainDatanetId, /^\d+$/);
  await rejects(
    owner.datanets.create({ slug: "sdk-reviews", name: "again", type: "text", license: "MIT" }),
    "SLUG_TAKEN",
    409,
  );

  // Contributing without the stake: the service's own 403 code, nothing stored.
  await contributor.signIn();
  await rejects(
    contributor.datanets.contributeRows(datanet.id, [{ text: "x".repeat(40) }]),
    "INSUFFICIENT_STAKE",
    403,
  );

  // Stake, then a file streamed from disk with upload and validation progress.
  await contributor.chain.stakeOnDatanet(datanet.chainDatanetId, 150n * OPEN);
  const subject = subjectOf(BigInt(datanet.chainDatanetId));
  assert.equal(
    (await contributor.chain.position(contributor.address, "Contributor", subject)).active,
    150n * OPEN,
  );
  const file = path.join(dir, "reviews.jsonl");
  const rows = [...ALICE_ROWS, ...BOB_ROWS];
  await writeFile(file, rows.map((r) => JSON.stringify(r)).join("\n"));
  const uploads: Progress[] = [];
  const submission = await contributor.datanets.contributeFile(datanet.id, file, {
    onProgress: (x) => uploads.push(x),
  });
  assert.equal(submission.contribution.source, "file");
  assert.equal(submission.contribution.fileName, "reviews.jsonl");
  assert.equal(uploads.at(-1)?.done, uploads.at(-1)?.total, "upload progress ends at the file size");
  assert.ok(
    uploads.every((u, i) => i === 0 || u.done >= uploads[i - 1]!.done),
    "progress never goes back",
  );
  const validations: Progress[] = [];
  const validated = await contributor.datanets.waitValidated(submission.contribution.id, {
    onProgress: (x) => validations.push(x),
  });
  assert.equal(validated.contribution.acceptedCount, rows.length);
  assert.deepEqual(validations.at(-1), {
    stage: "validate",
    done: rows.length,
    total: rows.length,
    unit: "rows",
  });
  assert.equal((await contributor.datanets.allRows(submission.contribution.id)).length, rows.length);
  await rejects(
    contributor.datanets.contributeFile(datanet.id, path.join(dir, "missing.csv")),
    "FILE_NOT_FOUND",
  );
  await rejects(
    contributor.datanets.contributeFile(datanet.id, {
      name: "bad.jsonl",
      data: '{"text": "fine enough text here"}\n{oops',
    }),
    "MALFORMED_JSONL",
    400,
  );

  // Publish; the attribution service indexes it (span index + influence model: the rows are labelled).
  await rejects(contributor.datanets.publish(datanet.id), "NOT_DATANET_OWNER", 403);
  const published = await owner.datanets.publish(datanet.id);
  await owner.datanets.waitVersionRegistered(datanet.id, published.version);
  const indexing: Progress[] = [];
  const index = await owner.attribution.waitIndexed(published.id, {
    kinds: ["span", "influence"],
    onProgress: (x) => indexing.push(x),
  });
  assert.equal(index.rowCount, rows.length);
  assert.equal(indexing.at(-1)?.done, 100);

  // The builder: an API key by its own signature, a small model with the owner's EIP-712 approval.
  const key = await builder.createApiKey("sdk-test");
  assert.equal(key.account, builder.address.toLowerCase());
  await rejects(
    builder.gateway.registerSmallModel({
      id: "sdk-sentiment",
      datanet_version_id: published.id,
      price_in_per_1k_wei: "3000000000000000017",
      price_out_per_1k_wei: "7000000000000000013",
    }),
    "BUILDER_NOT_APPROVED",
    403,
  );
  const approval = await owner.chain.signBuilderApproval(datanet.chainDatanetId, builder.address);
  const small = await builder.gateway.registerSmallModelWhenReady({
    id: "sdk-sentiment",
    datanet_version_id: published.id,
    price_in_per_1k_wei: "3000000000000000017",
    price_out_per_1k_wei: "7000000000000000013",
    datanet_owner_approval: approval,
  });
  assert.equal(small.owner, builder.address.toLowerCase());
  assert.equal(small.chain.status, "confirmed");
  assert.deepEqual(
    (await builder.gateway.smallModels()).data.map((m) => m.id),
    ["sdk-sentiment"],
  );

  // The consumer: escrow deposit, a key, two paid inferences.
  await consumer.chain.depositEscrow(20n * OPEN);
  assert.equal((await consumer.chain.escrow(consumer.address)).balance, 20n * OPEN);
  await consumer.createApiKey();
  const answers = [];
  for (const text of SMALL_MODEL_PROMPTS.slice(0, 2)) {
    const a = await consumer.gateway.chat({
      model: "sdk-sentiment",
      messages: [{ role: "user", content: text }],
    });
    assert.ok(small.classes.includes(a.data.choices[0]?.message.content ?? ""));
    answers.push(a.inferenceId);
  }
  await rejects(
    consumer.gateway.chat({ model: "no-such-model", messages: [{ role: "user", content: "hi" }] }),
    "model_not_found",
    404,
  );

  // Validators attribute, settlement splits, an epoch is posted; the contributor claims its earnings.
  for (const id of answers) {
    const att = await consumer.attribution.waitAttributed(id, { quorum: p.platform.addresses.params.quorum });
    assert.ok(att.agree);
    await consumer.settlement.waitSettled(id);
  }
  const epoch = await consumer.settlement.waitEpochConfirmed(answers);
  assert.equal(epoch.status, "confirmed");
  const earned = await contributor.settlement.earnings(contributor.address);
  assert.ok(earned.totalWei > 0n, "the contributor's rows drove the answers: it earned");
  const claimInfo = await contributor.settlement.claim(contributor.address);
  assert.equal(BigInt(claimInfo.cumulativeAmount), earned.totalWei, "the tree holds the ledger's earnings");
  const claimed = await contributor.chain.claim(claimInfo);
  assert.equal(claimed.amountWei, earned.totalWei, "the claim pays exactly the ledger earnings");
  const again = await contributor.chain.claim(await contributor.settlement.claim(contributor.address));
  assert.equal(again.amountWei, 0n, "nothing is paid twice");
  const builderEarned = await builder.settlement.earnings(builder.address);
  assert.equal(
    (await builder.chain.claim(await builder.settlement.claim(builder.address))).amountWei,
    builderEarned.totalWei,
  );

  // Unbond and withdraw a stake after the unbonding period; escrow withdrawal after its delay.
  await rejects(contributor.chain.withdrawStake("Contributor", subject), "CHAIN_REVERTED");
  await contributor.chain.unbond("Contributor", subject, 30n * OPEN);
  await p.chain.increaseTime(p.platform.addresses.params.unbondingPeriod + 1);
  const before = await contributor.chain.openBalance(contributor.address);
  await contributor.chain.withdrawStake("Contributor", subject);
  assert.equal((await contributor.chain.openBalance(contributor.address)) - before, 30n * OPEN);
  const escrow = await consumer.chain.escrow(consumer.address);
  await consumer.chain.requestEscrowWithdrawal(escrow.balance);
  const locked = await rejects(consumer.chain.withdrawEscrow(), "CHAIN_REVERTED");
  assert.equal((locked.details as { errorName: string }).errorName, "WithdrawalLocked");
  await p.chain.increaseTime(p.platform.addresses.params.withdrawalDelay + 1);
  await consumer.chain.withdrawEscrow();
  assert.equal((await consumer.chain.escrow(consumer.address)).balance, 0n);

  // A new validator: staked by itself, admitted by the dev admin (governance in production). Last:
  // a registered validator with no worker would only slow later quorums.
  const validator = await funded(200_000n * OPEN);
  const registered = await validator.chain.registerValidator();
  assert.ok(registered.staked);
  assert.equal(registered.status.registered, false);
  assert.equal(registered.status.stake.active, registered.status.minStakeWei);
  await validator.chain.addValidatorAsDevAdmin(deployer, validator.address);
  const status = await validator.chain.validatorStatus(validator.address);
  assert.ok(status.registered && status.active);
  assert.ok(status.activeValidators.map((a) => a.toLowerCase()).includes(validator.address.toLowerCase()));
  assert.equal(
    (await validator.chain.position(validator.address, "Validator", ZERO_SUBJECT)).active,
    status.minStakeWei,
  );
});

test("unreachable services and missing keys are errors with codes", async () => {
  const c = new OpenLedger({
    endpoints: {
      datanets: "http://127.0.0.1:9",
      attribution: "http://127.0.0.1:9",
      gateway: "http://127.0.0.1:9",
      settlement: "http://127.0.0.1:9",
      factory: "http://127.0.0.1:9",
    },
    rpcUrl: p.platform.rpcUrl,
    addresses: p.platform.addresses,
  });
  await rejects(c.datanets.list(), "UNREACHABLE");
  await rejects(c.signIn(), "KEY_REQUIRED");
  await rejects(c.gateway.adapters(), "API_KEY_REQUIRED");
  await rejects(c.factory.list(), "API_KEY_REQUIRED");
  assert.equal((await c.unreachable()).length, 5);
});

test("a builder fine-tunes an adapter through the SDK (ModelFactory), follows it, and its fee is settled", async () => {
  const owner = await funded();
  const builder = await funded();
  const poor = await funded(10n * OPEN);

  // A published version to train on.
  await owner.signIn();
  const datanet = await owner.datanets.waitRegistered(
    (await owner.datanets.create({ slug: "sdk-ft", name: "SDK fine-tune", type: "text", license: "MIT" })).id,
    { retry: true },
  );
  await owner.chain.stakeOnDatanet(datanet.chainDatanetId, 100n * OPEN);
  const sub = await owner.datanets.contributeRows(
    datanet.id,
    [...ALICE_ROWS, ...BOB_ROWS].map((r) => ({ text: r.text })),
  );
  await owner.datanets.waitValidated(sub.contribution.id);
  const version = await owner.datanets.publish(datanet.id);
  await owner.datanets.waitVersionRegistered(datanet.id, version.version);

  await builder.createApiKey("sdk-ft");
  await builder.chain.depositEscrow(50n * OPEN);
  const base = (await builder.gateway.status()).baseModel.id;
  const hyperparameters = { n_epochs: 1, batch_size: 2, seq_len: 32, lora_rank: 4, max_steps: 4 };

  // The factory's own refusals keep their code and status (OpenAI's error shape), nothing created.
  await rejects(
    builder.factory.create({ model: base, training_file: "00000000-0000-4000-8000-000000000000" }),
    "datanet_version_not_found",
    404,
  );
  await rejects(
    builder.factory.create({ model: "no-such-base", training_file: version.id }),
    "model_not_found",
    404,
  );
  await poor.createApiKey("poor");
  await rejects(
    poor.factory.create({ model: base, training_file: version.id, hyperparameters }),
    "payment_required",
    402,
  );
  assert.equal((await builder.factory.list()).data.length, 0);

  // Create and follow: the steps only go forward and end at the planned total; events arrive oldest first.
  const created = await builder.factory.create({
    model: base,
    training_file: version.id,
    suffix: "sdk",
    seed: 7,
    hyperparameters,
  });
  assert.equal(created.object, "fine_tuning.job");
  assert.equal(created.organization_id, builder.address.toLowerCase());
  assert.ok(BigInt(created.fee.escrow_hold_wei) > 0n, "the fee's upper bound is held");
  const progress: Progress[] = [];
  const events: string[] = [];
  const job = await builder.factory.follow(created.id, {
    intervalMs: 250,
    onProgress: (x) => progress.push(x),
    onEvent: (e) => events.push(e.id),
  });
  assert.equal(job.status, "succeeded");
  assert.equal(job.progress.step, job.progress.total_steps);
  assert.ok(job.progress.total_steps! > 0 && job.progress.total_steps! <= 4);
  assert.deepEqual(progress.at(-1), {
    stage: "fine-tune:succeeded",
    done: job.progress.total_steps,
    total: job.progress.total_steps,
    unit: "steps",
  });
  assert.ok(
    progress.every((x, i) => i === 0 || x.done >= progress[i - 1]!.done),
    "steps never go back",
  );
  const all = await builder.factory.events(job.id, { limit: 100 });
  assert.deepEqual(events, all.data.map((e) => e.id).reverse(), "every event, once, oldest first");
  assert.deepEqual(
    (await builder.factory.list()).data.map((j) => j.id),
    [job.id],
  );

  // The adapter is served at once, and the training fee is settled (builder pays, contributors earn).
  const answer = await builder.gateway.chat({
    model: job.fine_tuned_model!,
    messages: [{ role: "user", content: "hello" }],
    max_tokens: 4,
  });
  assert.match(answer.inferenceId, /.+/);
  // Its weights go to the active validators (LoRA influence), by content hash; anyone else is refused.
  const { contentHash } = await builder.gateway.adapter(job.fine_tuned_model!);
  const validatorKey = privateKeyToAccount(p.chain.accounts.validators[1]!.privateKey as `0x${string}`);
  const files = await Promise.all(
    (["adapter_config.json", "adapter_model.safetensors"] as const).map((file) =>
      builder.gateway.adapterFile({ contentHash, file }, validatorKey),
    ),
  );
  const sha = (b: Uint8Array) => createHash("sha256").update(b).digest();
  assert.equal(
    createHash("sha256").update(sha(files[0]!.bytes)).update(sha(files[1]!.bytes)).digest("hex"),
    contentHash,
    "the two files hash to the adapter's content hash",
  );
  await rejects(
    builder.gateway.adapterFile({ contentHash, file: "adapter_config.json" }, builder.chain.requireAccount()),
    "NOT_A_VALIDATOR",
    403,
  );
  const fee = await builder.waitTrainingSettled(job);
  assert.equal(fee.feeWei, job.fee.fee_wei);
  assert.ok(BigInt(fee.feeWei) > 0n && BigInt(fee.feeWei) <= BigInt(job.fee.escrow_hold_wei));

  // Another account sees nothing of it; a cancelled job ends its follower with FINE_TUNE_CANCELLED.
  await rejects(poor.factory.get(job.id), "not_found", 404);
  const second = await builder.factory.create({ model: base, training_file: version.id, hyperparameters });
  assert.equal((await builder.factory.cancel(second.id)).status, "cancelled");
  // A burst of events between two polls, more than a page (100), reaches the follower whole, oldest first.
  await p.database.db.$executeRaw`
    INSERT INTO fine_tuning_events (job_id, level, type, message)
    SELECT ${second.id}, 'info', 'message', 'burst ' || n FROM generate_series(1, 250) n`;
  const burst: string[] = [];
  await rejects(
    builder.factory.follow(second.id, { intervalMs: 250, onEvent: (e) => burst.push(e.id) }),
    "FINE_TUNE_CANCELLED",
  );
  const stored = await p.database.db.fineTuningEvent.findMany({
    where: { jobId: second.id },
    orderBy: { id: "asc" },
    select: { id: true },
  });
  assert.ok(stored.length > 250);
  assert.deepEqual(
    burst,
    stored.map((e) => `ftevent-${e.id}`),
    "every event of the burst, once, oldest first",
  );
  await rejects(builder.factory.cancel(job.id), "job_not_cancellable", 409);
});
