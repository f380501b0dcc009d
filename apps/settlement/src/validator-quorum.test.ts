// Attacks on the attribution quorum, against a real chain, Postgres and Redis. Each fails on the code
// before issue #14: there the quorum was a fixed 2 (SETTLEMENT_ATTRIBUTION_QUORUM) and any registered
// validator's signature counted, and one process could hold every validator key.
// - The quorum is the distributor's fraction of the ACTIVE validator set: after governance raises it to
//   3/3, two agreeing validators of three do not get an inference paid; the third signature does.
// - A validator outside the active set (removed by governance) does not count towards it.
// - One process cannot sign as several validators on a production deployment (the connector refuses).
// - Settlement cannot post an epoch root alone (it held the validators' keys before): roots wait for the
//   validator processes' own attestations, one validator is no quorum, and a root that does not match a
//   validator's recount from the chain and the ledger is signed by none of them.
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { attestClosedEpochs } from "@openledger/attribution";
import {
  attributionCommitment,
  attributionCommitmentSalt,
  ChainConnector,
  createChainWalletClient,
  inferenceEscrowAbi,
  inferenceIdToBytes32,
  openTokenAbi,
  rewardDistributorAbi,
  signAttributionCommitment,
} from "@openledger/chain";
import {
  commitValidatorResult,
  type LocalChain,
  revealValidatorResult,
  startLocalChain,
} from "@openledger/chain/testing";
import { Prisma } from "@openledger/db";
import type { App } from "@openledger/service-kit";
import { testEnvironment } from "@openledger/service-kit/testing";
import { type Abi, type Address, keccak256, toBytes } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { buildSettlement, settlementConfig } from "./app.ts";

const MODEL = "adapter-quorum-test";
let chain: LocalChain;
let env: Awaited<ReturnType<typeof testEnvironment>>;
let app: App;
let dir: string;
let addressesFile: string;
const lower = (a: string) => a.toLowerCase();

async function inference(): Promise<{ id: string; canonical: string; resultHash: `0x${string}` }> {
  const inf = await app.db.inference.create({
    data: {
      modelId: MODEL,
      accountAddress: lower(chain.accounts.users[0]!.address),
      prompt: "p",
      output: "o",
      inputTokens: 100,
      outputTokens: 50,
    },
  });
  const canonical = JSON.stringify({
    inferenceId: inf.id,
    weights: [{ contributorId: lower(chain.accounts.users[1]!.address), ppm: 1_000_000 }],
  });
  return { id: inf.id, canonical, resultHash: keccak256(toBytes(canonical)) };
}

type Inf = Awaited<ReturnType<typeof inference>>;

/** Validator `i`'s (Hardhat #5 + i) rows for `inf`, as its attribution process writes them. */
function input(inf: Inf, i: number) {
  const v = chain.accounts.validators[i]!;
  return {
    privateKey: v.privateKey,
    chainId: chain.chainId,
    verifyingContract: chain.addresses!.contracts.RewardDistributor,
    inferenceId: inf.id,
    canonicalJson: inf.canonical,
    weights: (JSON.parse(inf.canonical).weights as { contributorId: string; ppm: number }[]).map((w) => ({
      contributorAddress: w.contributorId,
      weightPpm: w.ppm,
    })),
  };
}

/** Commit-reveal, step by step: the signed commitment, then the reveal. */
const commit = (inf: Inf, ...validators: number[]) =>
  validators.reduce(
    (p, i) => p.then(() => commitValidatorResult(app.db, input(inf, i)).then(() => {})),
    Promise.resolve(),
  );
const reveal = (inf: Inf, ...validators: number[]) =>
  validators.reduce(
    (p, i) => p.then(() => revealValidatorResult(app.db, input(inf, i)).then(() => {})),
    Promise.resolve(),
  );

const distributor = () => ({
  address: chain.addresses!.contracts.RewardDistributor,
  abi: rewardDistributorAbi as Abi,
});

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "settlement-quorum-test-"));
  addressesFile = path.join(dir, "addresses.json");
  chain = await startLocalChain({ writeAddresses: addressesFile });
  env = await testEnvironment("settlement-quorum");
  app = await buildSettlement(
    settlementConfig({
      ...env.env,
      CHAIN_RPC_URL: chain.rpcUrl,
      CHAIN_ADDRESSES_FILE: addressesFile,
      SETTLEMENT_EPOCH_INTERVAL_MS: "0",
      RUN_WORKERS: "false",
      SETTLEMENT_ATTESTATION_WAIT_MS: "200",
    }),
  );
  await app.db.model.create({
    data: {
      id: MODEL,
      kind: "adapter",
      ownerAddress: lower(chain.accounts.users[3]!.address),
      contentHash: "ab".repeat(32),
      priceInPer1kWei: new Prisma.Decimal("1000000000000000000"),
      priceOutPer1kWei: new Prisma.Decimal("1000000000000000000"),
    },
  });
});

after(async () => {
  await app?.close();
  await chain?.stop();
  await env?.cleanup();
  if (dir) await rm(dir, { recursive: true, force: true });
});

test("the quorum is the distributor's fraction of the active set: 2 of 3 pay at 2/3, not at 3/3", async () => {
  const atTwoThirds = await inference();
  await commit(atTwoThirds, 0, 1);
  await reveal(atTwoThirds, 0);
  assert.equal(await app.settlement.settle(atTwoThirds.id), "pending", "one validator is no quorum");
  await reveal(atTwoThirds, 1);
  assert.equal(await app.settlement.settle(atTwoThirds.id), "settled", "2 of 3 active meet 2/3");

  await chain.asAdmin([{ ...distributor(), functionName: "setQuorum", args: [1, 1, 1] }]);
  const atAll = await inference();
  await commit(atAll, 0, 1, 2);
  await reveal(atAll, 0, 1);
  // Before #14 the fixed quorum of 2 paid this.
  assert.equal(await app.settlement.settle(atAll.id), "pending", "2 of 3 do not meet 3/3");
  assert.equal(await app.db.settlement.count({ where: { inferenceId: atAll.id } }), 0);
  await reveal(atAll, 2);
  assert.equal(await app.settlement.settle(atAll.id), "settled");
  const [row] = await app.db.$queryRawUnsafe<{ validators: string[] }[]>(
    `SELECT ARRAY(SELECT jsonb_array_elements_text(split_bps->'attestingValidators')) AS validators
       FROM settlements WHERE inference_id = $1::uuid`,
    atAll.id,
  );
  assert.equal(row!.validators.length, 3);
  await chain.asAdmin([{ ...distributor(), functionName: "setQuorum", args: [2, 3, 1] }]);

  // A validator that signed something else is recorded beside the quorum's result, and earns nothing.
  const disputed = await inference();
  const wrong = { ...disputed, ...(await otherResult(disputed.id)) };
  await commit(disputed, 0, 1);
  await commit(wrong, 2);
  await reveal(disputed, 0, 1);
  await reveal(wrong, 2);
  assert.equal(await app.settlement.settle(disputed.id), "settled");
  const [split] = await app.db.$queryRawUnsafe<
    {
      split: {
        attestingValidators: string[];
        dissentingValidators: { validator: string; resultHash: string }[];
      };
    }[]
  >(`SELECT split_bps AS split FROM settlements WHERE inference_id = $1::uuid`, disputed.id);
  const dissenter = lower(chain.accounts.validators[2]!.address);
  assert.equal(split!.split.attestingValidators.length, 2);
  assert.deepEqual(split!.split.dissentingValidators, [
    { validator: dissenter, resultHash: (await otherResult(disputed.id)).resultHash },
  ]);
  const credited = await app.db.$queryRawUnsafe<{ account: string }[]>(
    `SELECT e.account FROM ledger_entries e JOIN ledger_transactions t ON t.id = e.transaction_id
      WHERE t.external_key = $1 AND e.account LIKE 'validator:%'`,
    `fee:${disputed.id}`,
  );
  assert.deepEqual(
    credited.map((c) => c.account).sort(),
    [0, 1].map((i) => `validator:${lower(chain.accounts.validators[i]!.address)}`).sort(),
    "only the agreeing validators share the validators' part",
  );
});

/** Another canonical result for the same inference (contributor users[2] instead of users[1]). */
async function otherResult(id: string) {
  const canonical = JSON.stringify({
    inferenceId: id,
    weights: [{ contributorId: lower(chain.accounts.users[2]!.address), ppm: 1_000_000 }],
  });
  return { canonical, resultHash: keccak256(toBytes(canonical)) };
}

test("attack: a validator that copies another's revealed result (reads the database, signs the same bytes) is not counted", async () => {
  // Before commit-reveal the copy was a vote: #5 computes and stores its result, #6 reads the row and
  // signs the same hash, 2 of 3 meet 2/3, and #6 is paid for work it never did.
  const copied = await inference();
  await commit(copied, 0, 2); // the honest #5 and #7 commit (nothing is readable yet)
  await reveal(copied, 0); // #5 reveals first
  const seen = await app.db.attributionResult.findFirstOrThrow({ where: { inferenceId: copied.id } });
  // #6 copies: it commits to the bytes it read (with its own salt) and reveals them — after #5's reveal.
  const copy = { ...copied, canonical: seen.canonicalJson, resultHash: seen.resultHash as `0x${string}` };
  await commit(copy, 1);
  await reveal(copy, 1);
  assert.equal(
    await app.settlement.settle(copied.id),
    "pending",
    "a copy committed after the first reveal is no vote",
  );
  const view = await app.db.attributionCommitment.findMany({
    where: { inferenceId: copied.id },
    orderBy: { seq: "asc" },
  });
  assert.deepEqual(
    view.map((c) => c.validatorAddress),
    [0, 2, 1].map((i) => lower(chain.accounts.validators[i]!.address)),
  );
  // The honest #7 (committed in time) reveals: the quorum is #5 and #7; the copier earns nothing and is no
  // dissenter either (its reveal does not count at all).
  await reveal(copied, 2);
  assert.equal(await app.settlement.settle(copied.id), "settled");
  const [row] = await app.db.$queryRawUnsafe<
    { split: { attestingValidators: string[]; dissentingValidators: unknown[] } }[]
  >(`SELECT split_bps AS split FROM settlements WHERE inference_id = $1::uuid`, copied.id);
  assert.deepEqual(
    [...row!.split.attestingValidators].sort(),
    [0, 2].map((i) => lower(chain.accounts.validators[i]!.address)).sort(),
  );
  assert.deepEqual(row!.split.dissentingValidators, []);

  // A copier that commits early cannot fill its commitment in afterwards: it committed before the first
  // reveal (to a guess), then reveals the copied bytes — they do not open its commitment.
  const guessed = await inference();
  const guess = { ...guessed, ...(await otherResult(guessed.id)) };
  await commit(guessed, 0);
  await commit(guess, 1);
  await reveal(guessed, 0);
  const read = await app.db.attributionResult.findFirstOrThrow({ where: { inferenceId: guessed.id } });
  await revealValidatorResult(app.db, { ...input(guessed, 1), canonicalJson: read.canonicalJson });
  assert.equal(await app.settlement.settle(guessed.id), "pending", "the copied bytes do not open the guess");

  // Nor can it backdate a commitment: the database numbers it (a given number is replaced) and refuses to
  // change a recorded one.
  const backdated = await inference();
  await commit(backdated, 0);
  await reveal(backdated, 0);
  const salt = await commitValidatorResult(app.db, { ...input(backdated, 2), canonicalJson: "{}" });
  await assert.rejects(
    app.db.$executeRawUnsafe(
      `UPDATE attribution_commitments SET seq = 1, commitment = $3 WHERE inference_id = $1::uuid AND validator_address = $2`,
      backdated.id,
      lower(chain.accounts.validators[2]!.address),
      attributionCommitment(backdated.resultHash, chain.accounts.validators[2]!.address, salt),
    ),
    /immutable/,
  );
  await app.db.$executeRawUnsafe(
    `INSERT INTO attribution_commitments (inference_id, validator_address, commitment, signature, seq)
     SELECT inference_id, $2, commitment, signature, 1 FROM attribution_commitments
      WHERE inference_id = $1::uuid AND validator_address = $3`,
    backdated.id,
    lower(chain.accounts.validators[1]!.address),
    lower(chain.accounts.validators[2]!.address),
  );
  const numbered = await app.db.attributionCommitment.findMany({ where: { inferenceId: backdated.id } });
  const first = await app.db.attributionResult.findFirstOrThrow({ where: { inferenceId: backdated.id } });
  const late = numbered.filter((c) => c.validatorAddress !== lower(chain.accounts.validators[0]!.address));
  assert.equal(late.length, 2);
  for (const c of late) assert.ok(c.seq > first.revealSeq, "numbered after the reveal");
  await reveal(backdated, 2);
  assert.equal(await app.settlement.settle(backdated.id), "pending");
});

test("attack: a commitment recorded in a validator's name but signed by another key is no commitment of that validator's", async () => {
  // The commitment's own signature is what says the validator itself committed, in time: without it, anyone
  // who can insert a row (another validator's process, the database's owner) could record a commitment in
  // #6's name before the first reveal — here one that #6's properly signed reveal later opens.
  const forged = await inference();
  await commit(forged, 0, 2); // the honest #5 and #7 commit
  const victim = privateKeyToAccount(chain.accounts.validators[1]!.privateKey);
  const forger = privateKeyToAccount(chain.accounts.validators[0]!.privateKey);
  const id32 = inferenceIdToBytes32(forged.id);
  const verifyingContract = chain.addresses!.contracts.RewardDistributor;
  const salt = await attributionCommitmentSalt(victim, chain.chainId, id32, verifyingContract);
  const commitment = attributionCommitment(forged.resultHash, victim.address, salt);
  await app.db.$executeRawUnsafe(
    `INSERT INTO attribution_commitments (inference_id, validator_address, commitment, signature)
     VALUES ($1::uuid, $2, $3, $4)`,
    forged.id,
    lower(victim.address),
    commitment,
    await signAttributionCommitment(
      forger,
      chain.chainId,
      { inferenceId: id32, commitment },
      verifyingContract,
    ),
  );
  await reveal(forged, 0, 1); // both reveals are properly signed by their validators
  assert.equal(
    await app.settlement.settle(forged.id),
    "pending",
    "#6's reveal opens a commitment #6 never signed: no vote, and #5 alone is no quorum",
  );
  // The honest #7 reveals: the quorum is #5 and #7.
  await reveal(forged, 2);
  assert.equal(await app.settlement.settle(forged.id), "settled");
});

test("a validator outside the active set does not count towards the quorum", async () => {
  const removed = lower(chain.accounts.validators[2]!.address);
  await chain.asAdmin([{ ...distributor(), functionName: "removeValidator", args: [removed] }]);
  // Two active validators left: 2/3 of 2 needs 2. Validator #0 and the removed one agree: no quorum.
  const inf = await inference();
  await commit(inf, 0, 2, 1);
  await reveal(inf, 0, 2);
  assert.equal(
    await app.settlement.settle(inf.id),
    "pending",
    "the removed validator's signature is no vote",
  );
  await reveal(inf, 1);
  assert.equal(await app.settlement.settle(inf.id), "settled");
  await chain.asAdmin([{ ...distributor(), functionName: "addValidator", args: [removed] }]);
});

test("one process cannot sign as several validators on a production deployment", async () => {
  const production = path.join(dir, "addresses.production.json");
  const addresses = JSON.parse(await readFile(addressesFile, "utf8"));
  await writeFile(production, JSON.stringify({ ...addresses, profile: "production" }));
  const keys = chain.accounts.validators.map((v) => v.privateKey);
  const connect = (key: string) =>
    new ChainConnector({
      rpcUrl: chain.rpcUrl,
      addressesFile: production,
      profile: "production",
      validators: { key, variable: "VALIDATOR_PRIVATE_KEYS" },
    }).get();
  await assert.rejects(connect(keys.join(",")), /holds 3 validator keys.*exactly one key/);
  const one = await connect(keys[0]!);
  assert.deepEqual(
    one.validators.map((v) => v.address),
    [chain.accounts.validators[0]!.address],
  );
});

test("settlement cannot post a root alone: validators recount and attest it, one is no quorum, a tampered root is signed by none", async () => {
  const consumer = chain.accounts.users[0]!;
  const c = chain.addresses!.contracts;
  const wallet = (await new ChainConnector({ rpcUrl: chain.rpcUrl, addressesFile, profile: "dev" }).get())
    .publicClient;
  const w = createChainWalletClient({
    rpcUrl: chain.rpcUrl,
    chainId: chain.chainId,
    privateKey: consumer.privateKey,
  });
  for (const [address, abi, functionName, args] of [
    [c.OpenToken, openTokenAbi, "approve", [c.InferenceEscrow, 10n ** 21n]],
    [c.InferenceEscrow, inferenceEscrowAbi, "deposit", [10n ** 21n]],
  ] as const) {
    const hash = await w.writeContract({ address, abi, functionName, args } as never);
    await wallet.waitForTransactionReceipt({ hash });
  }
  const latest = () =>
    wallet.readContract({
      address: c.RewardDistributor,
      abi: rewardDistributorAbi,
      functionName: "latestEpoch",
    });
  const validator = async (i: number) => {
    const account = privateKeyToAccount(chain.accounts.validators[i]!.privateKey);
    const connection = await new ChainConnector({
      rpcUrl: chain.rpcUrl,
      addressesFile,
      profile: "dev",
    }).get();
    const quiet = { info() {}, warn() {} };
    return () => attestClosedEpochs(app.db, connection, { address: lower(account.address), account }, quiet);
  };
  const [v0, v1, v2] = await Promise.all([validator(0), validator(1), validator(2)]);

  const closed = await app.settlement.epochs.tick({ force: true });
  assert.equal(closed?.status, "closed", "no validator attested: the root waits");
  assert.equal(await latest(), 0n, "nothing posted by settlement alone");

  // Someone with the database rewrites the closed root (say, to pay an attacker): no validator signs it.
  const real = closed!.merkle_root!;
  const forged = keccak256(toBytes("a root paying an attacker"));
  await app.db.$executeRawUnsafe(`UPDATE epochs SET merkle_root = $2 WHERE id = $1`, closed!.id, forged);
  for (const v of [v0, v1, v2]) assert.deepEqual(await v(), [], "a forged root is not attested");
  const disagreements = await app.db.$queryRawUnsafe<{ validator_address: string; recounted_root: string }[]>(
    `SELECT validator_address, recounted_root FROM epoch_disagreements WHERE epoch_id = $1`,
    closed!.id,
  );
  assert.equal(disagreements.length, 3, "each validator recorded its disagreement");
  for (const d of disagreements) assert.equal(d.recounted_root, real, "each recounted the real root");
  assert.equal((await app.settlement.epochs.tick({ force: true }))?.status, "closed");
  assert.equal(await latest(), 0n);

  // The real root: one validator's signature is not the quorum (2 of 3); the second one is.
  await app.db.$executeRawUnsafe(`UPDATE epochs SET merkle_root = $2 WHERE id = $1`, closed!.id, real);
  await app.db.$executeRawUnsafe(`DELETE FROM epoch_disagreements WHERE epoch_id = $1`, closed!.id);
  assert.deepEqual(await v0(), [closed!.id]);
  assert.equal((await app.settlement.epochs.tick({ force: true }))?.status, "closed", "1 of 3 is no quorum");
  assert.deepEqual(await v1(), [closed!.id]);
  const posted = await app.settlement.epochs.tick({ force: true });
  assert.equal(posted?.status, "confirmed");
  assert.equal(await latest(), BigInt(closed!.id));
  const onChain = await wallet.readContract({
    address: c.RewardDistributor as Address,
    abi: rewardDistributorAbi,
    functionName: "getEpoch",
    args: [BigInt(closed!.id)],
  });
  assert.equal(onChain.root, real);
});

test("the quorum is counted at the inference's epoch: a validator removed between the inference and its settlement still counts", async () => {
  // An epoch closed above (the previous test): the current epoch began at the block recorded then.
  const [epoch] = await app.db.$queryRawUnsafe<{ block: string | null }[]>(
    `SELECT closed_block::text AS block FROM epochs ORDER BY id DESC LIMIT 1`,
  );
  assert.ok(epoch?.block, "closing an epoch records the chain's block");
  const inf = await inference();
  await commit(inf, 0, 2);
  await reveal(inf, 0, 2);
  // Governance removes #7 before settlement gets to the inference: 2/3 of the 2 left needs both #5 and #6.
  const removed = lower(chain.accounts.validators[2]!.address);
  await chain.asAdmin([{ ...distributor(), functionName: "removeValidator", args: [removed] }]);
  try {
    // Before: read at settlement time, #7's signature was no vote and the inference waited for #6.
    assert.equal(await app.settlement.settle(inf.id), "settled", "#5 and #7 were 2 of 3 active at its epoch");
    const [row] = await app.db.$queryRawUnsafe<{ validators: string[] }[]>(
      `SELECT ARRAY(SELECT jsonb_array_elements_text(split_bps->'attestingValidators')) AS validators
         FROM settlements WHERE inference_id = $1::uuid`,
      inf.id,
    );
    assert.deepEqual(
      [...row!.validators].sort(),
      [lower(chain.accounts.validators[0]!.address), removed].sort(),
    );
  } finally {
    await chain.asAdmin([{ ...distributor(), functionName: "addValidator", args: [removed] }]);
  }
});
