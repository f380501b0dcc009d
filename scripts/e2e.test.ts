// End to end: the whole platform (chain, Postgres, Redis, the five services as separate
// processes) runs the OpenLedger story (scripts/lib/story.ts), checked to the wei, with faults
// injected: the settlement service SIGKILLed right after the inferences are served and again in
// the middle of an epoch (nothing lost, nothing paid twice), and the chain refusing postEpoch once.
// Strict: every step must run (no skipped step), and neither the story nor this test enqueues a
// platform job — the data path gateway → attribution → settlement does it all by itself. Then a
// governance proposal changes the fee split (propose → vote → queue → execute, time travel), and the
// story runs a second time on the same, now used, chain: its epoch must settle by the new split.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, test } from "node:test";
import {
  createChainPublicClient,
  createChainWalletClient,
  inferenceEscrowAbi,
  openGovernorAbi,
  openTokenAbi,
  ProposalState,
  passProposal,
  rewardDistributorAbi,
  StakeRole,
  stakingAbi,
  subjectOf,
} from "@openledger/chain";
import { localAccounts } from "@openledger/chain/testing";
import { parseEventLogs } from "viem";
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

let result: StoryResult;
let storyError: unknown;

before(async () => {
  p = await launchPlatform();
  try {
    result = await runStory(p.platform, {
      runId: "e2e",
      log: (l) => lines.push(l),
      afterInferences: killSettlementBeforeSettling,
      beforeEpoch: faultsBeforeEpoch,
    });
  } catch (err) {
    storyError = err;
    process.stdout.write(`${lines.join("\n")}\n`);
    for (const n of SERVICE_NAMES)
      process.stdout.write(`--- ${n} (last output)\n${p.output(n).slice(-2000)}\n`);
  }
});
after(async () => {
  await p?.stop();
});

async function faultsBeforeEpoch(ctx: StoryContext) {
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
  const db = p.database.db;
  // 1. Close the epoch and SIGKILL settlement as soon as the epoch is in flight; restart it.
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

  // 2. The chain rejects the epoch post once (the guardian paused the distributor): the
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

test("the OpenLedger story runs across the real services and adds up to the wei", async () => {
  if (storyError) throw storyError;
  const failed = result.checks.filter((c) => !c.ok);
  assert.deepEqual(failed, [], lines.join("\n"));
  assert.ok(result.checks.length > 30, `only ${result.checks.length} checks ran`);
  // Three validator processes, one key each, none of them settlement; the quorum is 2 of the 3.
  assert.equal(result.validators.length, 3);
  assert.equal(new Set(result.validators.map((v) => v.pid)).size, 3, "each validator in its own process");
  assert.equal(new Set(result.validators.map((v) => v.address)).size, 3);
  assert.deepEqual(result.quorum && [result.quorum.need, result.quorum.active], [2, 3]);
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
  assert.deepEqual(result.skipped, [], "every step ran (a skipped step fails the e2e)");
  assert.ok(result.contributorEarnings.length > 0, "contributors earned");
  // The language-model loop: a fine-tuned adapter's answers reproduce datanet text, the validators
  // attribute the spans, and the contributors are paid through the span path.
  const { fineTune } = result;
  assert.ok(fineTune, "ModelFactory fine-tuned an adapter");
  assert.ok(
    result.contributorEarningsWei.span > 0n,
    "contributors earned from the adapter's answers (span path)",
  );
  assert.ok(result.contributorEarningsWei.influence > 0n, "and from the small model's (influence)");
  // An answer of the fine-tuned adapter that quotes no datanet span pays its contributors through LoRA
  // influence (the rows' gradients); those earnings are in the claims below, equal to the ledger.
  const noSpan = result.inferences.filter((i) => i.path === "loraInfluence");
  assert.equal(noSpan.length, 1, "one adapter answer with no verbatim span");
  assert.ok(
    noSpan[0]!.entries.some((e) => e.account.startsWith("contributor:") && e.amountWei > 0n),
    "its contributors were paid",
  );
  assert.ok(result.contributorEarningsWei.loraInfluence > 0n, "through LoRA influence");
  // Validators #2 and #3 do not read the gateway's disk (ATTRIBUTION_ADAPTER_SOURCE = its URL): the quorum of
  // 2 on that answer includes one that fetched the adapter's files from the gateway, signed, and checked them.
  const validatorUrls = p.platform.validatorUrls ?? [];
  const sources = await Promise.all(
    validatorUrls.map(
      async (url) =>
        ((await (await fetch(`${url}/v1/validator`)).json()) as { adapterSource: string }).adapterSource,
    ),
  );
  assert.deepEqual(sources, ["dir", p.platform.gatewayUrl, p.platform.gatewayUrl]);
  const fetched = await Promise.all(
    validatorUrls.slice(1).map(async (url) => {
      const text = await (await fetch(`${url}/metrics`)).text();
      return Number(
        /attribution_adapter_fetches_total\{[^}]*outcome="fetched"[^}]*\} (\d+)/.exec(text)?.[1] ?? 0,
      );
    }),
  );
  assert.ok(
    fetched.reduce((a, b) => a + b, 0) >= 1,
    `a validator without the gateway's disk fetched the adapter: ${fetched}`,
  );
  for (const e of result.contributorEarnings) {
    assert.ok(e.amountWei > 0n, `${e.address} earned > 0`);
    // A fresh chain: each claim is the contributor's whole ledger (answers + the training fee).
    const trained: bigint =
      fineTune.entries.find((x) => x.account === `contributor:${e.address}`)?.amountWei ?? 0n;
    const claim = result.claims.find((c) => c.address === e.address);
    assert.equal(claim?.amountWei, e.amountWei + trained, `${e.address} claimed exactly its ledger earnings`);
    const { json: ledger } = await expectStatus(
      "GET",
      `${p.platform.settlementUrl}/v1/accounts/${e.address}/ledger`,
      200,
    );
    const earned = (ledger.accounts as { account: string; balanceWei: string }[])
      .filter((x) => !x.account.startsWith("consumer:"))
      .reduce((t, x) => t + BigInt(x.balanceWei), 0n);
    assert.equal(claim?.amountWei, earned, `${e.address}'s claim = the settlement ledger`);
  }
  process.stdout.write(`${lines.join("\n")}\n${faults.map((f) => `fault: ${f}`).join("\n")}\n`);
});

test("the ledger, the escrow and the distributor agree after the faults (nothing lost or paid twice)", async () => {
  if (storyError) throw storyError;
  const db = p.database.db;
  const [sum] = await db.$queryRawUnsafe<{ total: string | null }[]>(
    `SELECT sum(amount_wei)::text AS total FROM ledger_entries`,
  );
  assert.equal(BigInt(sum?.total ?? "0"), 0n, "the whole ledger sums to 0");
  const [fees] = await db.$queryRawUnsafe<{ total: string | null; n: bigint }[]>(
    `SELECT sum(fee_wei)::text AS total, count(*) AS n FROM settlements`,
  );
  // One settlement per inference, and one for the fine-tuning job's training fee.
  const trainingFee = result.fineTune?.feeWei ?? 0n;
  assert.equal(
    Number(fees?.n),
    result.inferences.length + 1,
    "one settlement per inference and the training",
  );
  assert.equal(BigInt(fees?.total ?? "0"), result.totalFeesWei + trainingFee);

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
  assert.equal(charged, result.totalFeesWei + trainingFee, "the escrow charged every fee exactly once");
  assert.equal(drawn, result.totalFeesWei + trainingFee, "the distributor drew every fee exactly once");
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
  assert.equal(claimed, result.totalFeesWei + trainingFee, "claims = ledger earnings = fees");
  const distributorBalance = await pub.readContract({
    address: c.OpenToken,
    abi: openTokenAbi,
    functionName: "balanceOf",
    args: [c.RewardDistributor],
  });
  assert.equal(distributorBalance, 0n, "everything drawn was claimed");
});

test("a slashing proposal executed concurrently (sweeper + two POST …/execute) slashes once", async () => {
  if (storyError) throw storyError;
  assert.ok(result.datanetId);
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

test("governance changes the fee split (propose, vote, queue, execute); the story runs again on the used chain and its epoch settles by the new split to the wei", async () => {
  if (storyError) throw storyError;
  const c = p.platform.addresses.contracts;
  const { chainId } = p.platform.addresses;
  const pub = createChainPublicClient({ rpcUrl: p.platform.rpcUrl, chainId });
  const readSplit = () =>
    pub.readContract({ address: c.RewardDistributor, abi: rewardDistributorAbi, functionName: "feeSplit" });
  const before = await readSplit();
  const fmt = (f: typeof before) =>
    `${f.treasuryBps}/${f.validatorsBps}/${f.modelOwnerBps}/${f.contributorsBps}`;
  // A split the e2e has not used yet, so the change is visible whichever split the chain started with.
  const next =
    before.treasuryBps === 500
      ? { treasuryBps: 1_000, validatorsBps: 1_000, modelOwnerBps: 3_000, contributorsBps: 5_000 }
      : { treasuryBps: 500, validatorsBps: 1_500, modelOwnerBps: 2_500, contributorsBps: 5_500 };
  // The full cycle through OpenGovernor and OpenTimelock, the production path (not the dev admin's
  // shortcut): the deployer holds the OPEN (and its delegated votes) in the dev profile; the chain's clock
  // is moved past the voting delay, the voting period and the timelock delay.
  const holder = createChainWalletClient({
    rpcUrl: p.platform.rpcUrl,
    chainId,
    privateKey: localAccounts().deployer.privateKey,
  });
  const { proposalId, executed } = await passProposal({
    ctx: { publicClient: pub, governor: c.OpenGovernor },
    proposer: holder,
    voters: [holder],
    proposal: {
      calls: [
        {
          address: c.RewardDistributor,
          abi: rewardDistributorAbi,
          functionName: "setFeeSplit",
          args: [next],
        },
      ],
      description: `e2e: fee split ${next.treasuryBps}/${next.validatorsBps}/${next.modelOwnerBps}/${next.contributorsBps}`,
    },
    advanceTime: (s) => p.chain.increaseTime(s),
  });
  assert.equal(
    await pub.readContract({
      address: c.OpenGovernor,
      abi: openGovernorAbi,
      functionName: "state",
      args: [proposalId],
    }),
    ProposalState.Executed,
  );
  const setEvents = parseEventLogs({
    abi: rewardDistributorAbi,
    logs: executed.logs,
    eventName: "FeeSplitSet",
  });
  assert.equal(setEvents.length, 1, "the executed proposal set the split");
  assert.deepEqual(await readSplit(), next);

  const again: string[] = [];
  const second = await runStory(p.platform, { runId: "e2e-again", log: (l) => again.push(l) });
  const failed = second.checks.filter((c) => !c.ok);
  assert.deepEqual(failed, [], again.join("\n"));
  assert.deepEqual(second.skipped, []);
  assert.ok(second.checks.length > 30);
  assert.ok(second.contributorEarnings.length > 0, "contributors earned again");
  process.stdout.write(
    `governance: proposal ${proposalId} executed, fee split ${fmt(before)} -> ${fmt(next)}\n${again.join("\n")}\n`,
  );
  // The story checked every journal against the chain's split, to the wei; here: that split is the
  // proposal's, every settlement of this run recorded it, and those of the first run kept the old one.
  const asBps = (f: typeof next) => ({
    treasury: f.treasuryBps,
    validators: f.validatorsBps,
    modelOwner: f.modelOwnerBps,
    contributors: f.contributorsBps,
  });
  assert.deepEqual(second.feeSplitBps, asBps(next));
  const splitOf = async (ids: string[]) =>
    (
      await p.database.db.$queryRawUnsafe<{ bps: string }[]>(
        `SELECT concat_ws('/', split_bps->>'treasury', split_bps->>'validators', split_bps->>'modelOwner', split_bps->>'contributors') AS bps
           FROM settlements WHERE inference_id::text = ANY($1::text[])`,
        ids,
      )
    ).map((r) => r.bps);
  const secondIds = second.inferences.map((i) => i.id);
  assert.deepEqual(
    await splitOf(secondIds),
    secondIds.map(() => fmt(next)),
  );
  const firstIds = result.inferences.map((i) => i.id);
  assert.deepEqual(
    await splitOf(firstIds),
    firstIds.map(() => fmt(before)),
  );
  // The epoch that carried this run's fees was posted and claimed: the claims equal the new journals.
  assert.ok(second.epochId !== null && second.epochId > (result.epochId ?? 0), "a later epoch");
  assert.equal(
    second.claims.reduce((t, x) => t + x.amountWei, 0n),
    second.totalFeesWei + (second.fineTune?.feeWei ?? 0n),
    "claims of the second run = its fees (inferences and training)",
  );
});

test("neither the story nor this test can enqueue a platform job (the data path does it all)", () => {
  for (const file of ["lib/story.ts", "e2e.test.ts", "demo.ts"]) {
    const text = readFileSync(new URL(file, import.meta.url), "utf8");
    assert.doesNotMatch(text, /from "@openledger\/queue"|\.enqueue\(|queue\.add\(/, file);
  }
});
