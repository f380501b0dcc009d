import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { SLASHER_ROLE, StakeRole, subjectOf, ZERO_SUBJECT } from "@openledger/chain";
import { keccak256, toHex } from "viem";
import {
  addr,
  DAY,
  expectRevert,
  increaseTime,
  loadFixture,
  OPEN,
  type Platform,
  platformFixture,
} from "./helpers.ts";

const DATANET = subjectOf(7n);
const EVIDENCE = keccak256(toHex("duplicate rows 12..40"));

async function staked(p: Platform, amount = 500n * OPEN) {
  const token = await p.at("OpenToken", p.alice);
  const staking = await p.at("Staking", p.alice);
  await token.write.approve([staking.address, amount]);
  await staking.write.stake([StakeRole.Contributor, DATANET, amount]);
  return staking;
}

describe("Staking", () => {
  it("stakes by role and subject and exposes the views services check", async () => {
    const p = await loadFixture(platformFixture);
    const before = await p.staking.read.totalStaked();
    const staking = await staked(p);
    const pos = await staking.read.positionOf([addr(p.alice), StakeRole.Contributor, DATANET]);
    assert.equal(pos.active, 500n * OPEN);
    assert.equal(pos.unbonding, 0n);
    assert.equal(
      await staking.read.activeStake([addr(p.alice), StakeRole.Contributor, DATANET]),
      500n * OPEN,
    );
    assert.equal(await staking.read.meetsMinimum([addr(p.alice), StakeRole.Contributor, DATANET]), true);
    assert.equal(
      await staking.read.meetsMinimum([addr(p.alice), StakeRole.Contributor, subjectOf(8n)]),
      false,
    );
    assert.equal(await staking.read.meetsMinimum([addr(p.alice), StakeRole.Validator, ZERO_SUBJECT]), false);
    assert.equal(await staking.read.totalStaked(), before + 500n * OPEN);
    const events = await staking.getEvents.Staked();
    assert.equal(events.at(-1)?.args.amount, 500n * OPEN);
    // The deployment staked every validator at the validator minimum.
    for (const v of p.validators) {
      assert.equal(await staking.read.meetsMinimum([addr(v), StakeRole.Validator, ZERO_SUBJECT]), true);
    }
  });

  it("stakeFor credits the beneficiary with the caller's tokens", async () => {
    const p = await loadFixture(platformFixture);
    const token = await p.at("OpenToken", p.bob);
    const staking = await p.at("Staking", p.bob);
    await token.write.approve([staking.address, 200n * OPEN]);
    await staking.write.stakeFor([addr(p.carol), StakeRole.Contributor, DATANET, 200n * OPEN]);
    assert.equal(
      await staking.read.activeStake([addr(p.carol), StakeRole.Contributor, DATANET]),
      200n * OPEN,
    );
    assert.equal(await p.token.read.balanceOf([addr(p.bob)]), 999_800n * OPEN);
    await expectRevert(
      staking.write.stakeFor([
        "0x0000000000000000000000000000000000000000",
        StakeRole.Contributor,
        DATANET,
        1n,
      ]),
      "ZeroAddress",
    );
  });

  it("rejects zero amounts and stakes below the role minimum", async () => {
    const p = await loadFixture(platformFixture);
    const staking = await p.at("Staking", p.alice);
    await expectRevert(staking.write.stake([StakeRole.Contributor, DATANET, 0n]), "ZeroAmount");
    await expectRevert(
      staking.write.stake([StakeRole.Validator, ZERO_SUBJECT, 10n * OPEN]),
      "BelowMinimumStake",
      [10n * OPEN, 10_000n * OPEN],
    );
    await staked(p);
    await expectRevert(staking.write.unbond([StakeRole.Contributor, DATANET, 0n]), "ZeroAmount");
  });

  it("unbonds, refuses early withdrawal, withdraws after the unbonding period", async () => {
    const p = await loadFixture(platformFixture);
    const staking = await staked(p);
    await expectRevert(
      staking.write.unbond([StakeRole.Contributor, DATANET, 501n * OPEN]),
      "InsufficientStake",
    );
    // Leaving dust below the minimum is refused; all or enough must remain.
    await expectRevert(
      staking.write.unbond([StakeRole.Contributor, DATANET, 450n * OPEN]),
      "BelowMinimumStake",
    );
    await staking.write.unbond([StakeRole.Contributor, DATANET, 300n * OPEN]);
    const pos = await staking.read.positionOf([addr(p.alice), StakeRole.Contributor, DATANET]);
    assert.equal(pos.active, 200n * OPEN);
    assert.equal(pos.unbonding, 300n * OPEN);
    await expectRevert(staking.write.withdraw([StakeRole.Contributor, DATANET]), "UnbondingNotFinished");
    await increaseTime(7n * DAY);
    const balance = await p.token.read.balanceOf([addr(p.alice)]);
    await staking.write.withdraw([StakeRole.Contributor, DATANET]);
    assert.equal(await p.token.read.balanceOf([addr(p.alice)]), balance + 300n * OPEN);
    assert.equal((await staking.getEvents.Withdrawn()).at(-1)?.args.amount, 300n * OPEN);
    await expectRevert(staking.write.withdraw([StakeRole.Contributor, DATANET]), "NothingToWithdraw");
  });

  it("slashes active stake to the treasury (SLASHER_ROLE only)", async () => {
    const p = await loadFixture(platformFixture);
    await staked(p);
    const asAlice = await p.at("Staking", p.alice);
    await expectRevert(
      asAlice.write.slash([addr(p.alice), StakeRole.Contributor, DATANET, 1n, EVIDENCE]),
      "AccessControlUnauthorizedAccount",
      [addr(p.alice), SLASHER_ROLE],
    );
    const slasher = await p.at("Staking", p.operator);
    await expectRevert(
      slasher.write.slash([addr(p.alice), StakeRole.Contributor, DATANET, 0n, EVIDENCE]),
      "ZeroAmount",
    );
    await expectRevert(
      slasher.write.slash([addr(p.bob), StakeRole.Contributor, DATANET, 1n, EVIDENCE]),
      "NothingToSlash",
    );
    const treasuryBefore = await p.token.read.balanceOf([addr(p.treasury)]);
    const totalBefore = await p.staking.read.totalStaked();
    await slasher.write.slash([addr(p.alice), StakeRole.Contributor, DATANET, 120n * OPEN, EVIDENCE]);
    assert.equal(await p.token.read.balanceOf([addr(p.treasury)]), treasuryBefore + 120n * OPEN);
    assert.equal(
      await p.staking.read.activeStake([addr(p.alice), StakeRole.Contributor, DATANET]),
      380n * OPEN,
    );
    assert.equal(await p.staking.read.totalStaked(), totalBefore - 120n * OPEN);
    const ev = (await p.staking.getEvents.Slashed()).at(-1)!;
    assert.equal(ev.args.evidenceHash, EVIDENCE);
    assert.equal(ev.args.amount, 120n * OPEN);
  });

  it("reaches stake that is still unbonding, and caps at what exists", async () => {
    const p = await loadFixture(platformFixture);
    const staking = await staked(p);
    await staking.write.unbond([StakeRole.Contributor, DATANET, 500n * OPEN]);
    const slasher = await p.at("Staking", p.operator);
    await slasher.write.slash([addr(p.alice), StakeRole.Contributor, DATANET, 200n * OPEN, EVIDENCE]);
    let pos = await p.staking.read.positionOf([addr(p.alice), StakeRole.Contributor, DATANET]);
    assert.equal(pos.active, 0n);
    assert.equal(pos.unbonding, 300n * OPEN);
    assert.equal((await p.staking.getEvents.Slashed()).at(-1)?.args.fromUnbonding, 200n * OPEN);
    // Even after the period, until withdrawn, it is slashable; asking for more takes only what is there.
    await increaseTime(8n * DAY);
    await slasher.write.slash([addr(p.alice), StakeRole.Contributor, DATANET, 10_000n * OPEN, EVIDENCE]);
    pos = await p.staking.read.positionOf([addr(p.alice), StakeRole.Contributor, DATANET]);
    assert.equal(pos.unbonding, 0n);
    assert.equal(pos.unbondingEnd, 0n);
    await expectRevert(staking.write.withdraw([StakeRole.Contributor, DATANET]), "NothingToWithdraw");
  });

  it("pays a capped reporter cut", async () => {
    const p = await loadFixture(platformFixture);
    await staked(p);
    const slasher = await p.at("Staking", p.operator);
    const treasuryBefore = await p.token.read.balanceOf([addr(p.treasury)]);
    await slasher.write.slashWithReporter([
      addr(p.alice),
      StakeRole.Contributor,
      DATANET,
      100n * OPEN,
      EVIDENCE,
      addr(p.reporter),
    ]);
    // 10% reporter cut (deployment default), the rest to the treasury.
    assert.equal(await p.token.read.balanceOf([addr(p.reporter)]), 10n * OPEN);
    assert.equal(await p.token.read.balanceOf([addr(p.treasury)]), treasuryBefore + 90n * OPEN);
    await expectRevert(
      slasher.write.slashWithReporter([
        addr(p.alice),
        StakeRole.Contributor,
        DATANET,
        1n,
        EVIDENCE,
        "0x0000000000000000000000000000000000000000",
      ]),
      "ZeroAddress",
    );
    await expectRevert(p.admin("Staking", "setReporterCutBps", [5_001]), "ReporterCutTooHigh");
    await p.admin("Staking", "setReporterCutBps", [5_000]);
    assert.equal(await p.staking.read.reporterCutBps(), 5_000);
  });

  it("admin setters are admin-only and validated", async () => {
    const p = await loadFixture(platformFixture);
    const asAlice = await p.at("Staking", p.alice);
    await expectRevert(
      asAlice.write.setMinStake([StakeRole.Contributor, 1n]),
      "AccessControlUnauthorizedAccount",
    );
    await expectRevert(asAlice.write.setUnbondingPeriod([1n]), "AccessControlUnauthorizedAccount");
    await expectRevert(asAlice.write.setTreasury([addr(p.alice)]), "AccessControlUnauthorizedAccount");
    await expectRevert(asAlice.write.setReporterCutBps([1]), "AccessControlUnauthorizedAccount");
    await p.admin("Staking", "setMinStake", [StakeRole.Contributor, 1n]);
    assert.equal(await p.staking.read.minStake([StakeRole.Contributor]), 1n);
    await expectRevert(p.admin("Staking", "setUnbondingPeriod", [366n * DAY]), "UnbondingPeriodTooLong");
    await p.admin("Staking", "setUnbondingPeriod", [DAY]);
    assert.equal(await p.staking.read.unbondingPeriod(), DAY);
    await expectRevert(
      p.admin("Staking", "setTreasury", ["0x0000000000000000000000000000000000000000"]),
      "ZeroAddress",
    );
    await p.admin("Staking", "setTreasury", [addr(p.bob)]);
    assert.equal(await p.staking.read.treasury(), addr(p.bob));
  });

  it("the slash dispute window stays shorter than the unbonding period (both setters check it)", async () => {
    const p = await loadFixture(platformFixture);
    await p.admin("Staking", "setUnbondingPeriod", [2n * DAY]);
    await expectRevert(
      p.admin("Staking", "setSlashDisputeWindow", [2n * DAY]),
      "DisputeWindowNotShorterThanUnbonding",
      [2n * DAY, 2n * DAY],
    );
    await p.admin("Staking", "setSlashDisputeWindow", [2n * DAY - 1n]);
    await expectRevert(
      p.admin("Staking", "setUnbondingPeriod", [2n * DAY - 1n]),
      "DisputeWindowNotShorterThanUnbonding",
      [2n * DAY - 1n, 2n * DAY - 1n],
    );
    assert.equal(await p.staking.read.unbondingPeriod(), 2n * DAY);
  });

  it("slash proposals: bounded, executable only after the dispute window, vetoable, and block withdrawal", async () => {
    const p = await loadFixture(platformFixture);
    const staking = await staked(p); // alice: 500 OPEN on DATANET
    await p.admin("Staking", "setSlashDisputeWindow", [DAY]);
    const proposer = await p.at("Staking", p.operator);
    const asBob = await p.at("Staking", p.bob);
    const args = (amount: bigint) =>
      [addr(p.alice), StakeRole.Contributor, DATANET, amount, EVIDENCE, addr(p.reporter)] as const;
    await expectRevert(asBob.write.proposeSlash(args(1n)), "AccessControlUnauthorizedAccount");
    // At most maxSlashBps (50 % by default) of active + unbonding stake per proposal.
    assert.equal(await staking.read.maxSlashBps(), 5_000);
    await expectRevert(proposer.write.proposeSlash(args(250n * OPEN + 1n)), "SlashExceedsBound", [
      250n * OPEN + 1n,
      250n * OPEN,
    ]);
    await expectRevert(proposer.write.proposeSlash(args(0n)), "ZeroAmount");
    await proposer.write.proposeSlash(args(50n * OPEN));
    const proposed = (await staking.getEvents.SlashProposed()).at(-1)!.args;
    assert.equal(proposed.id, 1n);
    // Unbonding does not escape it: the position cannot be withdrawn while the proposal is pending.
    await staking.write.unbond([StakeRole.Contributor, DATANET, 500n * OPEN]);
    await expectRevert(asBob.write.executeSlash([1n]), "SlashInDisputeWindow");
    await increaseTime(7n * DAY + 60n); // past the unbonding period (7 d) and the dispute window (1 d)
    await expectRevert(staking.write.withdraw([StakeRole.Contributor, DATANET]), "SlashPending");
    const treasuryBefore = await p.token.read.balanceOf([addr(p.treasury)]);
    await asBob.write.executeSlash([1n]); // anyone may execute it
    assert.equal((await staking.getEvents.SlashProposalExecuted()).at(-1)?.args.slashed, 50n * OPEN);
    assert.equal(await p.token.read.balanceOf([addr(p.treasury)]), treasuryBefore + 45n * OPEN);
    assert.equal(await p.token.read.balanceOf([addr(p.reporter)]), 5n * OPEN);
    await expectRevert(asBob.write.executeSlash([1n]), "SlashNotPending", [1n]);
    // A second proposal is vetoed by the guardian (not by anyone else), and the position is free again.
    await proposer.write.proposeSlash(args(10n * OPEN));
    await expectRevert(asBob.write.vetoSlash([2n]), "AccessControlUnauthorizedAccount");
    await (await p.at("Staking", p.guardian)).write.vetoSlash([2n]);
    assert.equal((await staking.read.getSlashProposal([2n])).status, 3);
    // A third one nobody executes lapses after its execution period and stops blocking the withdrawal.
    await proposer.write.proposeSlash(args(10n * OPEN));
    await increaseTime(DAY + 1n);
    await expectRevert(asBob.write.lapseSlash([3n]), "SlashStillExecutable", [3n]);
    await increaseTime(7n * DAY);
    await expectRevert(asBob.write.executeSlash([3n]), "SlashExecutionPeriodOver", [3n]);
    await asBob.write.lapseSlash([3n]);
    assert.equal(
      await staking.read.pendingSlashes([
        await staking.read.positionKey([addr(p.alice), StakeRole.Contributor, DATANET]),
      ]),
      0n,
    );
    await staking.write.withdraw([StakeRole.Contributor, DATANET]);
    // The dispute window has a floor fixed at deployment (0 in the dev profile) and a 30-day ceiling.
    await expectRevert(
      p.admin("Staking", "setSlashDisputeWindow", [31n * DAY]),
      "SlashDisputeWindowOutOfRange",
    );
    await expectRevert(p.admin("Staking", "setMaxSlashBps", [10_001]), "MaxSlashBpsTooHigh");
  });
});
