// The SDK against the real platform: a local chain with the contracts, Postgres, Redis and the four
// services as processes (scripts/lib/launch.ts). Fresh keys (funded by the dev faucet) play every role
// through the SDK only: sign in, create and register a datanet, stake, contribute a file (streamed,
// with progress), publish, index, API keys by signature, a small model with the owner's approval,
// escrow, inference, attribution, settlement, an epoch, a claim equal to the ledger, unbond/withdraw,
// escrow withdrawal, validator registration. Errors keep the services' {code, message}.
import assert from "node:assert/strict";
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
    },
    rpcUrl: p.platform.rpcUrl,
    addresses: p.platform.addresses,
  });
  await rejects(c.datanets.list(), "UNREACHABLE");
  await rejects(c.signIn(), "KEY_REQUIRED");
  await rejects(c.gateway.adapters(), "API_KEY_REQUIRED");
  assert.equal((await c.unreachable()).length, 4);
});
