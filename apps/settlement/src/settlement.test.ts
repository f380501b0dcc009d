// Settlement end to end on real Postgres, Redis and a local chain: exact splits, a balanced
// ledger, idempotent redelivery, the attribution quorum, epochs posted on chain, claims with
// the returned proof, a chain rejection retried, and a crash between send and confirm.
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { startTestAttestors } from "@openledger/attribution/testing";
import {
  createChainPublicClient,
  createChainWalletClient,
  inferenceEscrowAbi,
  openTokenAbi,
  rewardDistributorAbi,
} from "@openledger/chain";
import {
  commitValidatorResult,
  type LocalChain,
  revealValidatorResult,
  startLocalChain,
  validatorWeightsResult,
} from "@openledger/chain/testing";
import { Prisma } from "@openledger/db";
import type { App } from "@openledger/service-kit";
import { testEnvironment } from "@openledger/service-kit/testing";
import { splitFee } from "@openledger/settlement-core";
import type { Address, Hex } from "viem";
import { buildSettlement, settlementConfig } from "./app.ts";
import { EPOCH_LOCK } from "./lib/epochs.ts";
import { submitIntent } from "./lib/intents.ts";
import { SettlementRuntime } from "./lib/runtime.ts";

const TOKEN = "settlement-admin-token-for-tests";
const PRICE_IN = 1_000_000_000_000_000_007n; // wei per 1k input tokens
const PRICE_OUT = 2_000_000_000_000_000_003n;

let attestors: { stop(): Promise<void> } | undefined;
let chain: LocalChain;
let env: Awaited<ReturnType<typeof testEnvironment>>;
let app: App;
let dir: string;
let config: ReturnType<typeof settlementConfig>;
const log = { info() {}, warn() {}, error() {} };

const lower = (a: string) => a.toLowerCase();
/** The deployed contracts (startLocalChain deploys by default). */
const C = () => {
  assert.ok(chain.addresses, "platform deployed");
  return chain.addresses.contracts;
};

async function poll<T>(fn: () => Promise<T | undefined | null>, what: string, tries = 200): Promise<T> {
  for (let i = 0; i < tries; i++) {
    const v = await fn();
    if (v) return v;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail(`timed out waiting for ${what}`);
}

async function send(key: Hex, address: Address, abi: unknown, functionName: string, args: unknown[]) {
  const wallet = createChainWalletClient({ rpcUrl: chain.rpcUrl, chainId: chain.chainId, privateKey: key });
  const pub = createChainPublicClient({ rpcUrl: chain.rpcUrl, chainId: chain.chainId });
  const hash = await wallet.writeContract({ address, abi, functionName, args } as never);
  const receipt = await pub.waitForTransactionReceipt({ hash });
  assert.equal(receipt.status, "success", `${functionName} reverted`);
  return receipt;
}

function read<T>(address: Address, abi: unknown, functionName: string, args: unknown[] = []): Promise<T> {
  const pub = createChainPublicClient({ rpcUrl: chain.rpcUrl, chainId: chain.chainId });
  return pub.readContract({ address, abi, functionName, args } as never) as Promise<T>;
}

const MODEL = "adapter-settle-test";
let consumer: { address: string; privateKey: Hex };
let contributorA: { address: string; privateKey: Hex };
let contributorB: { address: string; privateKey: Hex };
let owner: { address: string; privateKey: Hex };

/**
 * An inference plus validator results: `agree` validators commit to and reveal one result, `disagree`
 * another; `committed` validators commit to the `agree` result first and reveal it later (`reveal`).
 */
async function makeInference(opts: {
  inTokens: number;
  outTokens: number;
  weights?: { address: string; ppm: number }[];
  agree?: number[];
  disagree?: number[];
  committed?: number[];
  createdAt?: Date;
}): Promise<string> {
  const inf = await app.db.inference.create({
    data: {
      modelId: MODEL,
      accountAddress: lower(consumer.address),
      prompt: "p",
      output: "o",
      inputTokens: opts.inTokens,
      outputTokens: opts.outTokens,
      ...(opts.createdAt ? { createdAt: opts.createdAt } : {}),
    },
  });
  const weights = opts.weights ?? [];
  const dissent = [{ address: lower(owner.address), ppm: 1_000_000 }];
  // Every commitment first (before any reveal), as validators do (commit-reveal).
  for (const i of [...(opts.agree ?? []), ...(opts.committed ?? [])])
    await commitValidatorResult(app.db, validatorWeightsResult(chain, i, inf.id, weights));
  for (const i of opts.disagree ?? [])
    await commitValidatorResult(app.db, validatorWeightsResult(chain, i, inf.id, dissent));
  for (const i of opts.agree ?? [])
    await revealValidatorResult(app.db, validatorWeightsResult(chain, i, inf.id, weights));
  for (const i of opts.disagree ?? [])
    await revealValidatorResult(app.db, validatorWeightsResult(chain, i, inf.id, dissent));
  return inf.id;
}

async function entriesOf(inferenceId: string): Promise<Map<string, bigint>> {
  const s = await app.db.settlement.findUnique({
    where: { inferenceId },
    include: { transaction: { include: { entries: true } } },
  });
  assert.ok(s, "settled");
  return new Map(
    s.transaction.entries.map((e: { account: string; amountWei: Prisma.Decimal }) => [
      e.account,
      BigInt(e.amountWei.toFixed()),
    ]),
  );
}

async function ledgerSum(): Promise<bigint> {
  const [r] = await app.db.$queryRawUnsafe<{ s: string }[]>(
    `SELECT COALESCE(sum(amount_wei), 0)::text AS s FROM ledger_entries`,
  );
  return BigInt(r!.s);
}

async function counts() {
  const [r] = await app.db.$queryRawUnsafe<{ t: number; e: number; s: number }[]>(
    `SELECT (SELECT count(*)::int FROM ledger_transactions) AS t, (SELECT count(*)::int FROM ledger_entries) AS e,
            (SELECT count(*)::int FROM settlements) AS s`,
  );
  return r!;
}

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "settlement-test-"));
  const addressesFile = path.join(dir, "addresses.json");
  chain = await startLocalChain({ writeAddresses: addressesFile });
  env = await testEnvironment("settlement");
  config = settlementConfig({
    ...env.env,
    CHAIN_RPC_URL: chain.rpcUrl,
    CHAIN_ADDRESSES_FILE: addressesFile,
    SETTLEMENT_EPOCH_INTERVAL_MS: "0",
    SETTLEMENT_RECHECK_MS: "100",
    SETTLEMENT_ADMIN_TOKEN: TOKEN,
  });
  app = await buildSettlement(config);
  // Settlement holds no validator key: the local validators' attestors sign the roots it closes.
  attestors = startTestAttestors({ db: app.db, rpcUrl: chain.rpcUrl, addressesFile });
  [consumer, contributorA, contributorB, owner] = chain.accounts.users as [
    typeof consumer,
    typeof consumer,
    typeof consumer,
    typeof consumer,
  ];
  await app.db.model.create({
    data: {
      id: MODEL,
      kind: "adapter",
      ownerAddress: lower(owner.address),
      contentHash: "ab".repeat(32),
      priceInPer1kWei: new Prisma.Decimal(PRICE_IN.toString()),
      priceOutPer1kWei: new Prisma.Decimal(PRICE_OUT.toString()),
    },
  });
  // The consumer deposits into the escrow (charged at each epoch).
  const deposit = 1_000n * 10n ** 18n;
  await send(consumer.privateKey, C().OpenToken, openTokenAbi, "approve", [C().InferenceEscrow, deposit]);
  await send(consumer.privateKey, C().InferenceEscrow, inferenceEscrowAbi, "deposit", [deposit]);
});

after(async () => {
  await attestors?.stop();
  await app?.close();
  await chain?.stop();
  await env?.cleanup();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const V5 = "0x9965507d1a55bcc2695c58ba16fb37d819b0a4dc";
const V6 = "0x976ea74026e726554db657fa54763abd0c3a0aa9";

describe("bad input", () => {
  test("a malformed address is a 400, an unsettled inference a 404, an unknown epoch a 404", async () => {
    const bad = await app.inject({ method: "GET", url: "/v1/accounts/0x123/claim" });
    assert.equal(bad.statusCode, 400);
    assert.equal(bad.json().error.code, "VALIDATION_FAILED");
    const missing = await app.inject({
      method: "GET",
      url: `/v1/inferences/${crypto.randomUUID()}/settlement`,
    });
    assert.equal(missing.statusCode, 404);
    assert.equal(missing.json().error.code, "NOT_FOUND");
    assert.equal((await app.inject({ method: "GET", url: "/v1/epochs/999" })).statusCode, 404);
  });
  test("an unknown inference id is not settled and writes nothing", async () => {
    const before1 = await counts();
    assert.equal(await app.settlement.settle(crypto.randomUUID()), "missing");
    assert.deepEqual(await counts(), before1);
  });
});

describe("settling inferences", () => {
  test("an attributed inference is priced and split exactly to the wei; the journal balances", async () => {
    const id = await makeInference({
      inTokens: 1234,
      outTokens: 567,
      weights: [
        { address: contributorA.address, ppm: 700_001 },
        { address: contributorB.address, ppm: 299_999 },
      ],
      agree: [0, 1],
      disagree: [2], // validator #7 signed another result: not attesting, not paid
    });
    await app.producer.enqueue("inference.completed", { inferenceId: id });
    await poll(() => app.db.settlement.findUnique({ where: { inferenceId: id } }), "settlement");
    const e = await entriesOf(id);
    // fee = ceil(1234 * p_in / 1000) + ceil(567 * p_out / 1000), worked out by hand
    assert.equal(e.get(`consumer:${lower(consumer.address)}`), -2_368_000_000_000_000_011n);
    assert.equal(e.get(`treasury:${lower(chain.accounts.treasury.address)}`), 236_800_000_000_000_001n);
    // 236,800,000,000,000,001 over two validators: the lower address (0x976e..) gets the odd wei
    assert.equal(e.get(`validator:${V6}`), 118_400_000_000_000_001n);
    assert.equal(e.get(`validator:${V5}`), 118_400_000_000_000_000n);
    assert.equal(e.get(`model_owner:${lower(owner.address)}`), 710_400_000_000_000_003n);
    // contributors' group got the leftover wei of the group split: 1,184,000,000,000,000,006
    assert.equal(e.get(`contributor:${lower(contributorA.address)}`), 828_801_184_000_000_004n);
    assert.equal(e.get(`contributor:${lower(contributorB.address)}`), 355_198_816_000_000_002n);
    assert.equal(e.size, 7, "the dissenting validator earns nothing");
    assert.equal(
      [...e.values()].reduce((a, b) => a + b, 0n),
      0n,
    );
    const s = await app.db.settlement.findUniqueOrThrow({ where: { inferenceId: id } });
    assert.equal(s.feeWei.toFixed(), "2368000000000000011");
    const bps = s.splitBps as Record<string, unknown>;
    assert.deepEqual(
      [bps.treasury, bps.validators, bps.modelOwner, bps.contributors, bps.noAttribution],
      [1000, 1000, 3000, 5000, false],
    );
    assert.equal(
      (await app.inject({ method: "GET", url: `/v1/inferences/${id}/settlement` })).statusCode,
      200,
    );
  });

  /** A datanet version whose rows are by `who` (what a training grant names), in Postgres only. */
  async function trainingVersion(who: string[]): Promise<string> {
    for (const address of who)
      await app.db.contributor.upsert({ where: { address }, create: { address }, update: {} });
    const slug = `train-${crypto.randomUUID().slice(0, 8)}`;
    const datanet = await app.db.datanet.create({
      data: { slug, name: slug, type: "text", license: "CC-BY-4.0", ownerAddress: lower(owner.address) },
    });
    const v = await app.db.datanetVersion.create({
      data: {
        datanetId: datanet.id,
        version: 1,
        merkleRoot: `0x${"ab".repeat(32)}`,
        rowCount: who.length,
        contributorCount: new Set(who).size,
        status: "registered",
      },
    });
    for (const [position, address] of who.entries()) {
      const c = await app.db.contribution.create({
        data: {
          datanetId: datanet.id,
          contributorAddress: address,
          source: "rows",
          status: "validated",
          rowCount: 1,
        },
      });
      const row = await app.db.datanetRow.create({
        data: {
          datanetId: datanet.id,
          contributionId: c.id,
          contributorAddress: address,
          ordinal: 0,
          text: `row ${position} of ${address}`,
          normalizedHash: "cd".repeat(32),
          status: "accepted",
        },
      });
      await app.db.datanetVersionRow.create({ data: { versionId: v.id, position, rowId: row.id } });
    }
    return v.id;
  }

  /** What the gateway writes when the factory registers an adapter under a training grant: the metered
   *  usage row (trained tokens at the job's price) and each contributor's trained tokens. */
  async function trainingUsage(opts: {
    price: bigint;
    tokens: number;
    versionIds: string[];
    shares: { address: string; tokens: bigint }[];
  }) {
    const inf = await app.db.inference.create({
      data: {
        modelId: MODEL,
        accountAddress: lower(consumer.address),
        prompt: "fine-tuning job ftjob-x",
        output: "",
        inputTokens: opts.tokens,
        outputTokens: 0,
        priceInPer1kWei: new Prisma.Decimal(opts.price.toString()),
        priceOutPer1kWei: new Prisma.Decimal(0),
      },
    });
    const grant = await app.db.trainingGrant.create({
      data: {
        id: crypto.randomUUID(),
        tokenHash: crypto.randomUUID().replaceAll("-", "").repeat(2),
        accountAddress: lower(consumer.address),
        jobRef: `ftjob-${crypto.randomUUID()}`,
        datanetVersionIds: opts.versionIds,
        baseModelHash: "ab".repeat(32),
        pricePer1kTokensWei: new Prisma.Decimal(opts.price.toString()),
        maxTokens: 2000n,
        maxFeeWei: new Prisma.Decimal("0"),
        reservationId: crypto.randomUUID(),
        expiresAt: new Date(Date.now() + 3600_000),
        usedAt: new Date(),
        // (model_id is unique per grant; settlement reads the grant by its usage row, not by model)
        inferenceId: inf.id,
        trainedTokens: BigInt(opts.tokens),
        shares: { create: opts.shares.map((s) => ({ contributorAddress: s.address, tokens: s.tokens })) },
      },
    });
    return { inf, grant };
  }

  test("a fine-tuning job's training fee goes to the contributors by trained tokens, at once, to the wei", async () => {
    const price = 500_000_000_000_003n; // wei per 1k trained tokens
    const { inf, grant } = await trainingUsage({
      price,
      tokens: 1001,
      versionIds: [await trainingVersion([lower(contributorA.address), lower(contributorB.address)])],
      shares: [
        { address: lower(contributorA.address), tokens: 667n },
        { address: lower(contributorB.address), tokens: 334n },
      ],
    });
    // No validator result exists and none is awaited: it settles at the first delivery.
    assert.equal(await app.settlement.settle(inf.id), "settled");
    const e = await entriesOf(inf.id);
    const fee = (1001n * price + 999n) / 1000n; // ceil
    assert.equal(e.get(`consumer:${lower(consumer.address)}`), -fee);
    const a = e.get(`contributor:${lower(contributorA.address)}`)!;
    const b = e.get(`contributor:${lower(contributorB.address)}`)!;
    assert.equal(a + b, fee);
    // Largest remainder of the fee over 667 : 334 (the leftover wei to the larger remainder, ties to the lower address).
    const [qa, ra, qb, rb] = [
      (fee * 667n) / 1001n,
      (fee * 667n) % 1001n,
      (fee * 334n) / 1001n,
      (fee * 334n) % 1001n,
    ];
    const aFirst = ra > rb || (ra === rb && lower(contributorA.address) < lower(contributorB.address));
    const left = fee - qa - qb;
    assert.equal(a, qa + (left > 0n && aFirst ? 1n : 0n));
    assert.equal(b, qb + (left > 0n && !aFirst ? 1n : 0n));
    assert.equal(e.size, 3, "no treasury, validator or model-owner share: all to the contributors");
    const settled = await app.db.settlement.findUniqueOrThrow({ where: { inferenceId: inf.id } });
    assert.equal((settled.splitBps as Record<string, unknown>).training, true);
    assert.equal((settled.splitBps as Record<string, unknown>).trainingGrantId, grant.id);
    assert.equal(await app.settlement.settle(inf.id), "already");
  });

  test("attack: training shares that do not check out against the grant's versions pay nobody and are reported", async () => {
    // Before: settlement paid whatever training_grant_shares said — a writer of that table (the gateway,
    // or anyone with its database access) could name an outsider or bill more tokens than were shared.
    const version = await trainingVersion([lower(contributorA.address)]);
    const outsider = lower(owner.address);
    const cases = [
      {
        why: /not contributors of the grant's datanet versions/,
        shares: [{ address: outsider, tokens: 100n }],
      },
      {
        why: /sum to 60 tokens, the fee bills 100/,
        shares: [{ address: lower(contributorA.address), tokens: 60n }],
      },
    ];
    for (const c of cases) {
      const { inf, grant } = await trainingUsage({
        price: 1_000n,
        tokens: 100,
        versionIds: [version],
        shares: c.shares,
      });
      assert.equal(await app.settlement.settle(inf.id), "held");
      assert.equal(await app.db.settlement.count({ where: { inferenceId: inf.id } }), 0, "nobody paid");
      assert.equal(await app.db.ledgerTransaction.count({ where: { externalKey: `fee:${inf.id}` } }), 0);
      const anomaly = await app.db.settlementAnomaly.findUniqueOrThrow({ where: { inferenceId: inf.id } });
      assert.equal(anomaly.kind, "training_shares_mismatch");
      assert.equal((anomaly.detail as { trainingGrantId: string }).trainingGrantId, grant.id);
      assert.match(JSON.stringify(anomaly.detail), c.why);
    }
  });

  test("the fee split is governance's, on chain: a change applies to the next settlement, to the wei", async () => {
    const next = { treasuryBps: 500, validatorsBps: 1_500, modelOwnerBps: 2_500, contributorsBps: 5_500 };
    const split = (f: typeof next) => [
      { address: C().RewardDistributor, abi: rewardDistributorAbi, functionName: "setFeeSplit", args: [f] },
    ];
    // The timelock sets it (here driven by the dev profile's dev admin; in production, a passed proposal).
    await chain.asAdmin(split(next));
    try {
      const id = await makeInference({
        inTokens: 1234,
        outTokens: 567,
        weights: [
          { address: contributorA.address, ppm: 700_001 },
          { address: contributorB.address, ppm: 299_999 },
        ],
        agree: [0, 1],
      });
      await app.producer.enqueue("inference.completed", { inferenceId: id });
      await poll(() => app.db.settlement.findUnique({ where: { inferenceId: id } }), "settlement");
      const s = await app.db.settlement.findUniqueOrThrow({ where: { inferenceId: id } });
      const bps = s.splitBps as Record<string, unknown>;
      assert.deepEqual(
        [bps.treasury, bps.validators, bps.modelOwner, bps.contributors],
        [500, 1_500, 2_500, 5_500],
      );
      // The same fee as the test above (2,368,000,000,000,000,011 wei), split by the new basis points.
      const e = await entriesOf(id);
      const expected = splitFee({
        fee: 2_368_000_000_000_000_011n,
        bps: { treasury: 500, validators: 1_500, modelOwner: 2_500, contributors: 5_500 },
        validators: [V5, V6],
        weights: [
          { address: lower(contributorA.address), ppm: 700_001 },
          { address: lower(contributorB.address), ppm: 299_999 },
        ],
      });
      // By hand: 5 % = 118,400,000,000,000,000.55 -> floor; the 2 leftover wei go to the largest
      // remainders, model owner (.75) and validators (.65).
      assert.equal(e.get(`treasury:${lower(chain.accounts.treasury.address)}`), 118_400_000_000_000_000n);
      assert.equal(e.get(`model_owner:${lower(owner.address)}`), 592_000_000_000_000_003n);
      assert.equal(expected.treasury, 118_400_000_000_000_000n);
      assert.equal(expected.modelOwner, 592_000_000_000_000_003n);
      for (const [a, amount] of expected.validators) assert.equal(e.get(`validator:${a}`), amount);
      for (const [a, amount] of expected.contributors) assert.equal(e.get(`contributor:${a}`), amount);
      assert.equal(
        [...e.values()].reduce((a, b) => a + b, 0n),
        0n,
      );
    } finally {
      await chain.asAdmin(
        split({ treasuryBps: 1_000, validatorsBps: 1_000, modelOwnerBps: 3_000, contributorsBps: 5_000 }),
      );
    }
  });

  test("a redelivered event changes nothing", async () => {
    const id = await makeInference({
      inTokens: 10,
      outTokens: 10,
      weights: [{ address: contributorA.address, ppm: 1_000_000 }],
      agree: [0, 1, 2],
    });
    const rt = app.settlement;
    assert.equal(await rt.settle(id), "settled");
    const before1 = await counts();
    const entries1 = await entriesOf(id);
    // Redelivery: the same event twice more, concurrently and then through the queue.
    assert.deepEqual(await Promise.all([rt.settle(id), rt.settle(id)]), ["already", "already"]);
    const queue = app.producer.queue("settlement");
    await queue.add("inference.completed", { inferenceId: id }, { jobId: `redelivered-${id}` });
    await poll(async () => (await queue.getJob(`redelivered-${id}`))?.finishedOn, "redelivered job");
    assert.deepEqual(await counts(), before1);
    assert.deepEqual(await entriesOf(id), entries1);
    assert.equal(await ledgerSum(), 0n);
  });

  test("no quorum yet: the inference waits, then settles when a second validator agrees", async () => {
    const weights = [{ address: contributorB.address, ppm: 1_000_000 }];
    const id = await makeInference({ inTokens: 1000, outTokens: 1000, weights, agree: [0], committed: [1] });
    await app.producer.enqueue("inference.completed", { inferenceId: id });
    await poll(() => app.db.settlementPending.findUnique({ where: { inferenceId: id } }), "pending row");
    assert.equal(await app.db.settlement.count({ where: { inferenceId: id } }), 0);
    // The second validator (committed before the first reveal) reveals the identical result: the sweeper
    // settles it.
    await revealValidatorResult(app.db, validatorWeightsResult(chain, 1, id, weights));
    await poll(() => app.db.settlement.findUnique({ where: { inferenceId: id } }), "settled after quorum");
    assert.equal(await app.db.settlementPending.count({ where: { inferenceId: id } }), 0);
    const e = await entriesOf(id);
    const fee = PRICE_IN + PRICE_OUT;
    assert.equal(e.get(`contributor:${lower(contributorB.address)}`), fee / 2n); // 5000 bps, exact here
  });

  test("attack: weight rows stored beside the signed result are not what is paid — a mismatch pays no one and is reported", async () => {
    // Validators #5 and #6 sign "contributor A 100 %"; then #5's stored weight rows are rewritten to
    // name contributor B (an attacker with write access to the attribution store, or a bug).
    const id = await makeInference({
      inTokens: 1000,
      outTokens: 0,
      weights: [{ address: contributorA.address, ppm: 1_000_000 }],
      agree: [0, 1],
    });
    const v5 = lower(chain.accounts.validators[0]!.address);
    const r5 = await app.db.attributionResult.findFirstOrThrow({
      where: { inferenceId: id, validatorAddress: v5 },
    });
    await app.db.attributionWeight.deleteMany({ where: { resultId: r5.id } });
    await app.db.attributionWeight.create({
      data: { resultId: r5.id, contributorAddress: lower(contributorB.address), weightPpm: 1_000_000 },
    });
    const rt = app.settlement;
    assert.equal(await rt.settle(id), "held", "nobody is paid");
    assert.equal(await app.db.settlement.count({ where: { inferenceId: id } }), 0);
    const listed = (await app.inject({ method: "GET", url: "/v1/anomalies" })).json().anomalies;
    const anomaly = listed.find((a: { inferenceId: string }) => a.inferenceId === id);
    assert.ok(anomaly, "reported");
    assert.equal(anomaly.kind, "weights_cache_mismatch");
    assert.deepEqual(anomaly.detail.signed, [{ address: lower(contributorA.address), ppm: 1_000_000 }]);
    assert.equal(anomaly.detail.stored[0].validator, v5);
    // Even past the no-attribution deadline it is not settled some other way.
    await app.db.inference.update({ where: { id }, data: { createdAt: new Date(Date.now() - 3_600_000) } });
    assert.equal(await rt.settle(id), "held");
    // The store repaired (rows = the signed result again): it settles, paying exactly what was signed.
    await app.db.attributionWeight.deleteMany({ where: { resultId: r5.id } });
    await app.db.attributionWeight.create({
      data: { resultId: r5.id, contributorAddress: lower(contributorA.address), weightPpm: 1_000_000 },
    });
    // (the service's own sweeper may get there first)
    assert.ok(["settled", "already"].includes(await rt.settle(id)));
    const e = await entriesOf(id);
    assert.equal(e.get(`contributor:${lower(contributorA.address)}`), PRICE_IN / 2n);
    assert.equal(e.get(`contributor:${lower(contributorB.address)}`), undefined, "B is never paid");
    const resolved = await app.db.settlementAnomaly.findUniqueOrThrow({ where: { inferenceId: id } });
    assert.ok(resolved.resolvedAt, "the anomaly is marked resolved");
  });

  test("attack: signed bytes that are no payable result pay no one", async () => {
    const id = await makeInference({ inTokens: 10, outTokens: 0, agree: [] });
    // Two validators sign a result whose weights sum to 2,000,000 ppm.
    const canonical = JSON.stringify({
      inferenceId: id,
      weights: [
        { contributorId: lower(contributorA.address), ppm: 1_000_000 },
        { contributorId: lower(contributorB.address), ppm: 1_000_000 },
      ],
    });
    const signed = (i: number) => ({
      privateKey: chain.accounts.validators[i]!.privateKey,
      chainId: chain.chainId,
      verifyingContract: C().RewardDistributor,
      inferenceId: id,
      canonicalJson: canonical,
    });
    for (const i of [0, 1]) await commitValidatorResult(app.db, signed(i));
    for (const i of [0, 1]) await revealValidatorResult(app.db, signed(i));
    assert.equal(await app.settlement.settle(id), "held");
    const a = await app.db.settlementAnomaly.findUniqueOrThrow({ where: { inferenceId: id } });
    assert.equal(a.kind, "unpayable_signed_result");
    assert.match(String((a.detail as { reason: string }).reason), /sum to 2000000/);
  });

  test("a forged signature does not count toward the quorum", async () => {
    const id = await makeInference({ inTokens: 5, outTokens: 5, weights: [], agree: [0] });
    const first = await app.db.attributionResult.findFirstOrThrow({ where: { inferenceId: id } });
    // validator #6's row carrying #5's signature (and salt)
    await app.db.attributionResult.create({
      data: {
        inferenceId: id,
        validatorAddress: V6,
        method: "span",
        canonicalJson: first.canonicalJson,
        resultHash: first.resultHash,
        signature: first.signature,
        salt: first.salt,
      },
    });
    assert.equal(await app.settlement.settle(id), "pending");
  });

  test("the deadline sweeper settles inferences nobody handed over once their deadline passed, and only those", async () => {
    // Attribution never announced these (a lost hand-off, or scoring failed for good).
    const late = await makeInference({
      inTokens: 1000,
      outTokens: 0,
      createdAt: new Date(Date.now() - 2 * config.SETTLEMENT_ATTRIBUTION_DEADLINE_MS),
    });
    const fresh = await makeInference({ inTokens: 1000, outTokens: 0 });
    // A runtime of its own (a replica just started): the service's running sweeper has already
    // read past creation times this far back, and backdated rows exist only in tests.
    const sweeper = new SettlementRuntime(app.db, config, log, app.chain);
    await sweeper.sweep();
    const settled = await app.db.settlement.findUnique({ where: { inferenceId: late } });
    assert.ok(settled, "settled by the sweeper, with no job ever enqueued");
    assert.equal((settled.splitBps as { noAttribution?: boolean }).noAttribution, true);
    assert.equal(
      await app.db.settlement.findUnique({ where: { inferenceId: fresh } }),
      null,
      "not before its deadline",
    );
    assert.equal(
      await app.db.settlementPending.findUnique({ where: { inferenceId: fresh } }),
      null,
      "nor parked",
    );
    const before = await counts();
    await sweeper.sweep();
    assert.deepEqual(await counts(), before, "a second sweep changes nothing");
  });

  test("past the deadline without a quorum: contributors' and validators' shares go to the treasury", async () => {
    const id = await makeInference({
      inTokens: 1000,
      outTokens: 0,
      createdAt: new Date(Date.now() - 2 * config.SETTLEMENT_ATTRIBUTION_DEADLINE_MS),
    });
    // The service's deadline sweeper (every 100 ms) may settle it first: the split is what is tested.
    const outcome = await app.settlement.settle(id);
    assert.ok(outcome === "settled" || outcome === "already", outcome);
    const e = await entriesOf(id);
    const fee = PRICE_IN; // ceil(1000 * p / 1000) = p
    // treasury 10% + validators 10% + contributors 50% = 70%; the model owner keeps 30%
    assert.equal(e.get(`treasury:${lower(chain.accounts.treasury.address)}`), (fee * 7000n) / 10000n + 1n);
    assert.equal(e.get(`model_owner:${lower(owner.address)}`), (fee * 3000n) / 10000n);
    assert.equal(e.size, 3);
    const s = await app.db.settlement.findUniqueOrThrow({ where: { inferenceId: id } });
    assert.equal((s.splitBps as { noAttribution: boolean }).noAttribution, true);
  });
});

async function claimAll(accounts: { address: string; privateKey: Hex }[]) {
  for (const a of accounts) {
    const res = await app.inject({ method: "GET", url: `/v1/accounts/${a.address}/claim` });
    assert.equal(res.statusCode, 200);
    const c = res.json() as {
      epoch: number;
      cumulativeAmount: string;
      claimed: string;
      claimable: string;
      proof: Hex[];
    };
    const ledger = await app.db.$queryRawUnsafe<{ s: string }[]>(
      `SELECT COALESCE(sum(e.amount_wei), 0)::text AS s FROM ledger_entries e
         JOIN settlements st ON st.transaction_id = e.transaction_id
        WHERE st.epoch_id <= $1 AND e.amount_wei > 0 AND split_part(e.account, ':', 2) = $2`,
      c.epoch,
      lower(a.address),
    );
    assert.equal(c.cumulativeAmount, ledger[0]!.s, `cumulative of ${a.address} = its ledger credits`);
    if (BigInt(c.claimable) === 0n) continue;
    const before = await read<bigint>(C().OpenToken, openTokenAbi, "balanceOf", [a.address]);
    await send(a.privateKey, C().RewardDistributor, rewardDistributorAbi, "claim", [
      BigInt(c.epoch),
      a.address,
      BigInt(c.cumulativeAmount),
      c.proof,
    ]);
    const afterBal = await read<bigint>(C().OpenToken, openTokenAbi, "balanceOf", [a.address]);
    assert.equal(
      afterBal - before,
      BigInt(c.claimable),
      `${a.address} received exactly its claimable amount`,
    );
    const again = (await app.inject({ method: "GET", url: `/v1/accounts/${a.address}/claim` })).json();
    assert.equal(again.claimed, c.cumulativeAmount);
    assert.equal(again.claimable, "0");
  }
}

/** Runs `fn` holding the epoch driver's advisory lock, so the app's own ticker stays out (a crash
 *  scenario must not be finished by it halfway through). */
async function asTheOnlyDriver<T>(fn: () => Promise<T>): Promise<T> {
  return app.db.$transaction(
    async (tx) => {
      await tx.$queryRawUnsafe(`SELECT pg_advisory_xact_lock($1)::text AS locked`, EPOCH_LOCK);
      return fn();
    },
    { timeout: 60_000 },
  );
}

/** The restarted worker (or the app's ticker, whichever runs first) finishes the epoch. */
async function finishedEpoch(id: number) {
  await new SettlementRuntime(app.db, config, log, app.chain).epochs.tick();
  return poll(async () => {
    const e = await app.db.epoch.findUnique({ where: { id } });
    return e?.status === "confirmed" ? e : undefined;
  }, `epoch ${id} confirmed`);
}

async function closeEpoch() {
  return app.inject({
    method: "POST",
    url: "/v1/epochs/close",
    headers: { authorization: `Bearer ${TOKEN}` },
  });
}

async function reconcileOk() {
  const r = (await app.inject({ method: "GET", url: "/v1/reconciliation" })).json();
  assert.equal(r.ok, true, JSON.stringify(r.checks.filter((c: { ok: boolean }) => !c.ok)));
}

async function postedEvents(epoch: number): Promise<number> {
  const pub = createChainPublicClient({ rpcUrl: chain.rpcUrl, chainId: chain.chainId });
  const logs = await pub.getContractEvents({
    address: C().RewardDistributor,
    abi: rewardDistributorAbi,
    eventName: "EpochPosted",
    fromBlock: 0n,
  });
  return logs.filter((l) => Number(l.args.epoch) === epoch).length;
}

describe("epochs on chain", () => {
  const earners = () => [
    contributorA,
    contributorB,
    owner,
    chain.accounts.treasury,
    chain.accounts.validators[0]!,
    chain.accounts.validators[1]!,
  ];

  test("admin close needs the token", async () => {
    assert.equal((await app.inject({ method: "POST", url: "/v1/epochs/close" })).statusCode, 401);
    const wrong = await app.inject({
      method: "POST",
      url: "/v1/epochs/close",
      headers: { authorization: "Bearer not-the-token" },
    });
    assert.equal(wrong.statusCode, 401);
  });

  test("an epoch posts on chain; accounts claim exactly their cumulative earnings with the proof", async () => {
    const res = await closeEpoch();
    assert.equal(res.statusCode, 200, res.body);
    const epoch = res.json().epoch;
    assert.equal(epoch.id, 1);
    assert.equal(epoch.status, "confirmed");
    const onChain = await read<{ root: Hex; cumulativeTotal: bigint }>(
      C().RewardDistributor,
      rewardDistributorAbi,
      "getEpoch",
      [1n],
    );
    assert.equal(onChain.root, epoch.merkleRoot);
    const [fees] = await app.db.$queryRawUnsafe<{ s: string }[]>(
      `SELECT sum(fee_wei)::text AS s FROM settlements`,
    );
    assert.equal(onChain.cumulativeTotal.toString(), fees!.s, "the root carries every fee settled");
    await reconcileOk();
    await claimAll(earners());
    await reconcileOk();
  });

  test("a second epoch adds up cumulatively; claims pay only the difference", async () => {
    await app.settlement.settle(
      await makeInference({
        inTokens: 3000,
        outTokens: 77,
        weights: [{ address: contributorA.address, ppm: 1_000_000 }],
        agree: [0, 1],
      }),
    );
    const res = await closeEpoch();
    assert.equal(res.json().epoch.id, 2);
    await claimAll(earners());
    await reconcileOk();
  });

  test("the chain rejects the post once (distributor paused): retried later, posted once", async () => {
    await app.settlement.settle(
      await makeInference({
        inTokens: 100,
        outTokens: 100,
        weights: [{ address: contributorB.address, ppm: 1_000_000 }],
        agree: [1, 2],
      }),
    );
    await send(chain.accounts.guardian.privateKey, C().RewardDistributor, rewardDistributorAbi, "pause", []);
    const rejected = await closeEpoch();
    assert.equal(rejected.statusCode, 409, rejected.body);
    assert.match(rejected.json().error.message, /EnforcedPause/);
    const intent = await app.db.chainIntent.findUniqueOrThrow({ where: { key: "epoch.post:3" } });
    assert.equal(intent.status, "pending");
    assert.equal(intent.txHash, null);
    assert.equal(await read<bigint>(C().RewardDistributor, rewardDistributorAbi, "latestEpoch"), 2n);
    // Unpausing is an admin power: the timelock's (here run by the dev profile's dev admin).
    await chain.asAdmin([
      { address: C().RewardDistributor, abi: rewardDistributorAbi, functionName: "unpause", args: [] },
    ]);
    const ok = await closeEpoch();
    assert.equal(ok.json().epoch.id, 3);
    assert.equal(ok.json().epoch.status, "confirmed");
    assert.equal(await postedEvents(3), 1);
    await reconcileOk();
  });

  test("a worker killed between send and confirm: the restarted one confirms from the receipt, no re-send", async () => {
    await app.settlement.settle(
      await makeInference({
        inTokens: 42,
        outTokens: 4200,
        weights: [{ address: contributorA.address, ppm: 1_000_000 }],
        agree: [0, 2],
      }),
    );
    // The "crashed" worker: charges, closes, attests, sends the post... and dies before confirming.
    const crashed = new SettlementRuntime(app.db, config, log, app.chain);
    const chainCtx = await crashed.chain();
    const { epoch, sent } = await asTheOnlyDriver(async () => {
      await crashed.epochs.charger.run();
      const epoch = await crashed.epochs.closeEpoch();
      assert.ok(epoch);
      assert.equal(await crashed.epochs.attest(epoch), true);
      await app.db.epoch.update({ where: { id: epoch.id }, data: { status: "posted" } });
      const sent = await submitIntent(app.db, chainCtx, await crashed.epochs.postSpec(epoch));
      return { epoch, sent };
    });
    assert.equal(sent.status, "submitted");
    const pub = createChainPublicClient({ rpcUrl: chain.rpcUrl, chainId: chain.chainId });
    const nonceBefore = await pub.getTransactionCount({ address: chain.accounts.settlement.address });
    const done = await finishedEpoch(epoch.id);
    assert.equal(done.postTxHash, sent.tx_hash, "confirmed with the hash recorded before the crash");
    const nonceAfter = await pub.getTransactionCount({ address: chain.accounts.settlement.address });
    assert.equal(nonceAfter, nonceBefore, "nothing was sent again");
    assert.equal(await postedEvents(epoch.id), 1);
    await reconcileOk();
  });

  test("epochs close by size (N settlements waiting) or by interval, not before", async () => {
    const settleOne = async (i: number) =>
      app.settlement.settle(
        await makeInference({
          inTokens: 10 + i,
          outTokens: 1,
          weights: [{ address: contributorA.address, ppm: 1_000_000 }],
          agree: [0, 1],
        }),
      );
    const bySize = new SettlementRuntime(
      app.db,
      { ...config, SETTLEMENT_EPOCH_MAX_SETTLEMENTS: 2 },
      log,
      app.chain,
    );
    const epochsBefore = await app.db.epoch.count();
    await settleOne(1);
    assert.equal(await bySize.epochs.tick(), undefined, "one settlement waiting: below the size");
    assert.equal(await app.db.epoch.count(), epochsBefore);
    await settleOne(2);
    // (poll: the app's own ticker may hold the driver lock for a moment)
    const closed = await poll(() => bySize.epochs.tick(), "size-closed epoch");
    assert.equal(closed?.status, "confirmed");
    assert.equal(closed?.settlement_count, 2);
    // By interval: the last epoch closed longer ago than the interval.
    await settleOne(3);
    const byInterval = new SettlementRuntime(
      app.db,
      { ...config, SETTLEMENT_EPOCH_INTERVAL_MS: 1 },
      log,
      app.chain,
    );
    await new Promise((r) => setTimeout(r, 5));
    const timed = await poll(() => byInterval.epochs.tick(), "interval-closed epoch");
    assert.equal(timed?.settlement_count, 1);
    assert.equal(timed?.status, "confirmed");
    await reconcileOk();
  });

  test("killed after recording the signed post but before broadcasting it: re-broadcast once", async () => {
    await app.settlement.settle(
      await makeInference({
        inTokens: 7,
        outTokens: 7000,
        weights: [{ address: contributorB.address, ppm: 1_000_000 }],
        agree: [1, 2],
      }),
    );
    const crashed = new SettlementRuntime(app.db, config, log, app.chain);
    const chainCtx = await crashed.chain();
    const pub = createChainPublicClient({ rpcUrl: chain.rpcUrl, chainId: chain.chainId });
    const { epoch, recorded, nonceBefore } = await asTheOnlyDriver(async () => {
      await crashed.epochs.charger.run();
      const epoch = await crashed.epochs.closeEpoch();
      assert.ok(epoch);
      await crashed.epochs.attest(epoch);
      await app.db.epoch.update({ where: { id: epoch.id }, data: { status: "posted" } });
      const nonceBefore = await pub.getTransactionCount({ address: chain.accounts.settlement.address });
      const recorded = await submitIntent(app.db, chainCtx, await crashed.epochs.postSpec(epoch), {
        crashBeforeBroadcast: true,
      });
      return { epoch, recorded, nonceBefore };
    });
    assert.equal(recorded.status, "submitted");
    assert.equal(await postedEvents(epoch.id), 0, "not on chain yet");
    const done = await finishedEpoch(epoch.id);
    assert.equal(done.postTxHash, recorded.tx_hash, "the recorded transaction itself was mined");
    assert.equal(
      await pub.getTransactionCount({ address: chain.accounts.settlement.address }),
      nonceBefore + 1,
    );
    assert.equal(await postedEvents(epoch.id), 1);
    await claimAll([contributorA, contributorB, owner, chain.accounts.treasury]);
    await reconcileOk();
    assert.equal(await ledgerSum(), 0n);
  });
});
