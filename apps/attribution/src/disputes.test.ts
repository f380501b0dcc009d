// Validators file disputes by themselves, against a real chain (ValidatorDisputes, Staking), real Postgres and
// real validator processes (each with its own Hardhat key). A validator that signs a result other than the
// quorum's (tampered bytes, signed with its real key) is disputed by the others' processes: each signs the
// EIP-712 AttributionDispute, and once `requiredSignatures()` of them did, one files `fileDispute` — a slash
// proposal then exists on Staking with the contract's evidence hash. Negative cases: fewer signatures than
// required file nothing; a validator whose own result is not the quorum's signs nothing; a restart files no
// second transaction; a refused filing stays pending and is filed once the chain accepts it; the quorum and
// the dissenters are the validator set's at the inference's epoch, not today's; each own result is read
// until nothing about it can change (a dissent revealed late is still disputed), then never again.
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import {
  createChainPublicClient,
  inferenceIdToBytes32,
  openTokenAbi,
  readValidatorQuorum,
  rewardDistributorAbi,
  SLASH_PROPOSER_ROLE,
  StakeRole,
  stakingAbi,
  validatorDisputesAbi,
  ZERO_SUBJECT,
} from "@openledger/chain";
import {
  commitValidatorResult,
  type LocalChain,
  revealValidatorResult,
  sendAs,
  startLocalChain,
} from "@openledger/chain/testing";
import { TINY_MODEL_ENV } from "@openledger/config";
import { testEnvironment, waitFor } from "@openledger/service-kit/testing";
import { type Abi, type Address, encodeAbiParameters, type Hex, keccak256, toBytes } from "viem";
import { attributionConfig, buildAttribution } from "./app.ts";
import {
  disputeDuty,
  disputeIntentKey,
  disputeProposalKey,
  signDisputes,
  validatorSetKey,
} from "./lib/disputes.ts";
import { handToSettlement, quorumResult } from "./lib/settlement-trigger.ts";

type App = Awaited<ReturnType<typeof buildAttribution>>;
const MODEL = "dispute-test-model";
const lower = (a: string) => a.toLowerCase();

describe("validators file disputes by themselves", () => {
  let chain: LocalChain;
  let env: Awaited<ReturnType<typeof testEnvironment>>;
  let dir: string;
  let addressesFile: string;
  let db: App["db"];
  let holder: App;
  const open: App[] = [];
  const pub = () => createChainPublicClient({ rpcUrl: chain.rpcUrl, chainId: chain.chainId });
  /** Hardhat keys of the validators: #5-7, then users #8-10 once they joined (last test). */
  const keys = () => [...chain.accounts.validators, ...chain.accounts.users.slice(0, 3)];

  /** A validator process (its own key); RUN_WORKERS: its background duties run (disputes among them). */
  async function validator(i: number, extra: Record<string, string> = {}): Promise<App> {
    const app = await buildAttribution(
      attributionConfig({
        ...TINY_MODEL_ENV,
        ...env.env,
        CHAIN_RPC_URL: chain.rpcUrl,
        CHAIN_ADDRESSES_FILE: addressesFile,
        ATTRIBUTION_BLOB_DIR: dir,
        ATTRIBUTION_SERVICE_TOKEN: "dispute-test-token",
        VALIDATOR_PRIVATE_KEYS: keys()[i]!.privateKey,
        ATTRIBUTION_VALIDATOR_SCAN_MS: "0",
        ATTRIBUTION_EPOCH_ATTEST_INTERVAL_MS: "200",
        ...extra,
      }),
    );
    open.push(app);
    return app;
  }
  const close = async (...apps: App[]) => {
    for (const a of apps) {
      await a.close();
      open.splice(open.indexOf(a), 1);
    }
  };

  /**
   * An inference whose validators `agree` reveal the quorum's bytes, and each of `others` [validator, contributor]
   * bytes naming that contributor instead (tampered, signed with its real key); all commit before any reveals.
   * The validators in `withhold` commit and reveal later (`reveal(i)`).
   */
  async function inference(agree: number[], others: [number, string][] = [], withhold: number[] = []) {
    const inf = await db.inference.create({
      data: {
        modelId: MODEL,
        accountAddress: lower(chain.accounts.users[5]!.address),
        prompt: "p",
        output: "o",
        inputTokens: 10,
        outputTokens: 5,
      },
    });
    const canonical = (who: string) =>
      JSON.stringify({ inferenceId: inf.id, weights: [{ contributorId: who, ppm: 1_000_000 }] });
    const right = canonical(lower(chain.accounts.users[4]!.address));
    const rows = (i: number, json: string) => ({
      privateKey: keys()[i]!.privateKey,
      chainId: chain.chainId,
      verifyingContract: chain.addresses!.contracts.RewardDistributor,
      inferenceId: inf.id,
      canonicalJson: json,
      weights: (JSON.parse(json).weights as { contributorId: string; ppm: number }[]).map((w) => ({
        contributorAddress: w.contributorId,
        weightPpm: w.ppm,
      })),
    });
    // The tampered bytes name another contributor; each is signed with the validator's real key.
    const all: [number, string][] = [
      ...agree.map((i): [number, string] => [i, right]),
      ...others.map(([i, who]): [number, string] => [i, canonical(lower(who))]),
    ];
    for (const [i, json] of all) await commitValidatorResult(db, rows(i, json));
    for (const [i, json] of all) if (!withhold.includes(i)) await revealValidatorResult(db, rows(i, json));
    const hashOf = (who: string) => keccak256(toBytes(canonical(lower(who))));
    const reveal = async (v: number) => {
      for (const [i, json] of all) if (i === v) await revealValidatorResult(db, rows(i, json));
    };
    return { id: inf.id, right: keccak256(toBytes(right)) as Hex, hashOf, reveal };
  }

  const proposalOf = (accused: string, id: string) =>
    pub().readContract({
      address: chain.addresses!.contracts.ValidatorDisputes,
      abi: validatorDisputesAbi,
      functionName: "proposalOf",
      args: [disputeProposalKey(accused, id)],
    });
  const signersOf = async (id: string) =>
    (
      await db.$queryRawUnsafe<{ signer: string }[]>(
        `SELECT signer FROM attribution_dispute_signatures WHERE inference_id = $1::uuid ORDER BY signer`,
        id,
      )
    ).map((r) => r.signer);
  const intentsOf = (accused: string, id: string) =>
    db.$queryRawUnsafe<{ status: string; error: string | null }[]>(
      `SELECT status::text AS status, error FROM chain_intents WHERE key = $1`,
      disputeIntentKey(accused, id),
    );
  const proposals = () =>
    pub().readContract({
      address: chain.addresses!.contracts.Staking,
      abi: stakingAbi,
      functionName: "slashProposalCount",
    });

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "attr-disputes-"));
    addressesFile = path.join(dir, "addresses.json");
    [chain, env] = await Promise.all([
      startLocalChain({ writeAddresses: addressesFile }),
      testEnvironment("attribution_disputes"),
    ]);
    // A process without background work: the test's database handle.
    holder = await validator(0, { RUN_WORKERS: "false" });
    db = holder.db;
    await db.model.create({
      data: {
        id: MODEL,
        kind: "adapter",
        ownerAddress: lower(chain.accounts.users[3]!.address),
        contentHash: "ab".repeat(32),
        priceInPer1kWei: "1000",
        priceOutPer1kWei: "2000",
      },
    });
  });

  after(async () => {
    for (const a of [...open].reverse()) await a.close();
    await env?.cleanup();
    await chain?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** Stakes Staking's minimum Validator stake from `privateKey` (admission is governance's: addValidator). */
  async function stakeValidatorMinimum(privateKey: Hex) {
    const staking = chain.addresses!.contracts.Staking;
    const min = await pub().readContract({
      address: staking,
      abi: stakingAbi,
      functionName: "minStake",
      args: [StakeRole.Validator],
    });
    await sendAs(chain, privateKey, {
      address: chain.addresses!.contracts.OpenToken,
      abi: openTokenAbi as Abi,
      functionName: "approve",
      args: [staking, min],
    });
    await sendAs(chain, privateKey, {
      address: staking,
      abi: stakingAbi as Abi,
      functionName: "stake",
      args: [StakeRole.Validator, ZERO_SUBJECT, min],
    });
  }

  const v = (i: number) => lower(keys()[i]!.address);
  /** Older than DISPUTE_SETTLE_MS: only what the inference's rows say keeps a result open. */
  const ageResults = (id: string) =>
    db.$executeRawUnsafe(
      `UPDATE attribution_results SET created_at = created_at - interval '2 minutes' WHERE inference_id = $1::uuid`,
      id,
    );
  /** When #5's dispute pass marked its own result of `id` (null: open). */
  const checkedAtOf = async (id: string) =>
    (
      await db.$queryRawUnsafe<{ at: Date | null }[]>(
        `SELECT dispute_checked_at AS at FROM attribution_results WHERE inference_id = $1::uuid AND validator_address = $2`,
        id,
        v(0),
      )
    )[0]!.at;
  const ELSEWHERE = () => chain.accounts.users[2]!.address;
  /** The accused's own AttributionResult signature, as stored with its reveal. */
  const evidenceOf = async (accused: string, id: string) =>
    (
      await db.$queryRawUnsafe<{ signature: Hex }[]>(
        `SELECT signature FROM attribution_results WHERE inference_id = $1::uuid AND validator_address = $2`,
        id,
        accused,
      )
    )[0]!.signature;

  test("a validator that signed a result other than the quorum's is disputed by the others' processes: a slash proposal with the contract's evidence hash", async () => {
    const inf = await inference([0, 1], [[2, ELSEWHERE()]]);
    const before = await proposals();
    // Three validator processes, each with its own key; their background duties do the rest.
    const procs = [await validator(0), await validator(1), await validator(2)];
    const id = await waitFor("the dispute against #7 on chain", async () => {
      const p = await proposalOf(v(2), inf.id);
      return p > 0n ? p : null;
    });
    const proposal = await pub().readContract({
      address: chain.addresses!.contracts.Staking,
      abi: stakingAbi,
      functionName: "getSlashProposal",
      args: [id],
    });
    assert.equal(lower(proposal.account), v(2));
    assert.equal(proposal.role, StakeRole.Validator);
    const wrong = inf.hashOf(ELSEWHERE());
    assert.equal(
      proposal.evidenceHash,
      keccak256(
        encodeAbiParameters(
          [{ type: "bytes32" }, { type: "bytes32" }, { type: "bytes32" }, { type: "bytes32" }],
          [inferenceIdToBytes32(inf.id), wrong, inf.right, keccak256(await evidenceOf(v(2), inf.id))],
        ),
      ),
      "the contract's evidence hash: the inference, both results and #7's signature over its bytes",
    );
    assert.ok([v(0), v(1)].includes(lower(proposal.reporter)), "filed by one of the disputing validators");
    assert.equal(await proposals(), before + 1n, "one proposal");
    // #7's own result is not the quorum's: it signed no dispute (against anyone).
    assert.deepEqual(await signersOf(inf.id), [v(0), v(1)].sort());
    assert.deepEqual(
      (await intentsOf(v(2), inf.id)).map((r) => r.status),
      ["confirmed"],
      "one filing",
    );
    await close(...procs);

    // Restarted processes: a pass signs and files nothing more; no second transaction.
    const restarted = [
      await validator(0, { RUN_WORKERS: "false" }),
      await validator(1, { RUN_WORKERS: "false" }),
    ];
    for (const r of restarted) assert.deepEqual(await disputeDuty(r)(), { signed: 0, filed: 0 });
    assert.equal(await proposals(), before + 1n, "no second proposal after a restart");
    assert.equal((await intentsOf(v(2), inf.id)).length, 1);
    await close(...restarted);
  });

  test("below requiredSignatures nothing is filed; a refused filing stays pending and is filed once the chain accepts it", async () => {
    const inf = await inference([0, 1], [[2, ELSEWHERE()]]);
    const before = await proposals();
    const need = await pub().readContract({
      address: chain.addresses!.contracts.RewardDistributor,
      abi: rewardDistributorAbi,
      functionName: "requiredSignatures",
    });
    assert.equal(need, 2n);
    // Only #5 is running: one signature of the two required.
    const first = await validator(0, { RUN_WORKERS: "false" });
    assert.deepEqual(await disputeDuty(first)(), { signed: 1, filed: 0 });
    assert.deepEqual(await disputeDuty(first)(), { signed: 0, filed: 0 });
    assert.deepEqual(await signersOf(inf.id), [v(0)]);
    assert.deepEqual(await intentsOf(v(2), inf.id), [], "nothing submitted below requiredSignatures");
    assert.equal(await proposalOf(v(2), inf.id), 0n);

    // The chain refuses the filing for now (ValidatorDisputes loses Staking's SLASH_PROPOSER_ROLE).
    const staking = { address: chain.addresses!.contracts.Staking, abi: stakingAbi as Abi };
    const role = [SLASH_PROPOSER_ROLE, chain.addresses!.contracts.ValidatorDisputes] as const;
    await chain.asAdmin([{ ...staking, functionName: "revokeRole", args: role }]);
    const second = await validator(1, { RUN_WORKERS: "false" });
    // No backoff here: the retry right after the chain accepts again is what this test is about.
    const noBackoff = { maxRefusals: 5, backoffMs: () => 0 };
    assert.deepEqual(await disputeDuty(second, noBackoff)(), { signed: 1, filed: 0 });
    const [pending] = await intentsOf(v(2), inf.id);
    assert.equal(pending?.status, "pending", "refused, kept");
    // Staking's AccessControlUnauthorizedAccount (0xe2517d3f; not in ValidatorDisputes' ABI).
    assert.match(pending?.error ?? "", /0xe2517d3f/);
    assert.equal(await proposalOf(v(2), inf.id), 0n);
    // Accepted again: the next pass (a restarted process) files it, once.
    await chain.asAdmin([{ ...staking, functionName: "grantRole", args: role }]);
    await close(second);
    const again = await validator(1, { RUN_WORKERS: "false" });
    assert.deepEqual(await disputeDuty(again, noBackoff)(), { signed: 0, filed: 1 });
    assert.ok((await proposalOf(v(2), inf.id)) > 0n);
    assert.equal(await proposals(), before + 1n);
    assert.deepEqual(await disputeDuty(first)(), { signed: 0, filed: 0 }, "#5 sees it filed");
    await close(first, again);
  });

  test("a filing the chain keeps refusing is backed off, then given up: not retried, counted in the metric", async () => {
    const inf = await inference([0, 1], [[2, ELSEWHERE()]]);
    const staking = { address: chain.addresses!.contracts.Staking, abi: stakingAbi as Abi };
    const role = [SLASH_PROPOSER_ROLE, chain.addresses!.contracts.ValidatorDisputes] as const;
    await chain.asAdmin([{ ...staking, functionName: "revokeRole", args: role }]);
    const first = await validator(0, { RUN_WORKERS: "false" });
    const second = await validator(1, { RUN_WORKERS: "false" });
    try {
      assert.deepEqual(await disputeDuty(first)(), { signed: 1, filed: 0 });
      const policy = { maxRefusals: 3, backoffMs: () => 3_600_000 };
      const duty = disputeDuty(second, policy);
      /** The group's refusal count, whether it is given up, and when its intent was last touched. */
      const state = async () => {
        const [row] = await db.$queryRawUnsafe<{ refusals: number; given_up: boolean; touched: Date }[]>(
          `SELECT max(s.refusals)::int AS refusals, bool_and(s.given_up_at IS NOT NULL) AS given_up,
                  (SELECT updated_at FROM chain_intents WHERE key = $3) AS touched
             FROM attribution_dispute_signatures s WHERE s.accused = $1 AND s.inference_id = $2::uuid`,
          v(2),
          inf.id,
          disputeIntentKey(v(2), inf.id),
        );
        return row!;
      };
      /** What the metric counted for this process, by outcome. */
      const counted = async () => {
        const m = await second.metrics.getSingleMetric("attribution_dispute_refusals_total")!.get();
        return Object.fromEntries(m.values.map((x) => [String(x.labels.outcome), x.value]));
      };
      /** The backoff is over (an hour, in the rows): the next pass may read the group. */
      const backoffOver = () =>
        db.$executeRawUnsafe(
          `UPDATE attribution_dispute_signatures SET retry_at = now() - interval '1 second'
            WHERE accused = $1 AND inference_id = $2::uuid`,
          v(2),
          inf.id,
        );

      assert.deepEqual(await duty(), { signed: 1, filed: 0 });
      const refused = await state();
      assert.equal(refused.refusals, 1);
      assert.equal(refused.given_up, false);
      // Within the backoff the group is not read: nothing submitted, nothing counted.
      assert.deepEqual(await duty(), { signed: 0, filed: 0 });
      assert.deepEqual(await state(), refused);
      assert.deepEqual(await counted(), { retry: 1 });

      await backoffOver();
      await duty();
      assert.equal((await state()).refusals, 2);
      await backoffOver();
      await duty();
      const givenUp = await state();
      assert.equal(givenUp.refusals, 3);
      assert.equal(givenUp.given_up, true);
      assert.deepEqual(await counted(), { retry: 2, given_up: 1 });

      // Given up: not read again, even past any retry time, even once the chain would accept it.
      await backoffOver();
      await chain.asAdmin([{ ...staking, functionName: "grantRole", args: role }]);
      assert.deepEqual(await duty(), { signed: 0, filed: 0 });
      assert.deepEqual(await disputeDuty(first, policy)(), { signed: 0, filed: 0 });
      assert.deepEqual(await state(), givenUp);
      assert.equal(await proposalOf(v(2), inf.id), 0n);
      assert.equal((await intentsOf(v(2), inf.id))[0]?.status, "pending");
    } finally {
      const restored = await pub().readContract({
        address: staking.address,
        abi: stakingAbi,
        functionName: "hasRole",
        args: role,
      });
      if (!restored) {
        await chain.asAdmin([{ ...staking, functionName: "grantRole", args: role }]);
      }
      await close(first, second);
    }
  });

  test("a validator whose own result is not the quorum's signs no dispute against another dissenter", async () => {
    // Two dissenters beside a quorum need six validators (the quorum is at least 2/3): users #8-10 join.
    for (const u of chain.accounts.users.slice(0, 3)) await stakeValidatorMinimum(u.privateKey);
    const distributor = {
      address: chain.addresses!.contracts.RewardDistributor,
      abi: rewardDistributorAbi as Abi,
    };
    await chain.asAdmin(
      [3, 4, 5].map((i) => ({
        ...distributor,
        functionName: "addValidator",
        args: [keys()[i]!.address as Address],
      })),
    );
    assert.equal(
      await pub().readContract({
        ...distributor,
        abi: rewardDistributorAbi,
        functionName: "requiredSignatures",
      }),
      4n,
    );
    // #5, #6, #8, #9 agree (the quorum); #7 and #10 each signed other bytes.
    const inf = await inference(
      [0, 1, 3, 4],
      [
        [2, ELSEWHERE()],
        [5, chain.accounts.users[5]!.address],
      ],
    );
    const dissenter = await validator(5, { RUN_WORKERS: "false" });
    assert.deepEqual(await disputeDuty(dissenter)(), { signed: 0, filed: 0 });
    const honest = await validator(0, { RUN_WORKERS: "false" });
    assert.deepEqual(await disputeDuty(honest)(), { signed: 2, filed: 0 }, "#5 disputes both dissenters");
    const rows = await db.$queryRawUnsafe<{ accused: string; signer: string }[]>(
      `SELECT accused, signer FROM attribution_dispute_signatures WHERE inference_id = $1::uuid ORDER BY accused`,
      inf.id,
    );
    assert.deepEqual(
      rows,
      [v(2), v(5)].sort().map((accused) => ({ accused, signer: v(0) })),
      "only #5 signed; #10 (own result not the quorum's) signed nothing against #7",
    );
    await close(dissenter, honest);
  });
  test("the quorum and the dissenters are counted at the inference's epoch: a validator removed or added later changes neither", async () => {
    // Runs after the test above: #5-#10 are active, requiredSignatures() is 4.
    const distributor = {
      address: chain.addresses!.contracts.RewardDistributor,
      abi: rewardDistributorAbi as Abi,
    };
    /** An epoch closes now: the inferences created after it are counted at this block's set. */
    const closeEpoch = async (id: number) =>
      db.$executeRawUnsafe(
        `INSERT INTO epochs (id, status, closed_at, closed_block) VALUES ($1, 'closed', now(), $2)`,
        id,
        await pub().getBlockNumber(),
      );
    await closeEpoch(1001);
    // #5, #6, #8, #9 agree; #7 signed other bytes, then leaves the set (the cheater's way out).
    const cheated = await inference([0, 1, 3, 4], [[2, ELSEWHERE()]]);
    await chain.asAdmin([{ ...distributor, functionName: "removeValidator", args: [keys()[2]!.address] }]);
    const signers = [0, 1, 3, 4];
    const apps = [];
    for (const i of signers) apps.push(await validator(i, { RUN_WORKERS: "false" }));
    for (const a of apps) await disputeDuty(a)();
    assert.deepEqual(
      (
        await db.$queryRawUnsafe<{ signer: string }[]>(
          `SELECT signer FROM attribution_dispute_signatures WHERE inference_id = $1::uuid AND accused = $2
            ORDER BY signer`,
          cheated.id,
          v(2),
        )
      ).map((r) => r.signer),
      signers.map(v).sort(),
      "#7 was active at the inference's epoch: its dissent counts although it left since",
    );
    assert.ok((await proposalOf(v(2), cheated.id)) > 0n, "filed: the four signers are active now");

    // #7 is not a validator at the next epoch; its result there is no validator's, even once it is back.
    await closeEpoch(1002);
    const outsider = await inference([0, 1, 3, 4], [[2, ELSEWHERE()]]);
    await chain.asAdmin([{ ...distributor, functionName: "addValidator", args: [keys()[2]!.address] }]);
    for (const a of apps) await disputeDuty(a)();
    assert.deepEqual(await signersOf(outsider.id), [], "#7 joined after the inference: nobody disputes it");
    assert.equal(await proposalOf(v(2), outsider.id), 0n);
    await close(...apps);
  });
  test("each own result is read until it can no longer change, then marked and not read again; a dissent revealed after an earlier pass is still disputed", async () => {
    // After the test above: #5-#10 are active, requiredSignatures() is 4; a new epoch pins that set.
    await db.$executeRawUnsafe(
      `INSERT INTO epochs (id, status, closed_at, closed_block) VALUES (1003, 'closed', now(), $1)`,
      await pub().getBlockNumber(),
    );
    // Everyone commits; #7 reveals (other bytes) only after #5's first pass, which already sees a quorum.
    const inf = await inference([0, 1, 3, 4], [[2, ELSEWHERE()]], [2]);
    const age = () => ageResults(inf.id);
    const checkedAt = () => checkedAtOf(inf.id);
    await age();
    const first = await validator(0, { RUN_WORKERS: "false" });
    await disputeDuty(first)();
    assert.equal(await checkedAt(), null, "#7 committed in time and has not revealed: still open");
    assert.deepEqual(await signersOf(inf.id), []);

    await inf.reveal(2);
    await age();
    await disputeDuty(first)();
    assert.deepEqual(await signersOf(inf.id), [v(0)], "the late dissent is disputed");
    assert.ok(await checkedAt(), "every commitment revealed, the epoch's set fixed: marked");

    // Marked: not read again. Were it re-read, the signature removed here would be signed again.
    await db.$executeRawUnsafe(
      `DELETE FROM attribution_dispute_signatures WHERE inference_id = $1::uuid`,
      inf.id,
    );
    await disputeDuty(first)();
    assert.deepEqual(await signersOf(inf.id), [], "a marked result is not read again");
    await close(first);
  });
  test("the hand-off to settlement counts at the inference's epoch too: validators admitted later do not hold it back", async () => {
    // After the tests above: #5-#10 are active, requiredSignatures() is 4.
    await db.$executeRawUnsafe(
      `INSERT INTO epochs (id, status, closed_at, closed_block) VALUES (1004, 'closed', now(), $1)`,
      await pub().getBlockNumber(),
    );
    const inf = await inference([0, 1, 3, 4]);
    // User #3 (the model owner) joins: seven validators, requiredSignatures() 5 — no quorum in today's set.
    const newcomer = chain.accounts.users[3]!;
    await stakeValidatorMinimum(newcomer.privateKey);
    const distributor = chain.addresses!.contracts.RewardDistributor;
    await chain.asAdmin([
      {
        address: distributor,
        abi: rewardDistributorAbi as Abi,
        functionName: "addValidator",
        args: [newcomer.address as Address],
      },
    ]);
    assert.equal(
      await pub().readContract({
        address: distributor,
        abi: rewardDistributorAbi,
        functionName: "requiredSignatures",
      }),
      5n,
    );
    const ctx = await holder.attribution.chain();
    const quorumAt = holder.attribution.quorumAt(ctx);
    assert.equal((await quorumResult(db, inf.id, quorumAt))?.resultHash, inf.right);
    assert.equal(
      await handToSettlement({ db, producer: holder.producer, quorumAt }, inf.id, "attributed"),
      true,
      "the four agreeing validators were a quorum at the inference's epoch: settlement is triggered",
    );
  });
  test("a group that cannot be filed at today's set is parked: not read again until a signature is added or the set changes", async () => {
    // After the test above: #5-#10 and user #3 are active, requiredSignatures() is 5; the inference counts at
    // epoch 1004 (#5-#10, 4 required), where #5, #6, #8, #9, #10 agree and #7 signed other bytes.
    const inf = await inference([0, 1, 3, 4, 5], [[2, ELSEWHERE()]]);
    const distributor = chain.addresses!.contracts.RewardDistributor;
    const setKey = async () => validatorSetKey(await readValidatorQuorum(pub(), distributor));
    const marks = () =>
      db.$queryRawUnsafe<{ signer: string; parked: string | null; filed: boolean }[]>(
        `SELECT signer, parked_set AS parked, filed_at IS NOT NULL AS filed FROM attribution_dispute_signatures
          WHERE inference_id = $1::uuid ORDER BY signer`,
        inf.id,
      );
    // #5, #6, #8 sign: three of the five signatures today's set requires.
    const apps = [];
    for (const i of [0, 1, 3]) {
      const a = await validator(i, { RUN_WORKERS: "false" });
      apps.push(a);
      assert.equal((await disputeDuty(a)()).filed, 0);
    }
    const parkedAt = await setKey();
    assert.deepEqual(
      await marks(),
      [0, 1, 3]
        .map(v)
        .sort()
        .map((signer) => ({ signer, parked: parkedAt, filed: false })),
      "read, not fileable at today's set: parked",
    );
    // #9 and #10 sign too, and their rows are marked as parked: were the group read again at the same set, its
    // five signatures would be filed.
    for (const i of [4, 5]) {
      const a = await validator(i, { RUN_WORKERS: "false" });
      apps.push(a);
      const ctx = await a.attribution.chain();
      const [identity] = await a.attribution.validators();
      await signDisputes(a.db, ctx, identity!, a.attribution.quorumAt(ctx), a.log);
    }
    assert.deepEqual(await signersOf(inf.id), [0, 1, 3, 4, 5].map(v).sort());
    await db.$executeRawUnsafe(
      `UPDATE attribution_dispute_signatures SET parked_set = $2 WHERE inference_id = $1::uuid`,
      inf.id,
      parkedAt,
    );
    assert.deepEqual(await disputeDuty(apps[0]!)(), { signed: 0, filed: 0 }, "a parked group is not read");
    assert.equal(await proposalOf(v(2), inf.id), 0n);

    // The set changes (user #3 leaves: six active, four required): the group is read again and filed.
    await chain.asAdmin([
      {
        address: distributor,
        abi: rewardDistributorAbi as Abi,
        functionName: "removeValidator",
        args: [chain.accounts.users[3]!.address as Address],
      },
    ]);
    assert.notEqual(await setKey(), parkedAt);
    assert.deepEqual(await disputeDuty(apps[0]!)(), { signed: 0, filed: 1 }, "re-opened by the set's change");
    assert.ok((await proposalOf(v(2), inf.id)) > 0n);
    assert.ok(
      (await marks()).every((m) => m.filed && m.parked === null),
      "filed: never read again",
    );
    for (const a of apps) assert.deepEqual(await disputeDuty(a)(), { signed: 0, filed: 0 });
    await close(...apps);
  });
  test("an inference created before any epoch closed is counted at the set now and its results are final once settlement settled it", async () => {
    // After the test above: #5-#10 are active, requiredSignatures() is 4.
    const inf = await inference([0, 1, 3, 4], [[2, ELSEWHERE()]]);
    // Before every recorded close (its epoch's block is null, for good), and older than DISPUTE_SETTLE_MS.
    await db.$executeRawUnsafe(
      `UPDATE inferences SET created_at = '2026-01-01T00:00:00Z' WHERE id = $1::uuid`,
      inf.id,
    );
    await ageResults(inf.id);
    const checkedAt = () => checkedAtOf(inf.id);
    const first = await validator(0, { RUN_WORKERS: "false" });
    await disputeDuty(first)();
    assert.deepEqual(await signersOf(inf.id), [v(0)], "counted at the set now: #7 is disputed");
    assert.equal(await checkedAt(), null, "not settled yet: open");
    await disputeDuty(first)();
    assert.equal(await checkedAt(), null);

    // Settlement settles it (its ledger transaction and settlement row, as settleBatch writes them).
    const tx = await db.ledgerTransaction.create({ data: { kind: "fee", externalKey: `fee:${inf.id}` } });
    await db.settlement.create({
      data: { inferenceId: inf.id, feeWei: "0", splitBps: {}, transactionId: tx.id },
    });
    await disputeDuty(first)();
    assert.ok(await checkedAt(), "settled: marked, not read again");
    await close(first);
  });
});
