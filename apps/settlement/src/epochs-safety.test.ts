// Settlement safety on real Postgres, Redis and a local chain: a consumer whose escrow balance
// falls short (withdrew, or overspent) no longer blocks everyone's epoch; their fees are carried
// over and settle once they top up; a charge mined before a crash is read back from the chain, not
// sent again; inferences keep the price they were served at; the gateway's `owed` does not count a
// fee the escrow already took.
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:http";
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
import { type LocalChain, startLocalChain } from "@openledger/chain/testing";
import { gatewayEnv, parseConfig, TINY_MODEL_ENV } from "@openledger/config";
import { Prisma } from "@openledger/db";
import { type App, createServiceChain } from "@openledger/service-kit";
import { testEnvironment } from "@openledger/service-kit/testing";
import type { Address, Hex } from "viem";
// The gateway's own balance bookkeeping, against the same database and chain.
import { Billing } from "../../gateway/src/plugins/billing.ts";
import { ModelCatalog } from "../../gateway/src/plugins/catalog.ts";
import { InferenceRecorder } from "../../gateway/src/plugins/inferences.ts";
import { buildSettlement, settlementConfig } from "./app.ts";
import { EPOCH_LOCK } from "./lib/epochs.ts";
import { executeIntent } from "./lib/intents.ts";

const TOKEN = "settlement-safety-admin-token";
const OPEN = 10n ** 18n;
/** 3 OPEN per 1k input tokens: an inference of 1,000 input tokens costs exactly 3 OPEN. */
const PRICE_IN = 3n * OPEN;
const PRICE_OUT = 7n;
const MODEL = "adapter-safety";

let attestors: { stop(): Promise<void> } | undefined;
let chain: LocalChain;
let env: Awaited<ReturnType<typeof testEnvironment>>;
let app: App;
let dir: string;
let config: ReturnType<typeof settlementConfig>;
let gateway: { billing: Billing; inferences: InferenceRecorder; catalog: ModelCatalog };
type Account = { address: string; privateKey: Hex };
let alice: Account; // always funded
let bob: Account; // withdraws below what he owes
let carol: Account; // withdraws between planning and charging
let owner: Account;

const lower = (a: string) => a.toLowerCase();
const C = () => {
  assert.ok(chain.addresses);
  return chain.addresses.contracts;
};

async function send(key: Hex, address: Address, abi: unknown, functionName: string, args: unknown[]) {
  const wallet = createChainWalletClient({ rpcUrl: chain.rpcUrl, chainId: chain.chainId, privateKey: key });
  const pub = createChainPublicClient({ rpcUrl: chain.rpcUrl, chainId: chain.chainId });
  const hash = await wallet.writeContract({ address, abi, functionName, args } as never);
  const receipt = await pub.waitForTransactionReceipt({ hash });
  assert.equal(receipt.status, "success", `${functionName} reverted`);
}

function read<T>(address: Address, abi: unknown, functionName: string, args: unknown[] = []): Promise<T> {
  const pub = createChainPublicClient({ rpcUrl: chain.rpcUrl, chainId: chain.chainId });
  return pub.readContract({ address, abi, functionName, args } as never) as Promise<T>;
}

const escrowBalance = (a: Account) =>
  read<bigint>(C().InferenceEscrow, inferenceEscrowAbi, "balanceOf", [a.address]);

async function deposit(a: Account, amount: bigint) {
  await send(a.privateKey, C().OpenToken, openTokenAbi, "approve", [C().InferenceEscrow, amount]);
  await send(a.privateKey, C().InferenceEscrow, inferenceEscrowAbi, "deposit", [amount]);
}

/** Request, wait out the delay, withdraw: the escrow balance drops by `amount`. */
async function withdraw(a: Account, amount: bigint) {
  await send(a.privateKey, C().InferenceEscrow, inferenceEscrowAbi, "requestWithdrawal", [amount]);
  await chain.increaseTime(24 * 3600 + 1);
  await send(a.privateKey, C().InferenceEscrow, inferenceEscrowAbi, "withdraw", []);
}

/** An inference recorded by the gateway (prices of the moment), settled without attribution
 *  (its deadline passed), so its fee is 3 OPEN at PRICE_IN. */
async function inferAndSettle(a: Account, inputTokens = 1000): Promise<string> {
  const id = await gateway.inferences.persist({
    modelId: MODEL,
    account: lower(a.address),
    prompt: "p",
    output: "o",
    inputTokens,
    outputTokens: 0,
    ttftMs: null,
    durationMs: null,
  });
  await app.db.inference.update({
    where: { id },
    data: { createdAt: new Date(Date.now() - 2 * config.SETTLEMENT_ATTRIBUTION_DEADLINE_MS) },
  });
  const outcome = await app.settlement.settle(id);
  assert.ok(outcome === "settled" || outcome === "already", outcome);
  return id;
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
  // The gateway's running totals (owed = billed - cleared, kept by the gateway's recording and by
  // settlement's charges) against the full history after every scenario of this file.
  assert.deepEqual(await gateway.billing.reconcile(), []);
}

async function epochOf(inferenceId: string): Promise<number | null> {
  const s = await app.db.settlement.findUniqueOrThrow({ where: { inferenceId } });
  return s.epochId;
}

/** Ledger fees per epoch = the epoch total = what the distributor drew for it. */
async function assertTotalsToTheWei() {
  const [r] = await app.db.$queryRawUnsafe<{ fees: string; total: string }[]>(
    `SELECT (SELECT COALESCE(sum(fee_wei), 0)::text FROM settlements WHERE epoch_id IS NOT NULL) AS fees,
            (SELECT COALESCE(max(cumulative_total_wei), 0)::text FROM epochs WHERE status = 'confirmed') AS total`,
  );
  assert.equal(r!.fees, r!.total, "fees in epochs = the latest root's cumulative total");
  assert.equal(
    await read<bigint>(C().InferenceEscrow, inferenceEscrowAbi, "totalDrawn"),
    BigInt(r!.total),
    "drawn = the posted cumulative total",
  );
  assert.equal(
    await read<bigint>(C().InferenceEscrow, inferenceEscrowAbi, "settledUndrawn"),
    0n,
    "nothing charged that no epoch drew",
  );
}

/** Runs `fn` holding the epoch driver's lock (the app's own ticker stays out). */
async function asTheOnlyDriver<T>(fn: () => Promise<T>): Promise<T> {
  return app.db.$transaction(
    async (tx) => {
      await tx.$queryRawUnsafe(`SELECT pg_advisory_xact_lock($1)::text AS locked`, EPOCH_LOCK);
      return fn();
    },
    { timeout: 60_000 },
  );
}

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "settlement-safety-"));
  const addressesFile = path.join(dir, "addresses.json");
  chain = await startLocalChain({ writeAddresses: addressesFile });
  env = await testEnvironment("settlesafe");
  const chainEnv = { CHAIN_RPC_URL: chain.rpcUrl, CHAIN_ADDRESSES_FILE: addressesFile };
  config = settlementConfig({
    ...env.env,
    ...chainEnv,
    SETTLEMENT_EPOCH_INTERVAL_MS: "0",
    SETTLEMENT_RECHECK_MS: "100",
    SETTLEMENT_ADMIN_TOKEN: TOKEN,
    SETTLEMENT_WRITEOFF_AFTER_MS: "60000",
  });
  app = await buildSettlement(config);
  // Settlement holds no validator key: the local validators' attestors sign the roots it closes.
  attestors = startTestAttestors({ db: app.db, rpcUrl: chain.rpcUrl, addressesFile });
  const gatewayCfg = parseConfig("gateway", gatewayEnv, {
    ...TINY_MODEL_ENV,
    ...env.env,
    ...chainEnv,
    GATEWAY_DATA_DIR: dir,
    GATEWAY_BALANCE_CACHE_MS: "0",
  });
  const catalog = new ModelCatalog(gatewayCfg, app.db);
  const billing = new Billing({
    config: gatewayCfg,
    db: app.db,
    chain: createServiceChain(gatewayCfg),
    log: app.log,
  });
  gateway = {
    catalog,
    billing,
    inferences: new InferenceRecorder(app.db, app.producer, billing, catalog, app.log),
  };
  [alice, bob, carol, owner] = chain.accounts.users as [Account, Account, Account, Account];
  const row = await app.db.model.create({
    data: {
      id: MODEL,
      kind: "adapter",
      ownerAddress: lower(owner.address),
      contentHash: "cd".repeat(32),
      priceInPer1kWei: new Prisma.Decimal(PRICE_IN.toString()),
      priceOutPer1kWei: new Prisma.Decimal(PRICE_OUT.toString()),
    },
  });
  gateway.catalog.models.set(MODEL, {
    id: MODEL,
    kind: "adapter",
    ownerAddress: row.ownerAddress,
    contentHash: row.contentHash,
    priceInPer1kWei: PRICE_IN,
    priceOutPer1kWei: PRICE_OUT,
    createdAt: row.createdAt,
  });
  await deposit(alice, 1_000n * OPEN);
  await deposit(bob, 10n * OPEN);
  await deposit(carol, 5n * OPEN);
});

after(async () => {
  await attestors?.stop();
  await app?.close();
  await chain?.stop();
  await env?.cleanup();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("a consumer short of escrow balance", () => {
  test("withdrew below what they owe: the others settle, their covered fees too, the rest is carried over", async () => {
    const a1 = await inferAndSettle(alice);
    const a2 = await inferAndSettle(alice);
    const b1 = await inferAndSettle(bob);
    const b2 = await inferAndSettle(bob);
    // Bob owes 6 OPEN and withdraws 6 of his 10: 4 left covers his older fee, not both.
    await withdraw(bob, 6n * OPEN);
    const res = await closeEpoch();
    assert.equal(res.statusCode, 200, res.body);
    const epoch = res.json().epoch;
    assert.equal(epoch.status, "confirmed");
    assert.equal(epoch.id, 1);
    assert.equal(epoch.totalWei, (9n * OPEN).toString(), "alice's two fees and bob's older one");
    for (const id of [a1, a2, b1]) assert.equal(await epochOf(id), 1);
    assert.equal(await epochOf(b2), null, "bob's newer fee waits");
    assert.equal(await escrowBalance(alice), 994n * OPEN);
    assert.equal(await escrowBalance(bob), 1n * OPEN);
    assert.equal(await read<bigint>(C().RewardDistributor, rewardDistributorAbi, "latestEpoch"), 1n);
    const deferrals = (await app.inject({ method: "GET", url: "/v1/deferrals" })).json().deferrals;
    assert.deepEqual(
      deferrals.map((d: { consumer: string; deferredWei: string; settlementCount: number }) => [
        d.consumer,
        d.deferredWei,
        d.settlementCount,
      ]),
      [[lower(bob.address), (3n * OPEN).toString(), 1]],
    );
    const billing = (await app.inject({ method: "GET", url: `/v1/accounts/${bob.address}/billing` })).json();
    assert.equal(billing.unchargedWei, (3n * OPEN).toString());
    assert.equal(billing.chargedWei, (3n * OPEN).toString());
    assert.equal(billing.deferral.deferredWei, (3n * OPEN).toString());
    // The gateway still counts bob's carried-over fee as owed (so it answers 402 until he tops up).
    assert.equal(await gateway.billing.owed(lower(bob.address)), 3n * OPEN);
    assert.equal(await gateway.billing.owed(lower(alice.address)), 0n);
    await assertTotalsToTheWei();
    await reconcileOk();
  });

  test("after a top-up the carried-over fee settles in a later epoch, once", async () => {
    const b2 = (
      await app.db.$queryRawUnsafe<{ id: string }[]>(
        `SELECT s.inference_id::text AS id FROM settlements s WHERE s.epoch_id IS NULL`,
      )
    ).map((r) => r.id);
    assert.equal(b2.length, 1);
    await deposit(bob, 2n * OPEN);
    const res = await closeEpoch();
    assert.equal(res.statusCode, 200, res.body);
    assert.equal(res.json().epoch.id, 2);
    assert.equal(res.json().epoch.totalWei, (3n * OPEN).toString());
    assert.equal(await epochOf(b2[0]!), 2);
    assert.equal(await escrowBalance(bob), 0n, "1 left + 2 topped up - 3 charged");
    assert.deepEqual((await app.inject({ method: "GET", url: "/v1/deferrals" })).json().deferrals, []);
    assert.equal(await gateway.billing.owed(lower(bob.address)), 0n);
    // Nothing else to close: a forced close answers the latest epoch, changes nothing.
    const again = await closeEpoch();
    assert.equal(again.json().epoch.id, 2);
    assert.equal(await read<bigint>(C().InferenceEscrow, inferenceEscrowAbi, "totalCharged"), 12n * OPEN);
    await assertTotalsToTheWei();
    await reconcileOk();
    // The model owner claims its whole share: the distributor pays exactly what the root says.
    const claim = (await app.inject({ method: "GET", url: `/v1/accounts/${owner.address}/claim` })).json();
    assert.equal(claim.cumulativeAmount, ((12n * OPEN * 3000n) / 10000n).toString());
    await send(owner.privateKey, C().RewardDistributor, rewardDistributorAbi, "claim", [
      BigInt(claim.epoch),
      owner.address,
      BigInt(claim.cumulativeAmount),
      claim.proof,
    ]);
    await reconcileOk();
  });

  test("balance gone between planning and charging: the escrow skips that consumer, the batch still charges the others", async () => {
    const a = await inferAndSettle(alice);
    const c = await inferAndSettle(carol);
    const rt = app.settlement;
    const planned = await asTheOnlyDriver(() => rt.epochs.charger.plan(true));
    assert.equal(planned.length, 1);
    assert.deepEqual(
      planned[0]!.items.map((i) => i.consumer).sort(),
      [lower(alice.address), lower(carol.address)].sort(),
      "both covered when planned, in one batch",
    );
    await withdraw(carol, 5n * OPEN); // before the batch is sent
    const res = await closeEpoch();
    assert.equal(res.statusCode, 200, res.body);
    assert.equal(res.json().epoch.id, 3);
    assert.equal(res.json().epoch.totalWei, (3n * OPEN).toString(), "alice's fee only");
    assert.equal(await epochOf(a), 3);
    assert.equal(await epochOf(c), null);
    const charge = await app.db.escrowCharge.findUniqueOrThrow({ where: { id: planned[0]!.id } });
    assert.equal(charge.status, "applied");
    assert.equal(charge.chargedWei.toFixed(), (3n * OPEN).toString());
    const outcomes = Object.fromEntries(
      (charge.items as { consumer: string; outcome: string }[]).map((i) => [i.consumer, i.outcome]),
    );
    assert.deepEqual(outcomes, { [lower(alice.address)]: "charged", [lower(carol.address)]: "skipped" });
    const s = await app.db.settlement.findUniqueOrThrow({ where: { inferenceId: c } });
    assert.equal(s.chargeId, null, "released for a later round");
    assert.equal(await escrowBalance(carol), 0n);
    const deferral = await app.db.escrowDeferral.findUniqueOrThrow({
      where: { consumer: lower(carol.address) },
    });
    assert.equal(deferral.deferredWei.toFixed(), (3n * OPEN).toString());
    assert.equal(deferral.balanceWei.toFixed(), "0");
    await assertTotalsToTheWei();
    await reconcileOk();
    // A timer tick (not forced) does not re-read carol's balance for every tick.
    assert.equal(await rt.epochs.tick(), undefined);
    // Carol tops up: her fee settles in the next epoch.
    await deposit(carol, 3n * OPEN);
    const later = await closeEpoch();
    assert.equal(later.json().epoch.id, 4);
    assert.equal(await epochOf(c), 4);
    assert.equal(await escrowBalance(carol), 0n);
    assert.equal(await app.db.escrowDeferral.count(), 0);
    await assertTotalsToTheWei();
    await reconcileOk();
  });
});

describe("crash recovery of a charge", () => {
  test("killed after the charge was mined but before its outcome was recorded: the outcome is read from the chain, nothing charged twice", async () => {
    const id = await inferAndSettle(alice);
    const rt = app.settlement;
    const chainCtx = await rt.chain();
    const charged0 = await read<bigint>(C().InferenceEscrow, inferenceEscrowAbi, "totalCharged");
    const balance0 = await escrowBalance(alice);
    const planned = await asTheOnlyDriver(async () => {
      const planned = await rt.epochs.charger.plan(true);
      assert.equal(planned.length, 1);
      // The "crashed" worker: the charge is mined and its intent confirmed, the outcome never recorded.
      await executeIntent(app.db, chainCtx, rt.epochs.charger.spec(chainCtx, planned[0]!));
      return planned;
    });
    assert.equal(await escrowBalance(alice), balance0 - 3n * OPEN);
    const row = await app.db.escrowCharge.findUniqueOrThrow({ where: { id: planned[0]!.id } });
    assert.equal(row.status, "planned");
    // Its hash is forgotten too (as when an intent is confirmed from chain state): found by its event.
    await app.db.chainIntent.update({
      where: { key: `escrow.charge:${planned[0]!.id}` },
      data: { txHash: null },
    });
    const pub = createChainPublicClient({ rpcUrl: chain.rpcUrl, chainId: chain.chainId });
    const nonce = await pub.getTransactionCount({ address: chain.accounts.settlement.address });
    const res = await closeEpoch();
    assert.equal(res.statusCode, 200, res.body);
    assert.equal(res.json().epoch.totalWei, (3n * OPEN).toString());
    assert.ok(await epochOf(id));
    assert.equal(
      await pub.getTransactionCount({ address: chain.accounts.settlement.address }),
      nonce + 1,
      "only the post was sent, the charge was not sent again",
    );
    assert.equal(
      await read<bigint>(C().InferenceEscrow, inferenceEscrowAbi, "totalCharged"),
      charged0 + 3n * OPEN,
    );
    assert.equal(await escrowBalance(alice), balance0 - 3n * OPEN, "charged once");
    const applied = await app.db.escrowCharge.findUniqueOrThrow({ where: { id: planned[0]!.id } });
    assert.equal(applied.status, "applied");
    assert.ok(applied.txHash);
    await assertTotalsToTheWei();
    await reconcileOk();
  });

  test("a confirmed charge intent whose recorded hash was never mined (confirmed from chain state before the hash was cleared): found by its event, epochs go on", async () => {
    const id = await inferAndSettle(alice);
    const rt = app.settlement;
    const chainCtx = await rt.chain();
    const balance0 = await escrowBalance(alice);
    const planned = await asTheOnlyDriver(async () => {
      const planned = await rt.epochs.charger.plan(true);
      assert.equal(planned.length, 1);
      await executeIntent(app.db, chainCtx, rt.epochs.charger.spec(chainCtx, planned[0]!));
      return planned;
    });
    // As rows written before the fix: confirmed, but holding a hash no receipt exists for.
    await app.db.chainIntent.update({
      where: { key: `escrow.charge:${planned[0]!.id}` },
      data: { txHash: `0x${"5a".repeat(32)}` },
    });
    const res = await closeEpoch();
    assert.equal(res.statusCode, 200, res.body);
    assert.ok(await epochOf(id));
    assert.equal(await escrowBalance(alice), balance0 - 3n * OPEN, "charged once");
    const applied = await app.db.escrowCharge.findUniqueOrThrow({ where: { id: planned[0]!.id } });
    assert.equal(applied.status, "applied");
    assert.notEqual(applied.txHash, `0x${"5a".repeat(32)}`);
    await assertTotalsToTheWei();
    await reconcileOk();
  });
});

describe("price at inference time", () => {
  test("a price change after the inference does not change its fee", async () => {
    const id = await gateway.inferences.persist({
      modelId: MODEL,
      account: lower(alice.address),
      prompt: "p",
      output: "o",
      inputTokens: 1000,
      outputTokens: 1000,
      ttftMs: null,
      durationMs: null,
    });
    const row = await app.db.inference.findUniqueOrThrow({ where: { id } });
    assert.equal(row.priceInPer1kWei?.toFixed(), PRICE_IN.toString());
    assert.equal(row.priceOutPer1kWei?.toFixed(), PRICE_OUT.toString());
    const fee = PRICE_IN + PRICE_OUT;
    assert.equal(
      await gateway.billing.owed(lower(alice.address)),
      fee,
      "owed before settlement at the served price",
    );
    // The model's price goes up tenfold before settlement gets to the inference.
    await app.db.model.update({
      where: { id: MODEL },
      data: {
        priceInPer1kWei: new Prisma.Decimal((PRICE_IN * 10n).toString()),
        priceOutPer1kWei: new Prisma.Decimal((PRICE_OUT * 10n).toString()),
      },
    });
    await app.db.inference.update({
      where: { id },
      data: { createdAt: new Date(Date.now() - 2 * config.SETTLEMENT_ATTRIBUTION_DEADLINE_MS) },
    });
    assert.equal(await gateway.billing.owed(lower(alice.address)), fee);
    // The service's own recheck (every 100 ms) may settle it first now that its deadline has
    // passed; either way that happens after the price change above, which is what is tested.
    const outcome = await app.settlement.settle(id);
    assert.ok(outcome === "settled" || outcome === "already", `settle: ${outcome}`);
    const s = await app.db.settlement.findUniqueOrThrow({ where: { inferenceId: id } });
    assert.equal(s.feeWei.toFixed(), fee.toString());
    await app.db.model.update({
      where: { id: MODEL },
      data: {
        priceInPer1kWei: new Prisma.Decimal(PRICE_IN.toString()),
        priceOutPer1kWei: new Prisma.Decimal(PRICE_OUT.toString()),
      },
    });
    const res = await closeEpoch();
    assert.equal(res.json().epoch.totalWei, fee.toString());
    await reconcileOk();
  });
});

describe("owed (the gateway's balance check)", () => {
  test("a fee charged in the escrow is not owed again while its epoch waits to be posted", async () => {
    const id = await inferAndSettle(alice);
    const spendableBefore = await gateway.billing.balance(lower(alice.address)).then((b) => b.spendable);
    assert.equal(await gateway.billing.owed(lower(alice.address)), 3n * OPEN);
    await send(chain.accounts.guardian.privateKey, C().RewardDistributor, rewardDistributorAbi, "pause", []);
    const rejected = await closeEpoch();
    assert.equal(rejected.statusCode, 409, rejected.body);
    const epoch = await app.db.epoch.findFirstOrThrow({ orderBy: { id: "desc" } });
    assert.notEqual(epoch.status, "confirmed");
    assert.equal(await epochOf(id), epoch.id);
    // The escrow already took the fee: spendable dropped by it, so owed must not count it too.
    assert.equal(
      await gateway.billing.balance(lower(alice.address)).then((b) => b.spendable),
      spendableBefore - 3n * OPEN,
    );
    assert.equal(await gateway.billing.owed(lower(alice.address)), 0n);
    // An unsettled inference is owed at its served price.
    await gateway.inferences.persist({
      modelId: MODEL,
      account: lower(alice.address),
      prompt: "p",
      output: "o",
      inputTokens: 2000,
      outputTokens: 0,
      ttftMs: null,
      durationMs: null,
    });
    assert.equal(await gateway.billing.owed(lower(alice.address)), 6n * OPEN);
    // Unpausing is an admin power: the timelock's (here run by the dev profile's dev admin).
    await chain.asAdmin([
      { address: C().RewardDistributor, abi: rewardDistributorAbi, functionName: "unpause", args: [] },
    ]);
    const ok = await closeEpoch();
    assert.equal(ok.statusCode, 200, ok.body);
    assert.equal(ok.json().epoch.id, epoch.id);
    assert.equal(ok.json().epoch.status, "confirmed");
    assert.equal(await gateway.billing.owed(lower(alice.address)), 6n * OPEN);
    await reconcileOk();
  });
});

describe("a consumer over its daily cap (the settler's bound)", () => {
  test("fees beyond the cap are carried over, the gateway stops at the cap, and they are charged the next day", async () => {
    const dora = chain.accounts.users[4]! as Account;
    await deposit(dora, 100n * OPEN);
    // Lowering a cap takes effect after the withdrawal delay (fees already served stay collectable).
    await send(dora.privateKey, C().InferenceEscrow, inferenceEscrowAbi, "setDailyCap", [4n * OPEN]);
    await chain.increaseTime(24 * 3600 + 1);
    const d1 = await inferAndSettle(dora);
    const d2 = await inferAndSettle(dora);
    const res = await closeEpoch();
    assert.equal(res.statusCode, 200, res.body);
    const first = res.json().epoch;
    assert.equal(first.totalWei, (3n * OPEN).toString(), "only what the 4 OPEN cap covers");
    assert.equal(await epochOf(d1), first.id);
    assert.equal(await epochOf(d2), null, "carried over");
    assert.equal(await escrowBalance(dora), 97n * OPEN);
    const deferral = await app.db.escrowDeferral.findUniqueOrThrow({
      where: { consumer: lower(dora.address) },
    });
    assert.equal(deferral.deferredWei.toFixed(), (3n * OPEN).toString());
    assert.equal(deferral.balanceWei.toFixed(), (4n * OPEN).toString(), "chargeable when planned: the cap");
    // The gateway sees the cap too: 1 OPEN left today, 3 owed.
    assert.equal(await gateway.billing.balance(lower(dora.address)).then((b) => b.spendable), 1n * OPEN);
    assert.equal(await gateway.billing.owed(lower(dora.address)), 3n * OPEN);
    await assertTotalsToTheWei();
    // Next UTC day: the carried-over fee is charged, once.
    await chain.increaseTime(24 * 3600);
    const next = await closeEpoch();
    assert.equal(next.statusCode, 200, next.body);
    assert.equal(next.json().epoch.id, first.id + 1);
    assert.equal(await epochOf(d2), first.id + 1);
    assert.equal(await escrowBalance(dora), 94n * OPEN);
    assert.equal(await app.db.escrowDeferral.count({ where: { consumer: lower(dora.address) } }), 0);
    assert.equal(await gateway.billing.owed(lower(dora.address)), 0n);
    await assertTotalsToTheWei();
    await reconcileOk();
  });
});

describe("a slow or frozen chain (the epoch close is bounded)", () => {
  /** A JSON-RPC proxy in front of the node that holds every transaction for `delayMs` (a slow chain). */
  async function slowRpc(delayMs: number) {
    const server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", async () => {
        const body = Buffer.concat(chunks).toString();
        if (body.includes("eth_sendRawTransaction")) await new Promise((r) => setTimeout(r, delayMs));
        try {
          const upstream = await fetch(chain.rpcUrl, {
            method: "POST",
            headers: { "content-type": "application/json" },
            body,
          });
          res.writeHead(upstream.status, { "content-type": "application/json" });
          res.end(await upstream.text());
        } catch {
          res.destroy();
        }
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const address = server.address();
    const url = `http://127.0.0.1:${typeof address === "object" && address ? address.port : 0}`;
    return { url, close: () => new Promise<void>((r) => server.close(() => r())) };
  }

  test("a slow chain: POST /v1/epochs/close answers 202 within its wait and the epoch confirms in the background; a frozen one: 503 at once", async () => {
    const proxy = await slowRpc(3000);
    const slow = await buildSettlement(
      settlementConfig({
        ...env.env,
        CHAIN_RPC_URL: proxy.url,
        CHAIN_ADDRESSES_FILE: path.join(dir, "addresses.json"),
        CHAIN_REQUEST_TIMEOUT_MS: "1000",
        RUN_WORKERS: "false",
        SETTLEMENT_EPOCH_INTERVAL_MS: "0",
        SETTLEMENT_EPOCH_CLOSE_WAIT_MS: "500",
        SETTLEMENT_ADMIN_TOKEN: TOKEN,
      }),
    );
    try {
      const before = (await listEpochsOf(app))[0]?.id ?? 0;
      await inferAndSettle(alice);
      // Generous slack for a loaded machine: without the bound the call would wait for every
      // transaction of the epoch (charge, post: 3 s each here).
      const bound = 500 + 1000 + 4000;
      const started = performance.now();
      const res = await slow.inject({
        method: "POST",
        url: "/v1/epochs/close",
        headers: { authorization: `Bearer ${TOKEN}` },
      });
      const ms = performance.now() - started;
      assert.equal(res.statusCode, 202, res.body);
      assert.equal(res.json().running, true);
      assert.ok(ms < bound, `answered after ${ms} ms`);
      let latest = (await listEpochsOf(app))[0];
      for (let i = 0; i < 600 && !(latest && latest.id > before && latest.status === "confirmed"); i++) {
        await new Promise((r) => setTimeout(r, 100));
        latest = (await listEpochsOf(app))[0];
      }
      assert.ok(latest && latest.id === before + 1 && latest.status === "confirmed", JSON.stringify(latest));
      await slow.settlement.epochs.idle();
      await assertTotalsToTheWei();
      await reconcileOk();

      await inferAndSettle(alice);
      process.kill(chain.pid!, "SIGSTOP");
      try {
        const t0 = performance.now();
        const frozen = await slow.inject({
          method: "POST",
          url: "/v1/epochs/close",
          headers: { authorization: `Bearer ${TOKEN}` },
        });
        const frozenMs = performance.now() - t0;
        assert.equal(frozen.statusCode, 503, frozen.body);
        assert.equal(frozen.json().error.code, "CHAIN_UNAVAILABLE");
        assert.ok(frozenMs < bound, `answered after ${frozenMs} ms`);
      } finally {
        process.kill(chain.pid!, "SIGCONT");
      }
      assert.equal((await listEpochsOf(app))[0]?.id, before + 1, "nothing closed on a frozen chain");
    } finally {
      await slow.close();
      await proxy.close();
    }
    // What was left waiting closes once the chain answers.
    const res = await closeEpoch();
    assert.equal(res.statusCode, 200, res.body);
    await assertTotalsToTheWei();
    await reconcileOk();
  });
});

describe("the write-off rule (fees that can never be collected)", () => {
  const writeoff = (a: Account, reason: string) =>
    app.inject({
      method: "POST",
      url: "/v1/writeoffs",
      headers: { authorization: `Bearer ${TOKEN}` },
      payload: { consumer: a.address, reason },
    });

  test("a consumer who left: refused while the fees may be collected, then written off by the operator — ledger reversed to the wei, never charged, not owed, listed", async () => {
    const erin = chain.accounts.users[5]! as Account;
    await deposit(erin, 3n * OPEN);
    const e1 = await inferAndSettle(erin);
    const early = await writeoff(erin, "left the platform");
    assert.equal(early.statusCode, 409, early.body);
    assert.equal(early.json().error.code, "NOT_DEFERRED", "fees the escrow was never short of");
    const e2 = await inferAndSettle(erin);
    await withdraw(erin, 3n * OPEN); // gone: nothing left in the escrow for her 6 OPEN of fees
    assert.equal((await closeEpoch()).statusCode, 200);
    assert.equal(await epochOf(e1), null);
    const deferral = await app.db.escrowDeferral.findUniqueOrThrow({
      where: { consumer: lower(erin.address) },
    });
    assert.equal(deferral.deferredWei.toFixed(), (6n * OPEN).toString());
    // Short only moments ago: she may still top up, so no write-off yet (SETTLEMENT_WRITEOFF_AFTER_MS).
    const tooSoon = await writeoff(erin, "left the platform");
    assert.equal(tooSoon.statusCode, 409, tooSoon.body);
    assert.match(tooSoon.json().error.message, /SETTLEMENT_WRITEOFF_AFTER_MS/);
    assert.equal(
      (
        await app.inject({
          method: "POST",
          url: "/v1/writeoffs",
          payload: { consumer: erin.address, reason: "x y z" },
        })
      ).statusCode,
      401,
      "an operator's command only",
    );
    // ... an hour later she is still short.
    await app.db.$executeRawUnsafe(
      `UPDATE escrow_deferrals SET since = now() - interval '1 hour' WHERE consumer = $1`,
      lower(erin.address),
    );
    const res = await writeoff(erin, "consumer withdrew everything and left");
    assert.equal(res.statusCode, 201, res.body);
    const w = res.json();
    assert.deepEqual(
      [w.consumer, w.totalWei, w.settlementCount, w.reason],
      [lower(erin.address), (6n * OPEN).toString(), 2, "consumer withdrew everything and left"],
    );
    // The ledger: the write-off's transaction reverses the two fee transactions exactly, per account.
    const net = await app.db.$queryRawUnsafe<{ account: string; net: string }[]>(
      `SELECT e.account, sum(e.amount_wei)::text AS net FROM ledger_entries e
         JOIN ledger_transactions t ON t.id = e.transaction_id
        WHERE t.external_key = ANY($1::text[]) GROUP BY e.account HAVING sum(e.amount_wei) <> 0`,
      [`fee:${e1}`, `fee:${e2}`, `writeoff:${w.id}`],
    );
    assert.deepEqual(net, [], "fees + write-off net to zero on every account");
    const [consumerCredit] = await app.db.$queryRawUnsafe<{ amount: string }[]>(
      `SELECT e.amount_wei::text AS amount FROM ledger_entries e JOIN ledger_transactions t ON t.id = e.transaction_id
        WHERE t.external_key = $1 AND e.account = $2`,
      `writeoff:${w.id}`,
      `consumer:${lower(erin.address)}`,
    );
    assert.equal(consumerCredit?.amount, (6n * OPEN).toString());
    assert.equal(await gateway.billing.owed(lower(erin.address)), 0n, "the gateway no longer counts them");
    assert.equal(await app.db.escrowDeferral.count({ where: { consumer: lower(erin.address) } }), 0);
    const listed = (await app.inject({ method: "GET", url: "/v1/writeoffs" })).json().writeoffs;
    assert.equal(listed[0].id, w.id);
    // Never charged, never in an epoch, even after she tops up again; nothing to write off twice.
    await deposit(erin, 10n * OPEN);
    await closeEpoch();
    assert.equal(await epochOf(e1), null);
    assert.equal(await epochOf(e2), null);
    assert.equal(await escrowBalance(erin), 10n * OPEN);
    assert.equal((await writeoff(erin, "again")).statusCode, 409);
    await assertTotalsToTheWei();
    await reconcileOk();
  });
});

async function listEpochsOf(a: App): Promise<{ id: number; status: string }[]> {
  return (await a.inject({ method: "GET", url: "/v1/epochs" })).json().epochs;
}
