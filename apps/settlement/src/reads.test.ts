// The public ledger reads (routes/reads.ts) against real Postgres, Redis and a local chain: inferences of
// two models are attributed by validators, settled and posted in an epoch, one recipient claims on
// chain; every figure the reads answer is checked against the journals (to the wei) and the chain.
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
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
import type { Address, Hex } from "viem";
import { buildSettlement, settlementConfig } from "./app.ts";

const TOKEN = "settlement-admin-token-for-reads";
const TRAINED = "adapter-trained-on-reviews";
const OTHER = "adapter-on-nothing-listed";
let attestors: { stop(): Promise<void> } | undefined;
let chain: LocalChain;
let env: Awaited<ReturnType<typeof testEnvironment>>;
let app: App;
let dir: string;
let datanetId: string;
const lower = (a: string) => a.toLowerCase();
type Account = { address: string; privateKey: Hex };
let consumer: Account;
let alice: Account;
let bob: Account;
let owner: Account;
let outsider: Account;
const inferences: { id: string; model: string }[] = [];

async function send(key: Hex, address: Address, abi: unknown, functionName: string, args: unknown[]) {
  const wallet = createChainWalletClient({ rpcUrl: chain.rpcUrl, chainId: chain.chainId, privateKey: key });
  const pub = createChainPublicClient({ rpcUrl: chain.rpcUrl, chainId: chain.chainId });
  const hash = await wallet.writeContract({ address, abi, functionName, args } as never);
  assert.equal((await pub.waitForTransactionReceipt({ hash })).status, "success", `${functionName} reverted`);
}

/** An inference of `model` that validators #5 and #6 attribute with `weights`, then settled. */
async function settled(model: string, inTokens: number, outTokens: number, weights: [Account, number][]) {
  const inf = await app.db.inference.create({
    data: {
      modelId: model,
      accountAddress: lower(consumer.address),
      prompt: "p",
      output: "o",
      inputTokens: inTokens,
      outputTokens: outTokens,
    },
  });
  const input = (i: number) =>
    validatorWeightsResult(
      chain,
      i,
      inf.id,
      weights.map(([a, ppm]) => ({ address: a.address, ppm })),
    );
  // Both commit before either reveals (commit-reveal), then both reveal.
  for (const i of [0, 1]) await commitValidatorResult(app.db, input(i));
  for (const i of [0, 1]) await revealValidatorResult(app.db, input(i));
  assert.equal(await app.settlement.settle(inf.id), "settled");
  inferences.push({ id: inf.id, model });
  return inf.id;
}

/** Credits per (role, address) of the given settlements' journals, straight from the ledger. */
async function credits(where: string, ...args: unknown[]) {
  return app.db.$queryRawUnsafe<{ role: string; address: string; amount: string }[]>(
    `SELECT split_part(e.account, ':', 1) AS role, split_part(e.account, ':', 2) AS address,
            sum(e.amount_wei)::text AS amount
       FROM settlements s JOIN inferences i ON i.id = s.inference_id
       JOIN ledger_entries e ON e.transaction_id = s.transaction_id
      WHERE e.amount_wei > 0 AND ${where} GROUP BY 1, 2`,
    ...args,
  );
}
const sum = (xs: { amount: string }[]) => xs.reduce((t, x) => t + BigInt(x.amount), 0n);
const get = async <T>(url: string, status = 200): Promise<T> => {
  const res = await app.inject({ method: "GET", url });
  assert.equal(res.statusCode, status, `${url}: ${res.body}`);
  return res.json<T>();
};

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "settlement-reads-"));
  const addressesFile = path.join(dir, "addresses.json");
  [chain, env] = await Promise.all([
    startLocalChain({ writeAddresses: addressesFile }),
    testEnvironment("reads"),
  ]);
  app = await buildSettlement(
    settlementConfig({
      ...env.env,
      CHAIN_RPC_URL: chain.rpcUrl,
      CHAIN_ADDRESSES_FILE: addressesFile,
      SETTLEMENT_EPOCH_INTERVAL_MS: "0",
      SETTLEMENT_ADMIN_TOKEN: TOKEN,
      RUN_WORKERS: "false",
    }),
  );
  // Settlement holds no validator key: the local validators' attestors sign the roots it closes.
  attestors = startTestAttestors({ db: app.db, rpcUrl: chain.rpcUrl, addressesFile });
  [consumer, alice, bob, owner, outsider] = chain.accounts.users as Account[] as [
    Account,
    Account,
    Account,
    Account,
    Account,
  ];
  // A datanet alice and bob contributed to, a version of it, a model trained on it and one trained on
  // nothing of it (the outsider's credits there are not this datanet's).
  const db = app.db;
  for (const a of [alice, bob, outsider, owner])
    await db.contributor.create({ data: { address: lower(a.address) } });
  const dn = await db.datanet.create({
    data: {
      slug: "reviews",
      name: "Reviews",
      type: "text",
      license: "CC0-1.0",
      ownerAddress: lower(owner.address),
    },
  });
  datanetId = dn.id;
  for (const a of [alice, bob])
    await db.contribution.create({
      data: { datanetId, contributorAddress: lower(a.address), source: "rows", status: "validated" },
    });
  const version = await db.datanetVersion.create({
    data: { datanetId, version: 1, merkleRoot: `0x${"11".repeat(32)}`, rowCount: 10, contributorCount: 2 },
  });
  for (const [id, trained] of [
    [TRAINED, true],
    [OTHER, false],
  ] as const) {
    await db.model.create({
      data: {
        id,
        kind: "adapter",
        ownerAddress: lower(owner.address),
        contentHash: (trained ? "ab" : "cd").repeat(32),
        priceInPer1kWei: new Prisma.Decimal("1000000000000000007"),
        priceOutPer1kWei: new Prisma.Decimal("2000000000000000003"),
        ...(trained ? { trainingVersions: { create: [{ datanetVersionId: version.id }] } } : {}),
      },
    });
  }
  const deposit = 1_000n * 10n ** 18n;
  const c = chain.addresses!.contracts;
  await send(consumer.privateKey, c.OpenToken, openTokenAbi, "approve", [c.InferenceEscrow, deposit]);
  await send(consumer.privateKey, c.InferenceEscrow, inferenceEscrowAbi, "deposit", [deposit]);

  await settled(TRAINED, 1234, 567, [
    [alice, 700_001],
    [bob, 299_999],
  ]);
  await settled(TRAINED, 99, 3, [[alice, 1_000_000]]);
  await settled(OTHER, 500, 500, [[outsider, 1_000_000]]);
  const closed = await app.inject({
    method: "POST",
    url: "/v1/epochs/close",
    headers: { authorization: `Bearer ${TOKEN}` },
  });
  assert.equal(closed.json<{ epoch: { status: string } }>().epoch.status, "confirmed", closed.body);
  // Alice claims on chain; bob does not.
  const claim = await get<{ epoch: number; cumulativeAmount: string; proof: Hex[] }>(
    `/v1/accounts/${alice.address}/claim`,
  );
  await send(alice.privateKey, c.RewardDistributor, rewardDistributorAbi, "claim", [
    BigInt(claim.epoch),
    alice.address,
    BigInt(claim.cumulativeAmount),
    claim.proof,
  ]);
  // One more settlement after the epoch: in no epoch yet.
  await settled(TRAINED, 10, 10, [[bob, 1_000_000]]);
});

after(async () => {
  await attestors?.stop();
  await app?.close();
  await chain?.stop();
  await env?.cleanup();
  if (dir) await rm(dir, { recursive: true, force: true });
});

test("/v1/stats and /v1/settlements answer the settlements table", async () => {
  const [fees] = await app.db.$queryRawUnsafe<{ s: string }[]>(
    `SELECT sum(fee_wei)::text AS s FROM settlements`,
  );
  const stats = await get<Record<string, unknown>>("/v1/stats");
  const all = await credits("true");
  assert.deepEqual(stats, {
    settlements: 4,
    feesWei: fees!.s,
    epochs: 1,
    confirmedEpochs: 1,
    accounts: new Set(all.map((x) => x.address)).size,
  });
  const list = await get<{ items: { inferenceId: string; modelId: string; epochId: number | null }[] }>(
    "/v1/settlements?limit=3",
  );
  assert.deepEqual(
    list.items.map((i) => i.inferenceId),
    inferences
      .slice(-3)
      .reverse()
      .map((i) => i.id),
    "newest first",
  );
  assert.equal(list.items[0]!.epochId, null, "the last one is in no epoch yet");
  const other = await get<{ items: { modelId: string }[] }>(`/v1/settlements?modelId=${OTHER}`);
  assert.deepEqual(
    other.items.map((i) => i.modelId),
    [OTHER],
  );
  await get("/v1/settlements?limit=0", 400);
});

test("/v1/epochs/:id/flows: roles sum to the fees to the wei; recipients' claims come from the chain", async () => {
  const flows = await get<{
    feesWei: string;
    settlementCount: number;
    roles: Record<string, string>;
    recipients: {
      address: string;
      roles: Record<string, string>;
      earnedWei: string;
      cumulativeWei: string | null;
      claimedWei: string | null;
      pendingWei: string | null;
    }[];
  }>("/v1/epochs/1/flows");
  const epoch = await get<{ totalWei: string; settlementCount: number }>("/v1/epochs/1");
  assert.equal(flows.feesWei, epoch.totalWei);
  assert.equal(flows.settlementCount, 3);
  const ledger = await credits("s.epoch_id = 1");
  for (const role of ["treasury", "validator", "model_owner", "contributor"])
    assert.equal(flows.roles[role], sum(ledger.filter((x) => x.role === role)).toString(), role);
  assert.equal(
    Object.values(flows.roles).reduce((t, x) => t + BigInt(x), 0n),
    BigInt(flows.feesWei),
    "the roles add up to the fees",
  );
  for (const x of ledger) {
    const r = flows.recipients.find((y) => y.address === x.address);
    assert.equal(r?.roles[x.role], x.amount, `${x.role}:${x.address}`);
  }
  const pub = createChainPublicClient({ rpcUrl: chain.rpcUrl, chainId: chain.chainId });
  for (const r of flows.recipients) {
    const claimed = await pub.readContract({
      address: chain.addresses!.contracts.RewardDistributor,
      abi: rewardDistributorAbi,
      functionName: "claimed",
      args: [r.address as Address],
    });
    assert.equal(r.claimedWei, claimed.toString());
    assert.equal(r.cumulativeWei, r.earnedWei, "the first epoch's cumulative = what it earned in it");
    assert.equal(BigInt(r.pendingWei!), BigInt(r.cumulativeWei!) - claimed);
  }
  const a = flows.recipients.find((r) => r.address === lower(alice.address))!;
  assert.equal(a.pendingWei, "0", "alice claimed");
  const b = flows.recipients.find((r) => r.address === lower(bob.address))!;
  assert.equal(b.pendingWei, b.cumulativeWei, "bob did not");
  await get("/v1/epochs/99/flows", 404);
  await get("/v1/epochs/x/flows", 400);
});

test("/v1/accounts/:address/earnings: by role and by model, equal to the ledger's credits", async () => {
  const e = await get<{
    totalWei: string;
    byRole: { role: string; amountWei: string; inferences: number }[];
    bySource: { role: string; modelId: string; amountWei: string; inferences: number }[];
  }>(`/v1/accounts/${bob.address.toUpperCase().replace("0X", "0x")}/earnings`);
  const ledger = await credits("split_part(e.account, ':', 2) = $1", lower(bob.address));
  assert.equal(e.totalWei, sum(ledger).toString());
  assert.deepEqual(e.byRole, [{ role: "contributor", amountWei: e.totalWei, inferences: 2 }]);
  assert.deepEqual(e.bySource, [
    { role: "contributor", modelId: TRAINED, amountWei: e.totalWei, inferences: 2 },
  ]);
  const o = await get<{ byRole: { role: string; inferences: number }[]; bySource: { modelId: string }[] }>(
    `/v1/accounts/${owner.address}/earnings`,
  );
  assert.deepEqual(
    o.byRole.map((r) => [r.role, r.inferences]),
    [["model_owner", 4]],
  );
  assert.deepEqual(o.bySource.map((s) => s.modelId).sort(), [OTHER, TRAINED].sort());
  const nobody = await get<{ totalWei: string; bySource: unknown[] }>(
    "/v1/accounts/0x000000000000000000000000000000000000dead/earnings",
  );
  assert.equal(nobody.totalWei, "0");
  assert.deepEqual(nobody.bySource, []);
  await get("/v1/accounts/0x123/earnings", 400);
});

test("/v1/models/:id/usage and /v1/datanets/:id/earnings", async () => {
  const u = await get<{
    inferences: number;
    inputTokens: number;
    outputTokens: number;
    feesWei: string;
    roles: Record<string, string>;
  }>(`/v1/models/${TRAINED}/usage`);
  const rows = await app.db.inference.findMany({
    where: { modelId: TRAINED },
    include: { settlement: true },
  });
  assert.equal(u.inferences, 3);
  assert.equal(
    u.inputTokens,
    rows.reduce((t, r) => t + r.inputTokens, 0),
  );
  assert.equal(
    u.outputTokens,
    rows.reduce((t, r) => t + r.outputTokens, 0),
  );
  assert.equal(u.feesWei, rows.reduce((t, r) => t + BigInt(r.settlement!.feeWei.toFixed()), 0n).toString());
  assert.equal(
    Object.values(u.roles).reduce((t, x) => t + BigInt(x), 0n),
    BigInt(u.feesWei),
  );
  await get("/v1/models/no-such-model/usage", 404);

  const d = await get<{ items: { address: string; earnedWei: string; inferences: number }[] }>(
    `/v1/datanets/${datanetId}/earnings`,
  );
  const ledger = await credits("i.model_id = $1 AND split_part(e.account, ':', 1) = 'contributor'", TRAINED);
  assert.deepEqual(
    d.items.map((i) => i.address).sort(),
    [lower(alice.address), lower(bob.address)].sort(),
    "the outsider, paid only by the other model, is not listed",
  );
  for (const i of d.items)
    assert.equal(i.earnedWei, ledger.find((x) => x.address === i.address)!.amount, i.address);
  assert.ok(BigInt(d.items[0]!.earnedWei) >= BigInt(d.items[1]!.earnedWei), "largest first");
  await get("/v1/datanets/00000000-0000-4000-8000-000000000000/earnings", 404);
  await get("/v1/datanets/not-a-uuid/earnings", 400);
});
