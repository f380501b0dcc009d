// End to end: the whole platform (chain, Postgres, Redis, the four services as separate
// processes) runs the OpenLedger story (scripts/lib/story.ts), checked to the wei, with
// faults injected between settlement and the epoch: `inference.completed` is redelivered
// (nothing changes) and the settlement service is SIGKILLed in the middle of an epoch and
// restarted (nothing lost, nothing paid twice).
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import {
  createChainPublicClient,
  createChainWalletClient,
  inferenceEscrowAbi,
  openTokenAbi,
  rewardDistributorAbi,
  StakeRole,
  stakingAbi,
  subjectOf,
} from "@openledger/chain";
import { localAccounts } from "@openledger/chain/testing";
import { jobId, Producer } from "@openledger/queue";
import { ALICE_ROWS, BOB_ROWS } from "./lib/corpus.ts";
import { type LaunchedPlatform, launchPlatform, SERVICE_NAMES } from "./lib/launch.ts";
import {
  expectStatus,
  poll,
  runStory,
  type StoryContext,
  type StoryResult,
  siweSignIn,
} from "./lib/story.ts";

let p: LaunchedPlatform;
const lines: string[] = [];
const faults: string[] = [];

before(async () => {
  p = await launchPlatform();
});
after(async () => {
  await p?.stop();
});

async function ledgerSnapshot() {
  const rows = await p.database.db.$queryRawUnsafe<{ account: string; total: string; n: bigint }[]>(
    `SELECT account, sum(amount_wei)::text AS total, count(*) AS n FROM ledger_entries GROUP BY account ORDER BY account`,
  );
  return rows.map((r) => `${r.account}=${r.total}/${r.n}`).join("\n");
}

async function faultsBeforeEpoch(ctx: StoryContext) {
  const db = p.database.db;
  // 1. Redeliver every inference.completed: the ledger must not change.
  const before = await ledgerSnapshot();
  const settlementsBefore = await db.settlement.count();
  const producer = new Producer({ redisUrl: ctx.platform.queue!.redisUrl, prefix: p.prefix });
  try {
    const queue = producer.queue("settlement");
    for (const inf of ctx.result.inferences) {
      // The same event delivered again, as BullMQ's at-least-once delivery may: a second job
      // with the same name and payload (its own job id, so the first delivery's job, which
      // may still be active or kept as completed, is left alone).
      const id = `${jobId("inference.completed", { inferenceId: inf.id })}.redelivered`;
      await queue.add("inference.completed", { inferenceId: inf.id }, { jobId: id });
      const deadline = Date.now() + 60_000;
      for (;;) {
        const state = await (await queue.getJob(id))?.getState();
        if (state === "completed") break;
        assert.ok(state !== "failed", `redelivered job ${id} failed`);
        assert.ok(Date.now() < deadline, `redelivered job ${id} still ${state}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  } finally {
    await producer.close();
  }
  assert.equal(await ledgerSnapshot(), before, "a redelivered inference.completed changed the ledger");
  assert.equal(await db.settlement.count(), settlementsBefore);
  faults.push(`redelivered ${ctx.result.inferences.length} inference.completed: ledger unchanged`);

  const c = ctx.platform.addresses.contracts;
  const accounts = localAccounts();
  const pub = createChainPublicClient({
    rpcUrl: ctx.platform.rpcUrl,
    chainId: ctx.platform.addresses.chainId,
  });
  const sendAs = async (key: `0x${string}`, functionName: "pause") => {
    const wallet = createChainWalletClient({
      rpcUrl: ctx.platform.rpcUrl,
      chainId: ctx.platform.addresses.chainId,
      privateKey: key,
    });
    const hash = await wallet.writeContract({
      address: c.RewardDistributor,
      abi: rewardDistributorAbi,
      functionName,
      args: [],
    } as never);
    assert.equal((await pub.waitForTransactionReceipt({ hash })).status, "success");
  };

  const close = () =>
    fetch(`${ctx.platform.settlementUrl}/v1/epochs/close`, {
      method: "POST",
      headers: { authorization: `Bearer ${ctx.platform.settlementAdminToken}` },
    });
  // 2. Close the epoch and SIGKILL settlement as soon as the epoch is in flight; restart it.
  const closing = close().catch((err: Error) => err);
  let atKill = "none";
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const rows = await db.$queryRawUnsafe<{ status: string }[]>(
      `SELECT status::text AS status FROM epochs ORDER BY id DESC LIMIT 1`,
    );
    atKill = rows[0]?.status ?? "none";
    if (atKill !== "none" && atKill !== "open") break;
    await new Promise((r) => setTimeout(r, 20));
  }
  await p.kill("settlement", "SIGKILL");
  await closing;
  faults.push(`settlement SIGKILLed with the epoch ${atKill}`);
  // Paused before the restart, so a resumption at start-up meets the rejection too.
  await sendAs(accounts.guardian.privateKey, "pause");
  await p.start("settlement");
  faults.push("settlement restarted");

  // 3. The chain rejects the epoch post once (the guardian paused the distributor): the
  //    settlement API answers 409, nothing is confirmed or drawn; then the admin unpauses
  //    and the story drives the same epoch to confirmation.
  const rejected = await close();
  assert.equal(rejected.status, 409, `close while paused: ${await rejected.text()}`);
  assert.equal(
    await pub.readContract({
      address: c.RewardDistributor,
      abi: rewardDistributorAbi,
      functionName: "latestEpoch",
    }),
    0n,
  );
  assert.equal(
    await pub.readContract({
      address: c.InferenceEscrow,
      abi: inferenceEscrowAbi,
      functionName: "totalDrawn",
    }),
    0n,
  );
  const [inFlight] = await db.$queryRawUnsafe<{ status: string }[]>(
    `SELECT status::text AS status FROM epochs ORDER BY id DESC LIMIT 1`,
  );
  assert.notEqual(inFlight?.status, "confirmed");
  // Unpausing is an admin power, held by the timelock (run here by the dev profile's dev admin).
  await p.chain.asAdmin([
    { address: c.RewardDistributor, abi: rewardDistributorAbi, functionName: "unpause", args: [] },
  ]);
  faults.push(`the chain rejected postEpoch once (distributor paused): 409, epoch left ${inFlight?.status}`);
}

/** SIGKILL settlement while the fresh inferences wait to be settled; restart it a moment later. */
async function killSettlementBeforeSettling() {
  await p.kill("settlement", "SIGKILL");
  await new Promise((r) => setTimeout(r, 500));
  await p.start("settlement");
  faults.push("settlement SIGKILLed right after the inferences were served, then restarted");
}

let result: StoryResult;

test("the OpenLedger story runs across the real services and adds up to the wei", async () => {
  try {
    result = await runStory(p.platform, {
      runId: "e2e",
      log: (l) => lines.push(l),
      afterInferences: killSettlementBeforeSettling,
      beforeEpoch: faultsBeforeEpoch,
    });
  } catch (err) {
    process.stdout.write(`${lines.join("\n")}\n`);
    for (const n of SERVICE_NAMES)
      process.stdout.write(`--- ${n} (last output)\n${p.output(n).slice(-2000)}\n`);
    throw err;
  }
  const failed = result.checks.filter((c) => !c.ok);
  assert.deepEqual(failed, [], lines.join("\n"));
  assert.ok(result.checks.length > 30, `only ${result.checks.length} checks ran`);
  assert.ok(result.inferences.length >= 2);
  for (const inf of result.inferences) {
    assert.ok(inf.feeWei > 0n, "every inference was charged");
    assert.equal(
      inf.entries.reduce((t, e) => t + e.amountWei, 0n),
      0n,
    );
  }
  // The small model was registered and called, and the contributors whose rows drove its
  // answers were paid: non-zero earnings in the ledger, claimed on-chain to the wei.
  assert.ok(
    result.inferences.some((i) => i.model.startsWith("reviews-sentiment-")),
    "the small model served inferences",
  );
  assert.deepEqual(
    result.notYet.filter((n) => /small/i.test(n)),
    [],
  );
  assert.ok(result.contributorEarnings.length > 0, "contributors earned");
  for (const e of result.contributorEarnings) {
    assert.ok(e.amountWei > 0n, `${e.address} earned > 0`);
    const claim = result.claims.find((c) => c.address === e.address);
    assert.equal(claim?.amountWei, e.amountWei, `${e.address} claimed exactly its ledger earnings`);
  }
  process.stdout.write(`${lines.join("\n")}\n${faults.map((f) => `fault: ${f}`).join("\n")}\n`);
});

test("the ledger, the escrow and the distributor agree after the faults (nothing lost or paid twice)", async () => {
  assert.ok(result, "the story ran");
  const db = p.database.db;
  const [sum] = await db.$queryRawUnsafe<{ total: string | null }[]>(
    `SELECT sum(amount_wei)::text AS total FROM ledger_entries`,
  );
  assert.equal(BigInt(sum?.total ?? "0"), 0n, "the whole ledger sums to 0");
  const [fees] = await db.$queryRawUnsafe<{ total: string | null; n: bigint }[]>(
    `SELECT sum(fee_wei)::text AS total, count(*) AS n FROM settlements`,
  );
  assert.equal(Number(fees?.n), result.inferences.length, "one settlement per inference");
  assert.equal(BigInt(fees?.total ?? "0"), result.totalFeesWei);

  const c = p.platform.addresses.contracts;
  const pub = createChainPublicClient({ rpcUrl: p.platform.rpcUrl, chainId: p.platform.addresses.chainId });
  const charged = await pub.readContract({
    address: c.InferenceEscrow,
    abi: inferenceEscrowAbi,
    functionName: "totalCharged",
  });
  const drawn = await pub.readContract({
    address: c.InferenceEscrow,
    abi: inferenceEscrowAbi,
    functionName: "totalDrawn",
  });
  assert.equal(charged, result.totalFeesWei, "the escrow charged every fee exactly once");
  assert.equal(drawn, result.totalFeesWei, "the distributor drew every fee exactly once");
  const latest = await pub.readContract({
    address: c.RewardDistributor,
    abi: rewardDistributorAbi,
    functionName: "latestEpoch",
  });
  const epochs = await db.$queryRawUnsafe<{ id: number; status: string }[]>(
    `SELECT id, status::text AS status FROM epochs ORDER BY id`,
  );
  assert.deepEqual(
    epochs.map((e) => e.status),
    epochs.map(() => "confirmed"),
  );
  assert.equal(Number(latest), epochs.length, "one on-chain root per epoch, none posted twice");
  const claimed = result.claims.reduce((t, x) => t + x.amountWei, 0n);
  assert.equal(claimed, result.totalFeesWei, "claims = ledger earnings = fees");
  const distributorBalance = await pub.readContract({
    address: c.OpenToken,
    abi: openTokenAbi,
    functionName: "balanceOf",
    args: [c.RewardDistributor],
  });
  assert.equal(distributorBalance, 0n, "everything drawn was claimed");
});

test("a slashing proposal executed concurrently (sweeper + two POST …/execute) slashes once", async () => {
  assert.ok(result?.datanetId, "the story ran");
  const { platform } = p;
  const { users } = localAccounts();
  const spammer = users[3]!;
  const auth = { authorization: (await siweSignIn(platform.datanetsUrl, spammer)).authorization };
  const { json } = await expectStatus(
    "POST",
    `${platform.datanetsUrl}/v1/datanets/${result.datanetId}/contributions`,
    202,
    { rows: [...ALICE_ROWS, ...BOB_ROWS].map((r) => ({ text: r.text })) },
    auth,
  );
  const contributionId = ((json.contribution as { id?: string } | undefined)?.id ?? json.id) as string;
  const proposalId = await poll("the second slashing proposal", 60_000, async () => {
    const { json: s } = await expectStatus(
      "GET",
      `${platform.datanetsUrl}/v1/contributions/${contributionId}`,
      200,
    );
    return ((s.slashingProposalIds ?? []) as string[])[0];
  });
  const { json: proposal } = await expectStatus(
    "GET",
    `${platform.datanetsUrl}/v1/slashing-proposals/${proposalId}`,
    200,
  );
  const amount = BigInt(proposal.amountWei as string);
  const pub = createChainPublicClient({ rpcUrl: platform.rpcUrl, chainId: platform.addresses.chainId });
  const stakeOf = async () => {
    const datanet = await expectStatus("GET", `${platform.datanetsUrl}/v1/datanets/${result.datanetId}`, 200);
    return pub.readContract({
      address: platform.addresses.contracts.Staking,
      abi: stakingAbi,
      functionName: "activeStake",
      args: [
        spammer.address,
        StakeRole.Contributor,
        subjectOf(BigInt(datanet.json.chainDatanetId as string)),
      ],
    });
  };
  const before = await stakeOf();
  await new Promise((r) =>
    setTimeout(r, Math.max(0, Date.parse(proposal.disputeDeadline as string) - Date.now())),
  );
  const execute = () =>
    fetch(`${platform.datanetsUrl}/v1/slashing-proposals/${proposalId}/execute`, {
      method: "POST",
      headers: auth,
    });
  await Promise.all([execute(), execute()]);
  await poll("the proposal to be executed", 30_000, async () => {
    const { json: s } = await expectStatus(
      "GET",
      `${platform.datanetsUrl}/v1/slashing-proposals/${proposalId}`,
      200,
    );
    return s.status === "executed" ? true : undefined;
  });
  await new Promise((r) => setTimeout(r, 2000)); // let any second transaction land
  assert.equal(before - (await stakeOf()), amount, "slashed exactly once");
});
