// The production profile under attack: who holds which role (derived from the chain's own role events), the
// admin drain from issue #13 (every step refused), a leaked settlement key (bounded by daily caps), governance
// changing a parameter through the timelock, proposal staking, floors governance cannot cross, and what the
// guardian can and cannot do.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  ACCESS_CONTROLLED_CONTRACTS,
  auditRoles,
  buildEarningsTree,
  type ChainPublicClient,
  type ChainWalletClient,
  cancelProposal,
  castVote,
  DEFAULT_ADMIN_ROLE,
  eoaViolations,
  executeProposal,
  GUARDIAN_ROLE,
  governorSettings,
  openGovernorAbi,
  PRODUCTION_FLOORS,
  type Proposal,
  ProposalState,
  passProposal,
  propose,
  queueProposal,
  ROLE_CATALOG,
  rewardDistributorAbi,
  SETTLER_ROLE,
  StakeRole,
  subjectOf,
} from "@openledger/chain";
import { type Abi, encodeFunctionData, keccak256, parseEventLogs, toHex, zeroHash } from "viem";
import {
  addr,
  advance,
  DAY,
  expectRevert,
  hre,
  loadFixture,
  OPEN,
  type ProductionPlatform,
  platformFixture,
  productionFixture,
  signEpoch,
  type Wallet,
} from "./helpers.ts";

const wallet = (w: Wallet) => w as unknown as ChainWalletClient;
const NEW_SPLIT = { treasuryBps: 500, validatorsBps: 1_500, modelOwnerBps: 2_500, contributorsBps: 5_500 };

function feeSplitProposal(p: ProductionPlatform, description = "Fee split 5/15/25/55"): Proposal {
  return {
    calls: [
      {
        address: p.addresses.contracts.RewardDistributor,
        abi: rewardDistributorAbi,
        functionName: "setFeeSplit",
        args: [NEW_SPLIT],
      },
    ],
    description,
  };
}

async function deposit(p: ProductionPlatform, who: Wallet, amount: bigint) {
  await (await p.at("OpenToken", who)).write.approve([p.addresses.contracts.InferenceEscrow, amount]);
  await (await p.at("InferenceEscrow", who)).write.deposit([amount]);
}

/** The chain as the timelock itself sees it: what any executed proposal could do, at most. */
async function asTimelock(p: ProductionPlatform) {
  const timelock = p.addresses.contracts.OpenTimelock;
  await hre.network.provider.request({ method: "hardhat_impersonateAccount", params: [timelock] });
  await hre.network.provider.request({
    method: "hardhat_setBalance",
    params: [timelock, "0x56BC75E2D63100000"],
  });
  return (await hre.viem.getWalletClient(timelock)) as Wallet;
}

/** A proposal calling one of the governor's own (onlyGovernance) functions. */
function governorProposal(
  p: ProductionPlatform,
  functionName: string,
  args: readonly unknown[],
  description: string,
): Proposal {
  return {
    calls: [{ address: p.addresses.contracts.OpenGovernor, abi: openGovernorAbi, functionName, args }],
    description,
  };
}

/** dao proposes, votes for, queues, and waits out the timelock: the proposal is ready to execute. */
async function passedAndReady(p: ProductionPlatform, proposal: Proposal): Promise<bigint> {
  const id = await propose(p.governance, wallet(p.dao), proposal);
  await advance(DAY + 1n);
  await castVote(p.governance, wallet(p.dao), id, 1);
  await advance(5n * DAY + 1n);
  await queueProposal(p.governance, wallet(p.dao), proposal);
  await advance(2n * DAY + 1n);
  return id;
}

async function state(p: ProductionPlatform, id: bigint) {
  return p.governor.read.state([id]);
}

describe("production profile: who holds which role", () => {
  it("every admin role is the timelock's; no EOA holds a role that moves funds or grants roles", async () => {
    const p = await loadFixture(productionFixture);
    const holders = await auditRoles(p.publicClient as ChainPublicClient, p.addresses);
    assert.deepEqual(eoaViolations(holders), []);
    const c = p.addresses.contracts;
    const of = (contract: string, role: string) =>
      holders
        .filter((h) => h.contract === contract && h.role === role)
        .map((h) => `${h.holder}:${h.holderKind}`);
    for (const contract of ACCESS_CONTROLLED_CONTRACTS) {
      assert.deepEqual(of(contract, "DEFAULT_ADMIN_ROLE"), [`${c.OpenTimelock}:timelock`], contract);
    }
    for (const role of ["PROPOSER_ROLE", "EXECUTOR_ROLE", "CANCELLER_ROLE"]) {
      assert.deepEqual(of("OpenTimelock", role), [`${c.OpenGovernor}:governor`], role);
    }
    assert.deepEqual(of("OpenGovernor", "GOVERNANCE"), [`${c.OpenTimelock}:timelock`]);
    assert.deepEqual(of("OpenGovernor", "PROPOSAL_GUARDIAN"), [`${addr(p.guardian)}:guardian`]);
    assert.deepEqual(of("InferenceEscrow", "SETTLER_ROLE"), [`${addr(p.settlement)}:eoa`]);
    assert.deepEqual(of("InferenceEscrow", "DISTRIBUTOR_ROLE"), [`${c.RewardDistributor}:contract`]);
    assert.deepEqual(of("Staking", "SLASHER_ROLE"), [], "nobody slashes at once in production");
    assert.deepEqual(
      [...of("Staking", "SLASH_PROPOSER_ROLE")].sort(),
      [`${addr(p.operator)}:eoa`, `${c.ValidatorDisputes}:contract`].sort(),
      "the operator, and the disputes contract (a quorum of validators' signatures)",
    );
    for (const contract of ["Staking", "InferenceEscrow", "RewardDistributor"]) {
      assert.deepEqual(of(contract, "GUARDIAN_ROLE"), [`${addr(p.guardian)}:guardian`], contract);
    }
    assert.equal(of("RewardDistributor", "VALIDATOR").length, 3);
    // Every role the chain reports is one the catalog describes (a new role must be classified first).
    for (const h of holders)
      assert.ok(ROLE_CATALOG[h.contract][h.role], `${h.contract} ${h.role} is not catalogued`);
    // The deployer held the timelock's proposer/executor roles while wiring; the events show them revoked.
    assert.ok(
      holders.every((h) => h.holder !== addr(p.deployer)),
      "the deployer holds nothing",
    );
    assert.equal(await p.timelock.read.getMinDelay(), BigInt(PRODUCTION_FLOORS.timelockDelayFloor));
  });

  it("the same audit flags the dev profile's dev admin (an EOA proposer of the timelock)", async () => {
    const p = await loadFixture(platformFixture);
    const violations = eoaViolations(await auditRoles(p.publicClient as ChainPublicClient, p.addresses));
    assert.ok(
      violations.some(
        (v) => v.contract === "OpenTimelock" && v.role === "PROPOSER_ROLE" && v.holder === addr(p.deployer),
      ),
      JSON.stringify(violations),
    );
    assert.ok(violations.some((v) => v.contract === "Staking" && v.role === "SLASHER_ROLE"));
  });
});

describe("production profile: attacks", () => {
  it("the admin drain of issue #13 fails at every step, for every key that deployed or operates the platform", async () => {
    const p = await loadFixture(productionFixture);
    await deposit(p, p.alice, 50_000n * OPEN);
    const c = p.addresses.contracts;
    for (const attacker of [p.deployer, p.operator, p.settlement, p.guardian, p.validators[0]!]) {
      const me = addr(attacker);
      const escrow = await p.at("InferenceEscrow", attacker);
      const distributor = await p.at("RewardDistributor", attacker);
      const staking = await p.at("Staking", attacker);
      const timelock = await p.at("OpenTimelock", attacker);
      // 1. grant itself SETTLER_ROLE
      await expectRevert(escrow.write.grantRole([SETTLER_ROLE, me]), "AccessControlUnauthorizedAccount");
      // 2. add itself as a validator, 3. lower the quorum, 4. set the activation delay to 0
      await expectRevert(distributor.write.addValidator([me]), "AccessControlUnauthorizedAccount");
      await expectRevert(distributor.write.setQuorum([2, 3, 1]), "AccessControlUnauthorizedAccount");
      await expectRevert(distributor.write.setActivationDelay([0n]), "AccessControlUnauthorizedAccount");
      await expectRevert(staking.write.setTreasury([me]), "AccessControlUnauthorizedAccount");
      await expectRevert(
        staking.write.slash([addr(p.validators[1]!), StakeRole.Validator, zeroHash, 1n, zeroHash]),
        "AccessControlUnauthorizedAccount",
      );
      // ...nor through the timelock that holds those powers: only the governor proposes.
      const payload = encodeFunctionData({
        abi: rewardDistributorAbi,
        functionName: "addValidator",
        args: [me],
      });
      await expectRevert(
        timelock.write.schedule([c.RewardDistributor, 0n, payload, zeroHash, zeroHash, 2n * DAY]),
        "AccessControlUnauthorizedAccount",
      );
    }
    // 5. "unlink staking": the function is gone; the old selector reverts.
    assert.ok(!(rewardDistributorAbi as Abi).some((i) => i.type === "function" && i.name === "setStaking"));
    await assert.rejects(
      p.deployer.sendTransaction({
        to: c.RewardDistributor,
        data: encodeFunctionData({
          abi: [
            {
              type: "function",
              name: "setStaking",
              inputs: [{ type: "address", name: "s" }],
              outputs: [],
              stateMutability: "nonpayable",
            },
          ],
          args: [addr(p.deployer)],
        }),
      }),
    );
    // 6. charge the consumer's whole escrow with the settlement key: skipped; the daily cap is all it gets.
    const settler = await p.at("InferenceEscrow", p.settlement);
    await settler.write.charge([keccak256(toHex("drain")), [addr(p.alice)], [50_000n * OPEN]]);
    assert.equal(await p.escrow.read.balanceOf([addr(p.alice)]), 50_000n * OPEN);
    // 7. post a root paying itself: its own signature is no validator's; one validator key is not a quorum.
    await settler.write.charge([keccak256(toHex("cap")), [addr(p.alice)], [1_000n * OPEN]]);
    const tree = buildEarningsTree({
      chainId: await p.publicClient.getChainId(),
      distributor: c.RewardDistributor,
      epoch: 1n,
      entries: [{ account: addr(p.deployer), cumulativeAmount: 1_000n * OPEN }],
    });
    const message = { epoch: 1n, root: tree.root, cumulativeTotal: tree.cumulativeTotal };
    const post = async (signers: Wallet[]) =>
      p.distributor.write.postEpoch([
        1n,
        tree.root,
        tree.cumulativeTotal,
        await signEpoch(p, signers, message),
      ]);
    await expectRevert(post([p.deployer]), "InsufficientSignatures", [1n, 2n]);
    await expectRevert(post([p.deployer, p.validators[0]!]), "NotValidator");
    await expectRevert(post([p.validators[0]!]), "InsufficientSignatures", [1n, 2n]);
    // Even a root two validators sign waits the activation delay, and the guardian revokes it meanwhile.
    await post([p.validators[0]!, p.validators[1]!]);
    const claimAttempt = (await p.at("RewardDistributor", p.deployer)).write.claim([
      1n,
      addr(p.deployer),
      1_000n * OPEN,
      tree.claimFor(addr(p.deployer))!.proof,
    ]);
    await expectRevert(claimAttempt, "EpochNotActive");
    await (await p.at("RewardDistributor", p.guardian)).write.revokeEpoch([1n]);
    await advance(2 * 3600);
    await expectRevert(
      (await p.at("RewardDistributor", p.deployer)).write.claim([
        1n,
        addr(p.deployer),
        1_000n * OPEN,
        tree.claimFor(addr(p.deployer))!.proof,
      ]),
      "EpochIsRevoked",
    );
    assert.equal(await p.token.read.balanceOf([addr(p.deployer)]), 0n, "the deployer got nothing");
  });

  it("a leaked settlement key takes at most the consumer's daily cap per day", async () => {
    const p = await loadFixture(productionFixture);
    await deposit(p, p.alice, 50_000n * OPEN);
    await deposit(p, p.bob, 50_000n * OPEN);
    await (await p.at("InferenceEscrow", p.bob)).write.setDailyCap([100n * OPEN]); // effective after the delay
    await advance(DAY);
    const settler = await p.at("InferenceEscrow", p.settlement);
    assert.equal(await p.escrow.read.defaultDailyCap(), 1_000n * OPEN);
    let day = 0;
    const taken = { alice: 0n, bob: 0n };
    for (; day < 3; day++) {
      // The attacker asks for everything, then for the cap, then for one wei more.
      for (const [who, cap] of [
        [p.alice, 1_000n * OPEN],
        [p.bob, 100n * OPEN],
      ] as const) {
        const id = (s: string) => keccak256(toHex(`${day}-${addr(who)}-${s}`));
        await settler.write.charge([id("all"), [addr(who)], [50_000n * OPEN]]);
        await settler.write.charge([id("cap"), [addr(who)], [cap]]);
        await settler.write.charge([id("wei"), [addr(who)], [1n]]);
      }
      await advance(DAY);
    }
    taken.alice = 50_000n * OPEN - (await p.escrow.read.balanceOf([addr(p.alice)]));
    taken.bob = 50_000n * OPEN - (await p.escrow.read.balanceOf([addr(p.bob)]));
    assert.equal(taken.alice, 3n * 1_000n * OPEN, "3 days x the default cap");
    assert.equal(taken.bob, 3n * 100n * OPEN, "3 days x bob's own cap");
    // And none of it left the escrow: it waits in the settled pool for a validator-quorum root.
    assert.equal(await p.escrow.read.settledUndrawn(), taken.alice + taken.bob);
    assert.equal(await p.token.read.balanceOf([addr(p.settlement)]), 0n);
  });
});

describe("production profile: governance", () => {
  it("a proposal changes the fee split through the timelock; the deposit comes back once executed", async () => {
    const p = await loadFixture(productionFixture);
    const before = await p.token.read.balanceOf([addr(p.dao)]);
    const proposal = feeSplitProposal(p);
    const s = await governorSettings(p.governance);
    assert.deepEqual(
      [s.votingDelay, s.votingPeriod, s.timelockDelay],
      [BigInt(DAY), 5n * BigInt(DAY), 2n * BigInt(DAY)],
    );
    const id = await propose(p.governance, wallet(p.dao), proposal);
    assert.equal(await p.token.read.balanceOf([addr(p.dao)]), before - 10_000n * OPEN, "deposit locked");
    await expectRevert(p.governor.write.settleDeposit([id]), "DepositStillLocked");
    await advance(DAY + 1n);
    await castVote(p.governance, wallet(p.dao), id, 1);
    await advance(5n * DAY + 1n);
    await queueProposal(p.governance, wallet(p.dao), proposal);
    assert.equal(await state(p, id), ProposalState.Queued);
    // The timelock's delay: nothing happens before it.
    await expectRevert(
      executeProposal(p.governance, wallet(p.dao), proposal),
      "TimelockUnexpectedOperationState",
    );
    await advance(2n * DAY + 1n);
    await executeProposal(p.governance, wallet(p.dao), proposal);
    assert.deepEqual(await p.distributor.read.feeSplit(), NEW_SPLIT);
    await p.governor.write.settleDeposit([id]);
    assert.equal(await p.token.read.balanceOf([addr(p.dao)]), before, "deposit returned");
    await expectRevert(p.governor.write.settleDeposit([id]), "NoDeposit");
  });

  it("deposits: defeated with quorum -> returned; without quorum or guardian-cancelled -> treasury; self-cancelled -> returned", async () => {
    const p = await loadFixture(productionFixture);
    const treasury = p.addresses.roles.treasury;
    assert.equal(treasury, p.addresses.contracts.OpenTimelock, "production treasury = the timelock");
    // carol holds 1,000,000 OPEN: above the 100,000 proposal threshold, far below the 4 % quorum.
    await (await p.at("OpenToken", p.carol)).write.delegate([addr(p.carol)]);
    await advance(1);
    const settle = async (id: bigint) => {
      const hash = await p.governor.write.settleDeposit([id]);
      const { logs } = await p.publicClient.waitForTransactionReceipt({ hash });
      const [ev] = parseEventLogs({ abi: openGovernorAbi, logs });
      if (ev?.eventName === "DepositReturned" && ev.args.proposalId === id) return "returned";
      if (ev?.eventName === "DepositForfeited" && ev.args.proposalId === id) return ev.args.treasury;
      return "none";
    };
    const defeatedWithQuorum = feeSplitProposal(p, "voted down");
    const noQuorum = feeSplitProposal(p, "nobody cares");
    const abusive = feeSplitProposal(p, "abusive");
    const withdrawn = feeSplitProposal(p, "withdrawn by its proposer");
    const a = await propose(p.governance, wallet(p.dao), defeatedWithQuorum);
    const b = await propose(p.governance, wallet(p.carol), noQuorum);
    const g = await propose(p.governance, wallet(p.carol), abusive);
    const w = await propose(p.governance, wallet(p.carol), withdrawn);
    await cancelProposal(p.governance, wallet(p.carol), withdrawn); // pending: the proposer may withdraw it
    assert.equal(await settle(w), "returned");
    await advance(DAY + 1n);
    await castVote(p.governance, wallet(p.dao), a, 0);
    const guardian = wallet(p.guardian);
    await cancelProposal(p.governance, guardian, abusive); // active: the guardian vetoes it
    assert.equal(await state(p, g), ProposalState.Canceled);
    await advance(5n * DAY + 1n);
    assert.equal(await state(p, a), ProposalState.Defeated);
    assert.equal(await state(p, b), ProposalState.Defeated);
    // The guardian cannot take a deposit the rules return: a defeated proposal is not cancellable by it.
    await expectRevert(cancelProposal(p.governance, guardian, defeatedWithQuorum), "GuardianCannotCancel", [
      a,
      ProposalState.Defeated,
    ]);
    const treasuryBefore = await p.token.read.balanceOf([treasury]);
    assert.equal(await settle(a), "returned");
    assert.equal(await settle(b), treasury);
    assert.equal(await settle(g), treasury);
    assert.equal(await p.token.read.balanceOf([treasury]), treasuryBefore + 20_000n * OPEN);
    assert.equal(await p.token.read.balanceOf([addr(p.carol)]), 1_000_000n * OPEN - 20_000n * OPEN);
  });

  it("floors: governance itself cannot go below them", async () => {
    const p = await loadFixture(productionFixture);
    const c = p.addresses.contracts;
    const tl = await asTimelock(p);
    const d = await hre.viem.getContractAt("RewardDistributor", c.RewardDistributor, {
      client: { wallet: tl },
    });
    const e = await hre.viem.getContractAt("InferenceEscrow", c.InferenceEscrow, { client: { wallet: tl } });
    const s = await hre.viem.getContractAt("Staking", c.Staking, { client: { wallet: tl } });
    const t = await hre.viem.getContractAt("OpenTimelock", c.OpenTimelock, { client: { wallet: tl } });
    await expectRevert(d.write.setActivationDelay([3599n]), "ActivationDelayOutOfRange", [
      3599n,
      3600n,
      30n * BigInt(DAY),
    ]);
    await expectRevert(d.write.setQuorum([3, 5, 2]), "InvalidQuorum");
    await expectRevert(
      d.write.setFeeSplit([{ ...NEW_SPLIT, contributorsBps: 2_000, modelOwnerBps: 6_000 }]),
      "InvalidFeeSplit",
    );
    await expectRevert(e.write.setDefaultDailyCap([10_000n * OPEN + 1n]), "DefaultCapTooHigh");
    await expectRevert(s.write.setSlashDisputeWindow([BigInt(DAY) - 1n]), "SlashDisputeWindowOutOfRange");
    await expectRevert(t.write.updateDelay([2n * BigInt(DAY) - 1n]), "DelayBelowFloor");
    await hre.network.provider.request({
      method: "hardhat_stopImpersonatingAccount",
      params: [c.OpenTimelock],
    });
    // The governor's own settings change only through a proposal; below their floor the execution reverts,
    // the proposal stays queued, and its deposit is released 14 days past its ETA.
    const lower = governorProposal(p, "setVotingPeriod", [3600], "one-hour votes");
    const id = await passedAndReady(p, lower);
    await expectRevert(executeProposal(p.governance, wallet(p.dao), lower), "VotingPeriodBelowFloor");
    assert.equal(await p.governor.read.votingPeriod(), 5n * BigInt(DAY));
    await expectRevert(p.governor.write.settleDeposit([id]), "DepositStillLocked");
    await advance(14n * BigInt(DAY));
    await p.governor.write.settleDeposit([id]);
    assert.equal((await p.governor.getEvents.DepositReturned({ proposalId: id })).length, 1);
    // The quorum fraction too.
    const quorum = governorProposal(p, "updateQuorumNumerator", [1n], "1 % quorum");
    await passedAndReady(p, quorum);
    await expectRevert(executeProposal(p.governance, wallet(p.dao), quorum), "QuorumBelowFloor", [1n, 4n]);
  });

  it("the guardian can pause, revoke a pending root, veto a slash and cancel a proposal — and nothing else", async () => {
    const p = await loadFixture(productionFixture);
    const c = p.addresses.contracts;
    const g = p.guardian;
    const gBalance = await p.token.read.balanceOf([addr(g)]);
    const distributor = await p.at("RewardDistributor", g);
    const escrow = await p.at("InferenceEscrow", g);
    const staking = await p.at("Staking", g);
    const timelock = await p.at("OpenTimelock", g);
    // What it cannot do: grant roles, unpause, change parameters, charge, schedule, move anything.
    // (DEFAULT_ADMIN_ROLE is never granted directly: AccessControlDefaultAdminRules' two-step handover only.)
    await expectRevert(
      distributor.write.grantRole([DEFAULT_ADMIN_ROLE, addr(g)]),
      "AccessControlEnforcedDefaultAdminRules",
    );
    await expectRevert(
      distributor.write.beginDefaultAdminTransfer([addr(g)]),
      "AccessControlUnauthorizedAccount",
    );
    await expectRevert(
      distributor.write.grantRole([GUARDIAN_ROLE, addr(p.bob)]),
      "AccessControlUnauthorizedAccount",
    );
    await expectRevert(escrow.write.grantRole([SETTLER_ROLE, addr(g)]), "AccessControlUnauthorizedAccount");
    await expectRevert(distributor.write.setFeeSplit([NEW_SPLIT]), "AccessControlUnauthorizedAccount");
    await expectRevert(
      escrow.write.charge([zeroHash, [addr(p.alice)], [1n]]),
      "AccessControlUnauthorizedAccount",
    );
    await expectRevert(escrow.write.setDefaultDailyCap([0n]), "AccessControlUnauthorizedAccount");
    await expectRevert(staking.write.setTreasury([addr(g)]), "AccessControlUnauthorizedAccount");
    await expectRevert(
      timelock.write.schedule([c.InferenceEscrow, 0n, "0x", zeroHash, zeroHash, 2n * BigInt(DAY)]),
      "AccessControlUnauthorizedAccount",
    );
    // What it can: revoke a pending root (not an active one), pause posting/claims and charging, veto a slash.
    await deposit(p, p.alice, 2_000n * OPEN);
    await (await p.at("InferenceEscrow", p.settlement)).write.charge([
      keccak256(toHex("b")),
      [addr(p.alice)],
      [500n * OPEN],
    ]);
    const root = keccak256(toHex("r1"));
    const sigs = await signEpoch(p, p.validators.slice(0, 2), { epoch: 1n, root, cumulativeTotal: 100n });
    await p.distributor.write.postEpoch([1n, root, 100n, sigs]);
    await advance(3600);
    await expectRevert(distributor.write.revokeEpoch([1n]), "EpochAlreadyActive", [1n]);
    const sigs2 = await signEpoch(p, p.validators.slice(0, 2), { epoch: 2n, root, cumulativeTotal: 200n });
    await p.distributor.write.postEpoch([2n, root, 200n, sigs2]);
    await distributor.write.revokeEpoch([2n]);
    await distributor.write.pause();
    await expectRevert(distributor.write.unpause(), "AccessControlUnauthorizedAccount");
    await escrow.write.pause();
    await expectRevert(escrow.write.unpause(), "AccessControlUnauthorizedAccount");
    await (await p.at("OpenToken", p.bob)).write.approve([c.Staking, 1_000n * OPEN]);
    await (await p.at("Staking", p.bob)).write.stake([StakeRole.Contributor, subjectOf(1n), 1_000n * OPEN]);
    await (await p.at("Staking", p.operator)).write.proposeSlash([
      addr(p.bob),
      StakeRole.Contributor,
      subjectOf(1n),
      100n * OPEN,
      zeroHash,
      addr(p.operator),
    ]);
    await staking.write.vetoSlash([1n]);
    // Cancelling a live proposal was shown above; it never received a token.
    assert.equal(await p.token.read.balanceOf([addr(g)]), gBalance);
  });

  it("passProposal drives the full cycle (the e2e's helper)", async () => {
    const p = await loadFixture(productionFixture);
    const { proposalId } = await passProposal({
      ctx: p.governance,
      proposer: wallet(p.dao),
      voters: [wallet(p.dao)],
      proposal: feeSplitProposal(p, "via passProposal"),
      advanceTime: (s) => advance(s),
    });
    assert.equal(await state(p, proposalId), ProposalState.Executed);
    assert.deepEqual(await p.distributor.read.feeSplit(), NEW_SPLIT);
  });
});
