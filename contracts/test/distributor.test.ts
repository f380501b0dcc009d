import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  buildEarningsTree,
  type EarningsEntry,
  earningsLeafHash,
  epochRootDigest,
  GUARDIAN_ROLE,
  StakeRole,
  ZERO_SUBJECT,
} from "@openledger/chain";
import { type Address, getAddress, type Hex, hashDomain, keccak256, toHex } from "viem";
import {
  addr,
  DAY,
  expectRevert,
  fundSettled,
  increaseTime,
  loadFixture,
  OPEN,
  type Platform,
  platformFixture,
  signEpoch,
} from "./helpers.ts";

const HOUR = 3600n;
const ZERO32: Hex = `0x${"00".repeat(32)}`;

async function treeFor(p: Platform, epoch: bigint, entries: EarningsEntry[]) {
  const chainId = await p.publicClient.getChainId();
  return buildEarningsTree({ chainId, distributor: p.addresses.contracts.RewardDistributor, epoch, entries });
}

/** Epoch 1: bob 300, carol 200 (total 500), funded by alice's charged deposit of 1000. */
async function epochOne(p: Platform) {
  await fundSettled(p, p.alice, 1_000n * OPEN, keccak256(toHex("b1")));
  const tree = await treeFor(p, 1n, [
    { account: addr(p.bob), cumulativeAmount: 300n * OPEN },
    { account: addr(p.carol), cumulativeAmount: 200n * OPEN },
  ]);
  const sigs = await signEpoch(p, [p.validators[0]!, p.validators[1]!], {
    epoch: 1n,
    root: tree.root,
    cumulativeTotal: tree.cumulativeTotal,
  });
  await p.distributor.write.postEpoch([1n, tree.root, tree.cumulativeTotal, sigs]);
  return tree;
}

async function post(
  p: Platform,
  epoch: bigint,
  root: Hex,
  total: bigint,
  signers = p.validators.slice(0, 2),
) {
  const sigs = await signEpoch(p, signers, { epoch, root, cumulativeTotal: total });
  return p.distributor.write.postEpoch([epoch, root, total, sigs]);
}

describe("RewardDistributor: epochs and claims", () => {
  it("posts a quorum-signed root, draws the epoch total from escrow, pays claims after activation", async () => {
    const p = await loadFixture(platformFixture);
    const tree = await epochOne(p);
    const d = p.distributor;
    assert.equal(await p.token.read.balanceOf([d.address]), 500n * OPEN);
    assert.equal(await p.escrow.read.settledUndrawn(), 500n * OPEN);
    assert.equal(await d.read.latestEpoch(), 1n);
    const e = await d.read.getEpoch([1n]);
    assert.equal(e.root, tree.root);
    assert.equal(e.cumulativeTotal, 500n * OPEN);
    assert.equal((await d.getEvents.EpochPosted()).at(-1)?.args.drawn, 500n * OPEN);
    assert.equal(await d.read.isEpochActive([1n]), false);

    const claim = tree.claimFor(addr(p.bob))!;
    await expectRevert(
      d.write.claim([1n, claim.account, claim.cumulativeAmount, claim.proof]),
      "EpochNotActive",
    );
    await increaseTime(HOUR);
    assert.equal(await d.read.isEpochActive([1n]), true);
    // Anyone may relay a claim; the tokens always go to the account.
    const relayer = await p.at("RewardDistributor", p.dave);
    const before = await p.token.read.balanceOf([addr(p.bob)]);
    await relayer.write.claim([1n, claim.account, claim.cumulativeAmount, claim.proof]);
    assert.equal(await p.token.read.balanceOf([addr(p.bob)]), before + 300n * OPEN);
    assert.equal(await d.read.claimed([addr(p.bob)]), 300n * OPEN);
    assert.equal(await p.token.read.balanceOf([d.address]), 200n * OPEN);
    assert.equal((await d.getEvents.Claimed()).at(-1)?.args.amount, 300n * OPEN);
    await expectRevert(
      d.write.claim([1n, claim.account, claim.cumulativeAmount, claim.proof]),
      "NothingToClaim",
      [300n * OPEN, 300n * OPEN],
    );

    // Epoch 2 is cumulative: bob 450 (150 new), carol 200, dave 100 => total 750, draws 250 more.
    const tree2 = await treeFor(p, 2n, [
      { account: addr(p.bob), cumulativeAmount: 450n * OPEN },
      { account: addr(p.carol), cumulativeAmount: 200n * OPEN },
      { account: addr(p.dave), cumulativeAmount: 100n * OPEN },
    ]);
    await post(p, 2n, tree2.root, tree2.cumulativeTotal, [p.validators[1]!, p.validators[2]!]);
    assert.equal(await p.escrow.read.settledUndrawn(), 250n * OPEN);
    await increaseTime(HOUR);
    const c2 = tree2.claimFor(addr(p.bob))!;
    await d.write.claim([2n, c2.account, c2.cumulativeAmount, c2.proof]);
    assert.equal(await d.read.claimed([addr(p.bob)]), 450n * OPEN);
    // carol can still claim from the older active epoch.
    const c1 = tree.claimFor(addr(p.carol))!;
    await d.write.claim([1n, c1.account, c1.cumulativeAmount, c1.proof]);
    const c3 = tree2.claimFor(addr(p.carol))!;
    await expectRevert(d.write.claim([2n, c3.account, c3.cumulativeAmount, c3.proof]), "NothingToClaim");
    // balance >= what is still owed (dave 100)
    assert.equal(await p.token.read.balanceOf([d.address]), 100n * OPEN);
  });

  it("rejects bad claims: unknown epoch, wrong amount or proof, amount above the epoch total", async () => {
    const p = await loadFixture(platformFixture);
    const tree = await epochOne(p);
    await increaseTime(HOUR);
    const d = p.distributor;
    const c = tree.claimFor(addr(p.bob))!;
    await expectRevert(d.write.claim([2n, c.account, c.cumulativeAmount, c.proof]), "UnknownEpoch", [2n]);
    await expectRevert(d.write.claim([1n, c.account, c.cumulativeAmount + 1n, c.proof]), "InvalidProof");
    await expectRevert(d.write.claim([1n, addr(p.carol), c.cumulativeAmount, c.proof]), "InvalidProof");
    await expectRevert(d.write.claim([1n, c.account, c.cumulativeAmount, []]), "InvalidProof");
    await expectRevert(d.write.claim([1n, c.account, 501n * OPEN, c.proof]), "AmountExceedsEpochTotal");
  });

  it("accepts proofs from a larger tree built by @openledger/chain for every sampled recipient", async () => {
    const p = await loadFixture(platformFixture);
    const entries: EarningsEntry[] = [];
    for (let i = 1; i <= 300; i++) {
      const account = getAddress(`0x${(0xabc000n + BigInt(i)).toString(16).padStart(40, "0")}`);
      entries.push({ account, cumulativeAmount: BigInt(i) * 10n ** 15n });
    }
    const tree = await treeFor(p, 1n, entries);
    await fundSettled(p, p.alice, tree.cumulativeTotal, keccak256(toHex("big")));
    await post(p, 1n, tree.root, tree.cumulativeTotal);
    await increaseTime(HOUR);
    for (const i of [0, 1, 2, 57, 128, 255, 299]) {
      const c = tree.claimFor(entries[i]!.account)!;
      await p.distributor.write.claim([1n, c.account, c.cumulativeAmount, c.proof]);
      assert.equal(await p.token.read.balanceOf([c.account]), c.cumulativeAmount);
    }
  });

  it("claimMany relays a batch, skips accounts with nothing left, and rejects a bad proof", async () => {
    const p = await loadFixture(platformFixture);
    const tree = await epochOne(p);
    const d = p.distributor;
    const bob = tree.claimFor(addr(p.bob))!;
    const carol = tree.claimFor(addr(p.carol))!;
    const req = (c: typeof bob) => ({
      account: c.account,
      cumulativeAmount: c.cumulativeAmount,
      proof: c.proof,
    });
    await expectRevert(d.write.claimMany([1n, [req(bob)]]), "EpochNotActive");
    await increaseTime(HOUR);
    // bob claims on his own first; the relayed batch must still go through for carol.
    await d.write.claim([1n, bob.account, bob.cumulativeAmount, bob.proof]);
    const relayer = await p.at("RewardDistributor", p.dave);
    await expectRevert(
      relayer.write.claimMany([
        1n,
        [req(carol), { ...req(bob), cumulativeAmount: bob.cumulativeAmount + 1n }],
      ]),
      "InvalidProof",
    );
    await relayer.write.claimMany([1n, [req(bob), req(carol)]]);
    assert.equal(await d.read.claimed([addr(p.carol)]), 200n * OPEN);
    assert.equal(await d.read.claimed([addr(p.bob)]), 300n * OPEN);
    assert.equal(await p.token.read.balanceOf([d.address]), 0n);
    await expectRevert(relayer.write.claimMany([2n, [req(carol)]]), "UnknownEpoch");
    await (await p.at("RewardDistributor", p.guardian)).write.pause();
    await expectRevert(relayer.write.claimMany([1n, [req(carol)]]), "EnforcedPause");
  });

  it("views agree with the off-chain helpers (domain, digest, leaf)", async () => {
    const p = await loadFixture(platformFixture);
    const d = p.distributor;
    const chainId = await p.publicClient.getChainId();
    const distributor = p.addresses.contracts.RewardDistributor;
    assert.equal(
      await d.read.domainSeparator(),
      hashDomain({
        domain: {
          name: "OpenLedger RewardDistributor",
          version: "1",
          chainId: BigInt(chainId),
          verifyingContract: distributor,
        },
        types: {
          EIP712Domain: [
            { name: "name", type: "string" },
            { name: "version", type: "string" },
            { name: "chainId", type: "uint256" },
            { name: "verifyingContract", type: "address" },
          ],
        },
      }),
    );
    const root = keccak256(toHex("r"));
    assert.equal(
      await d.read.epochDigest([3n, root, 77n]),
      epochRootDigest(chainId, distributor, { epoch: 3n, root, cumulativeTotal: 77n }),
    );
    assert.equal(
      await d.read.leafHash([3n, addr(p.bob), 77n]),
      earningsLeafHash(chainId, distributor, 3n, addr(p.bob), 77n),
    );
  });
});

describe("RewardDistributor: quorum", () => {
  it("rejects short, unsorted, duplicated, non-validator and understaked signature sets", async () => {
    const p = await loadFixture(platformFixture);
    await fundSettled(p, p.alice, 1_000n * OPEN, keccak256(toHex("b1")));
    const d = p.distributor;
    const root = keccak256(toHex("root"));
    const msg = { epoch: 1n, root, cumulativeTotal: 10n };
    const [v1, v2, v3] = p.validators as [typeof p.alice, typeof p.alice, typeof p.alice];
    const one = await signEpoch(p, [v1], msg);
    await expectRevert(d.write.postEpoch([1n, root, 10n, one]), "InsufficientSignatures", [1n, 2n]);
    const two = await signEpoch(p, [v1, v2], msg);
    await expectRevert(d.write.postEpoch([1n, root, 10n, [two[1]!, two[0]!]]), "SignersNotSorted");
    await expectRevert(d.write.postEpoch([1n, root, 10n, [two[0]!, two[0]!]]), "SignersNotSorted");
    const outsider = await signEpoch(p, [v1, p.bob], msg);
    await expectRevert(d.write.postEpoch([1n, root, 10n, outsider]), "NotValidator", [addr(p.bob)]);
    // A signature over a different message (replayed onto another root) recovers some other address.
    const other = await signEpoch(p, [v1, v2], { ...msg, root: keccak256(toHex("other")) });
    await expectRevert(d.write.postEpoch([1n, root, 10n, other]), "NotValidator");
    // Truncated signature.
    await expectRevert(
      d.write.postEpoch([1n, root, 10n, [two[0]!, `0x${"11".repeat(64)}`]]),
      "ECDSAInvalidSignatureLength",
    );
    // A validator slashed below the minimum stake loses its vote (there is no switch to turn the check off).
    const slasher = await p.at("Staking", p.operator);
    await slasher.write.slash([addr(v3), StakeRole.Validator, ZERO_SUBJECT, 1n, ZERO32]);
    const withV3 = await signEpoch(p, [v1, v3], msg);
    await expectRevert(d.write.postEpoch([1n, root, 10n, withV3]), "ValidatorInactive", [addr(v3)]);
    await d.write.postEpoch([1n, root, 10n, two]);
    // Replaying the same post is impossible: epoch numbers only move forward.
    await expectRevert(d.write.postEpoch([1n, root, 10n, two]), "UnexpectedEpoch", [2n, 1n]);
    // Epoch-1 signatures cannot authorize epoch 2.
    await expectRevert(d.write.postEpoch([2n, root, 10n, two]), "NotValidator");
  });

  it("signatures for another distributor (or chain) do not verify here", async () => {
    const p = await loadFixture(platformFixture);
    await fundSettled(p, p.alice, 10n, keccak256(toHex("b1")));
    const root = keccak256(toHex("root"));
    const foreign = await signEpoch(
      p,
      p.validators.slice(0, 2),
      { epoch: 1n, root, cumulativeTotal: 10n },
      "0x000000000000000000000000000000000000dEaD" as Address,
    );
    await expectRevert(p.distributor.write.postEpoch([1n, root, 10n, foreign]), "NotValidator");
  });

  it("the quorum is a fraction (>= 2/3) of the ACTIVE validators: admitted by governance and staked", async () => {
    const p = await loadFixture(platformFixture);
    await fundSettled(p, p.alice, 1_000n * OPEN, keccak256(toHex("b1")));
    const d = p.distributor;
    assert.deepEqual([await d.read.quorumNumerator(), await d.read.quorumDenominator()], [2, 3]);
    assert.equal(await d.read.requiredSignatures(), 2n, "ceil(2/3 of 3)");
    // Three more validators admitted: carol and dave staked, bob not (admitted, but not active).
    const stake = await p.staking.read.minStake([StakeRole.Validator]);
    await p.token.write.approve([p.addresses.contracts.Staking, 2n * stake]);
    for (const w of [p.carol, p.dave]) {
      await p.staking.write.stakeFor([addr(w), StakeRole.Validator, ZERO_SUBJECT, stake]);
    }
    for (const w of [p.bob, p.carol, p.dave]) await p.admin("RewardDistributor", "addValidator", [addr(w)]);
    assert.equal((await d.read.validators()).length, 6);
    assert.deepEqual(
      (await d.read.activeValidators()).map((a) => getAddress(a)),
      [...p.validators.map(addr), addr(p.carol), addr(p.dave)],
    );
    assert.equal(await d.read.isActiveValidator([addr(p.bob)]), false);
    assert.equal(await d.read.requiredSignatures(), 4n, "ceil(2/3 of 5 active)");
    const root = keccak256(toHex("q"));
    await expectRevert(post(p, 1n, root, 10n, [...p.validators]), "InsufficientSignatures", [3n, 4n]);
    await expectRevert(post(p, 1n, root, 10n, [...p.validators, p.bob]), "ValidatorInactive", [addr(p.bob)]);
    await post(p, 1n, root, 10n, [...p.validators, p.carol]);
    // A validator that unbonds stops counting at once: 4 active -> 3 needed.
    const asDave = await p.at("Staking", p.dave);
    await asDave.write.unbond([StakeRole.Validator, ZERO_SUBJECT, stake]);
    assert.equal(await d.read.requiredSignatures(), 3n);
    await post(p, 2n, root, 20n, [p.validators[0]!, p.validators[1]!, p.carol]);
    // Governance may raise the fraction and an absolute minimum; never go below 2/3.
    await expectRevert(p.admin("RewardDistributor", "setQuorum", [1, 2, 1]), "InvalidQuorum", [1n, 2n, 1n]);
    await expectRevert(p.admin("RewardDistributor", "setQuorum", [66, 100, 1]), "InvalidQuorum");
    await expectRevert(p.admin("RewardDistributor", "setQuorum", [4, 3, 1]), "InvalidQuorum");
    await expectRevert(p.admin("RewardDistributor", "setQuorum", [2, 3, 0]), "InvalidQuorum");
    await p.admin("RewardDistributor", "setQuorum", [3, 4, 4]);
    assert.equal(await d.read.requiredSignatures(), 4n, "max(ceil(3/4 of 4), 4)");
    await p.admin("RewardDistributor", "setQuorum", [1, 1, 1]);
    assert.equal(await d.read.requiredSignatures(), 4n, "unanimity of the 4 active");
    assert.deepEqual((await d.getEvents.QuorumSet()).at(-1)?.args, {
      numerator: 1,
      denominator: 1,
      minSignatures: 1,
    });
    // No active validator: nothing can be posted.
    for (const v of [...p.validators, p.carol, p.dave, p.bob]) {
      await p.admin("RewardDistributor", "removeValidator", [addr(v)]);
    }
    assert.equal(await d.read.requiredSignatures(), 0n);
    await expectRevert(post(p, 3n, root, 20n), "NoActiveValidators");
  });

  it("rejects zero roots, decreasing totals and unfunded totals", async () => {
    const p = await loadFixture(platformFixture);
    await fundSettled(p, p.alice, 100n, keccak256(toHex("b1")));
    await expectRevert(post(p, 1n, ZERO32, 1n), "ZeroRoot");
    await expectRevert(post(p, 2n, keccak256(toHex("r")), 1n), "UnexpectedEpoch", [1n, 2n]);
    // The epoch total can never exceed what settlement charged into the escrow.
    await expectRevert(post(p, 1n, keccak256(toHex("r")), 101n), "ExceedsSettled", [100n, 101n]);
    await post(p, 1n, keccak256(toHex("r")), 60n);
    await expectRevert(post(p, 2n, keccak256(toHex("r2")), 59n), "CumulativeTotalDecreased", [60n, 59n]);
    // Same total is fine (nothing new earned): draws nothing.
    await post(p, 2n, keccak256(toHex("r2")), 60n);
    assert.equal(await p.escrow.read.settledUndrawn(), 40n);
    // Lowered below a *revoked* root's total is fine: the revoked root never counted.
    await post(p, 3n, keccak256(toHex("r3")), 90n);
    await (await p.at("RewardDistributor", p.guardian)).write.revokeEpoch([3n]);
    await post(p, 4n, keccak256(toHex("r4")), 70n);
    await expectRevert(post(p, 5n, keccak256(toHex("r5")), 69n), "CumulativeTotalDecreased", [70n, 69n]);
  });
});

describe("RewardDistributor: guardian, pause, admin", () => {
  it("a guardian revokes a pending root; its draw goes back to the escrow", async () => {
    const p = await loadFixture(platformFixture);
    const tree = await epochOne(p);
    const d = p.distributor;
    const asBob = await p.at("RewardDistributor", p.bob);
    await expectRevert(asBob.write.revokeEpoch([1n]), "AccessControlUnauthorizedAccount", [
      addr(p.bob),
      GUARDIAN_ROLE,
    ]);
    const guardian = await p.at("RewardDistributor", p.guardian);
    await expectRevert(guardian.write.revokeEpoch([0n]), "NotLatestValidEpoch");
    await guardian.write.revokeEpoch([1n]);
    assert.equal((await d.getEvents.EpochRevoked()).at(-1)?.args.returnedToEscrow, 500n * OPEN);
    assert.equal(await p.token.read.balanceOf([d.address]), 0n);
    assert.equal(await p.escrow.read.settledUndrawn(), 1_000n * OPEN);
    assert.equal(await d.read.lastValidEpoch(), 0n);
    await expectRevert(guardian.write.revokeEpoch([1n]), "NotLatestValidEpoch", [1n, 0n]);
    await increaseTime(HOUR);
    const c = tree.claimFor(addr(p.bob))!;
    await expectRevert(d.write.claim([1n, c.account, c.cumulativeAmount, c.proof]), "EpochIsRevoked", [1n]);
    assert.equal(await d.read.isEpochActive([1n]), false);
    // The next post is epoch 2, measured against the last valid total (0).
    await post(p, 2n, keccak256(toHex("fixed")), 400n * OPEN);
    assert.equal(await p.escrow.read.settledUndrawn(), 600n * OPEN);
    // Newest first: with epochs 2 and 3 pending, 2 cannot be revoked before 3.
    await post(p, 3n, keccak256(toHex("three")), 450n * OPEN);
    await expectRevert(guardian.write.revokeEpoch([2n]), "NotLatestValidEpoch", [2n, 3n]);
    await guardian.write.revokeEpoch([3n]);
    assert.equal(await d.read.lastValidEpoch(), 2n);
    assert.equal(await p.escrow.read.settledUndrawn(), 600n * OPEN);
    await increaseTime(HOUR);
    await expectRevert(guardian.write.revokeEpoch([2n]), "EpochAlreadyActive", [2n]);
  });

  it("pause stops posting and claiming; guardian pauses, admin unpauses", async () => {
    const p = await loadFixture(platformFixture);
    const tree = await epochOne(p);
    await increaseTime(HOUR);
    const guardian = await p.at("RewardDistributor", p.guardian);
    const asBob = await p.at("RewardDistributor", p.bob);
    await expectRevert(asBob.write.pause(), "AccessControlUnauthorizedAccount");
    await guardian.write.pause();
    assert.equal(await p.distributor.read.paused(), true);
    const c = tree.claimFor(addr(p.bob))!;
    await expectRevert(asBob.write.claim([1n, c.account, c.cumulativeAmount, c.proof]), "EnforcedPause");
    await expectRevert(post(p, 2n, keccak256(toHex("r")), 500n * OPEN), "EnforcedPause");
    await expectRevert(guardian.write.unpause(), "AccessControlUnauthorizedAccount");
    await p.admin("RewardDistributor", "unpause");
    await asBob.write.claim([1n, c.account, c.cumulativeAmount, c.proof]);
    assert.equal(await p.distributor.read.claimed([addr(p.bob)]), 300n * OPEN);
  });

  it("manages the validator set, delays and the fee split with validation, admin only", async () => {
    const p = await loadFixture(platformFixture);
    const d = p.distributor;
    const asBob = await p.at("RewardDistributor", p.bob);
    assert.deepEqual(
      (await d.read.validators()).map((a) => getAddress(a)),
      p.validators.map(addr),
    );
    const split = { treasuryBps: 1_000, validatorsBps: 1_000, modelOwnerBps: 3_000, contributorsBps: 5_000 };
    await expectRevert(asBob.write.addValidator([addr(p.bob)]), "AccessControlUnauthorizedAccount");
    await expectRevert(asBob.write.removeValidator([addr(p.bob)]), "AccessControlUnauthorizedAccount");
    await expectRevert(asBob.write.setQuorum([1, 1, 1]), "AccessControlUnauthorizedAccount");
    await expectRevert(asBob.write.setActivationDelay([1n]), "AccessControlUnauthorizedAccount");
    await expectRevert(asBob.write.setFeeSplit([split]), "AccessControlUnauthorizedAccount");
    // Not even the dev admin's own key: every admin power sits with the timelock.
    await expectRevert(d.write.addValidator([addr(p.bob)]), "AccessControlUnauthorizedAccount");
    const admin = (fn: string, args: readonly unknown[]) => p.admin("RewardDistributor", fn, args);
    await expectRevert(admin("addValidator", ["0x0000000000000000000000000000000000000000"]), "ZeroAddress");
    await expectRevert(admin("addValidator", [addr(p.validators[0]!)]), "ValidatorAlreadyRegistered");
    await expectRevert(admin("removeValidator", [addr(p.bob)]), "ValidatorNotRegistered");
    await admin("removeValidator", [addr(p.validators[2]!)]);
    assert.equal(await d.read.isValidator([addr(p.validators[2]!)]), false);
    await admin("addValidator", [addr(p.bob)]);
    assert.equal(await d.read.isValidator([addr(p.bob)]), true);
    assert.equal((await d.getEvents.ValidatorAdded()).at(-1)?.args.validator, addr(p.bob));
    await expectRevert(admin("setActivationDelay", [31n * DAY]), "ActivationDelayOutOfRange");
    await admin("setActivationDelay", [0n]);
    assert.equal(await d.read.activationDelay(), 0n);
    // The fee split: basis points summing to 10,000, treasury <= 25 %, contributors >= 25 %.
    assert.deepEqual(await d.read.feeSplit(), split);
    await expectRevert(admin("setFeeSplit", [{ ...split, contributorsBps: 4_999 }]), "InvalidFeeSplit");
    await expectRevert(
      admin("setFeeSplit", [{ ...split, treasuryBps: 2_600, contributorsBps: 3_400 }]),
      "InvalidFeeSplit",
    );
    await expectRevert(
      admin("setFeeSplit", [{ ...split, modelOwnerBps: 5_600, contributorsBps: 2_400 }]),
      "InvalidFeeSplit",
    );
    const next = { treasuryBps: 500, validatorsBps: 1_500, modelOwnerBps: 2_500, contributorsBps: 5_500 };
    await admin("setFeeSplit", [next]);
    assert.deepEqual(await d.read.feeSplit(), next);
    assert.deepEqual((await d.getEvents.FeeSplitSet()).at(-1)?.args, next);
    // The validator set is bounded so postEpoch stays cheap.
    for (let i = 0; i < 61; i++) {
      await admin("addValidator", [getAddress(`0x${(0x1000n + BigInt(i)).toString(16).padStart(40, "0")}`)]);
    }
    await expectRevert(admin("addValidator", [addr(p.carol)]), "TooManyValidators");
  });
});
