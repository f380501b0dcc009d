import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { DISTRIBUTOR_ROLE, SETTLER_ROLE } from "@openledger/chain";
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

const batch = (n: number) => keccak256(toHex(`batch-${n}`));

async function deposited(p: Platform, amount = 1_000n * OPEN) {
  const token = await p.at("OpenToken", p.alice);
  const escrow = await p.at("InferenceEscrow", p.alice);
  await token.write.approve([escrow.address, amount]);
  await escrow.write.deposit([amount]);
  return escrow;
}

describe("InferenceEscrow", () => {
  it("deposits and depositFor credit balances", async () => {
    const p = await loadFixture(platformFixture);
    const escrow = await deposited(p);
    assert.equal(await escrow.read.balanceOf([addr(p.alice)]), 1_000n * OPEN);
    assert.equal(await escrow.read.spendableOf([addr(p.alice)]), 1_000n * OPEN);
    assert.equal(await escrow.read.totalBalances(), 1_000n * OPEN);
    const token = await p.at("OpenToken", p.bob);
    const asBob = await p.at("InferenceEscrow", p.bob);
    await token.write.approve([escrow.address, 5n * OPEN]);
    await asBob.write.depositFor([addr(p.carol), 5n * OPEN]);
    assert.equal(await escrow.read.balanceOf([addr(p.carol)]), 5n * OPEN);
    assert.equal((await escrow.getEvents.Deposited()).at(-1)?.args.funder, addr(p.bob));
    await expectRevert(escrow.write.deposit([0n]), "ZeroAmount");
    await expectRevert(
      asBob.write.depositFor(["0x0000000000000000000000000000000000000000", 1n]),
      "ZeroAddress",
    );
  });

  it("withdrawals wait for the delay and can be cancelled", async () => {
    const p = await loadFixture(platformFixture);
    const escrow = await deposited(p);
    await expectRevert(escrow.write.withdraw(), "NoPendingWithdrawal");
    await expectRevert(escrow.write.cancelWithdrawal(), "NoPendingWithdrawal");
    await expectRevert(escrow.write.requestWithdrawal([0n]), "ZeroAmount");
    await expectRevert(escrow.write.requestWithdrawal([1_001n * OPEN]), "InsufficientBalance");
    await escrow.write.requestWithdrawal([400n * OPEN]);
    assert.equal(await escrow.read.spendableOf([addr(p.alice)]), 600n * OPEN);
    await expectRevert(escrow.write.withdraw(), "WithdrawalLocked");
    await escrow.write.cancelWithdrawal();
    assert.equal(await escrow.read.spendableOf([addr(p.alice)]), 1_000n * OPEN);
    await escrow.write.requestWithdrawal([400n * OPEN]);
    await increaseTime(DAY);
    const before = await p.token.read.balanceOf([addr(p.alice)]);
    await escrow.write.withdraw();
    assert.equal(await p.token.read.balanceOf([addr(p.alice)]), before + 400n * OPEN);
    assert.equal(await escrow.read.balanceOf([addr(p.alice)]), 600n * OPEN);
    assert.equal(await escrow.read.totalBalances(), 600n * OPEN);
  });

  it("the settler can still charge during the withdrawal delay: withdrawals respect what is owed", async () => {
    const p = await loadFixture(platformFixture);
    const escrow = await deposited(p);
    await escrow.write.requestWithdrawal([1_000n * OPEN]);
    const settler = await p.at("InferenceEscrow", p.settlement);
    await settler.write.charge([batch(1), [addr(p.alice)], [300n * OPEN]]);
    const acct = await escrow.read.accountOf([addr(p.alice)]);
    assert.equal(acct.balance, 700n * OPEN);
    assert.equal(acct.pendingWithdrawal, 700n * OPEN, "pending withdrawal shrinks to the balance");
    await increaseTime(DAY);
    const before = await p.token.read.balanceOf([addr(p.alice)]);
    await escrow.write.withdraw();
    assert.equal(await p.token.read.balanceOf([addr(p.alice)]), before + 700n * OPEN);
    assert.equal(await escrow.read.settledUndrawn(), 300n * OPEN);
  });

  it("charges batches once, SETTLER_ROLE only; malformed batches revert", async () => {
    const p = await loadFixture(platformFixture);
    await deposited(p);
    const settler = await p.at("InferenceEscrow", p.settlement);
    const asAlice = await p.at("InferenceEscrow", p.alice);
    await expectRevert(
      asAlice.write.charge([batch(1), [addr(p.alice)], [1n]]),
      "AccessControlUnauthorizedAccount",
      [addr(p.alice), SETTLER_ROLE],
    );
    await expectRevert(settler.write.charge([batch(1), [], []]), "EmptyBatch");
    await expectRevert(settler.write.charge([batch(1), [addr(p.alice)], [1n, 2n]]), "LengthMismatch");
    await expectRevert(settler.write.charge([batch(1), [addr(p.alice)], [0n]]), "ZeroAmount");
    await settler.write.charge([batch(1), [addr(p.alice), addr(p.alice)], [10n * OPEN, 15n * OPEN]]);
    assert.equal(await settler.read.balanceOf([addr(p.alice)]), 975n * OPEN);
    assert.equal(await settler.read.settledUndrawn(), 25n * OPEN);
    assert.equal(await settler.read.totalCharged(), 25n * OPEN);
    assert.equal(await settler.read.chargeBatchApplied([batch(1)]), true);
    const applied = (await settler.getEvents.ChargeBatchApplied()).at(-1)?.args;
    assert.deepEqual([applied?.charged, applied?.skipped, applied?.total], [2n, 0n, 25n * OPEN]);
    await expectRevert(settler.write.charge([batch(1), [addr(p.alice)], [1n]]), "BatchAlreadyApplied", [
      batch(1),
    ]);
  });

  it("a consumer who cannot cover their charge is skipped, the others in the batch are charged", async () => {
    const p = await loadFixture(platformFixture);
    await deposited(p); // alice 1,000; bob has nothing; carol gets 5
    const token = await p.at("OpenToken", p.alice);
    await token.write.approve([p.escrow.address, 5n * OPEN]);
    await (await p.at("InferenceEscrow", p.alice)).write.depositFor([addr(p.carol), 5n * OPEN]);
    const settler = await p.at("InferenceEscrow", p.settlement);
    // bob: balance 0; carol: 5 OPEN, asked 5 OPEN + 1 wei (short by one wei); alice covers hers.
    await settler.write.charge([
      batch(2),
      [addr(p.bob), addr(p.alice), addr(p.carol)],
      [1n, 300n * OPEN, 5n * OPEN + 1n],
    ]);
    assert.equal(await settler.read.balanceOf([addr(p.alice)]), 700n * OPEN);
    assert.equal(await settler.read.balanceOf([addr(p.bob)]), 0n);
    assert.equal(await settler.read.balanceOf([addr(p.carol)]), 5n * OPEN, "the short consumer keeps all");
    assert.equal(await settler.read.settledUndrawn(), 300n * OPEN);
    assert.equal(await settler.read.totalCharged(), 300n * OPEN);
    assert.equal(await settler.read.totalBalances(), 705n * OPEN);
    const skipped = await settler.getEvents.ChargeSkipped({ batchId: batch(2) });
    assert.deepEqual(
      skipped.map((e) => [e.args.consumer, e.args.amount, e.args.balance]),
      [
        [addr(p.bob), 1n, 0n],
        [addr(p.carol), 5n * OPEN + 1n, 5n * OPEN],
      ],
    );
    const charged = await settler.getEvents.Charged({ batchId: batch(2) });
    assert.deepEqual(
      charged.map((e) => [e.args.consumer, e.args.amount]),
      [[addr(p.alice), 300n * OPEN]],
    );
    const applied = (await settler.getEvents.ChargeBatchApplied()).at(-1)?.args;
    assert.deepEqual([applied?.charged, applied?.skipped, applied?.total], [1n, 2n, 300n * OPEN]);
    // Everyone short: the batch still applies (charging nothing), so its id is spent.
    await settler.write.charge([batch(3), [addr(p.bob)], [1n]]);
    assert.equal(await settler.read.chargeBatchApplied([batch(3)]), true);
    assert.equal(await settler.read.totalCharged(), 300n * OPEN);
  });

  it("draw and returnDrawn are distributor-only and bounded", async () => {
    const p = await loadFixture(platformFixture);
    await deposited(p);
    const settler = await p.at("InferenceEscrow", p.settlement);
    await settler.write.charge([batch(1), [addr(p.alice)], [100n * OPEN]]);
    await expectRevert(settler.write.draw([1n]), "AccessControlUnauthorizedAccount", [
      addr(p.settlement),
      DISTRIBUTOR_ROLE,
    ]);
    // Stand-in distributor: grant the role to bob so the raw functions can be exercised directly.
    await p.admin("InferenceEscrow", "grantRole", [DISTRIBUTOR_ROLE, addr(p.bob)]);
    const asBob = await p.at("InferenceEscrow", p.bob);
    await expectRevert(asBob.write.draw([0n]), "ZeroAmount");
    await expectRevert(asBob.write.draw([101n * OPEN]), "ExceedsSettled", [100n * OPEN, 101n * OPEN]);
    const before = await p.token.read.balanceOf([addr(p.bob)]);
    await asBob.write.draw([60n * OPEN]);
    assert.equal(await p.token.read.balanceOf([addr(p.bob)]), before + 60n * OPEN);
    assert.equal(await asBob.read.settledUndrawn(), 40n * OPEN);
    assert.equal(await asBob.read.totalDrawn(), 60n * OPEN);
    await expectRevert(asBob.write.returnDrawn([0n]), "ZeroAmount");
    await expectRevert(asBob.write.returnDrawn([61n * OPEN]), "ExceedsDrawn");
    const token = await p.at("OpenToken", p.bob);
    await token.write.approve([asBob.address, 20n * OPEN]);
    await asBob.write.returnDrawn([20n * OPEN]);
    assert.equal(await asBob.read.settledUndrawn(), 60n * OPEN);
    assert.equal(await asBob.read.totalDrawn(), 40n * OPEN);
    await expectRevert(settler.write.returnDrawn([1n]), "AccessControlUnauthorizedAccount");
  });

  it("withdrawal delay is admin-set and bounded", async () => {
    const p = await loadFixture(platformFixture);
    const asAlice = await p.at("InferenceEscrow", p.alice);
    await expectRevert(asAlice.write.setWithdrawalDelay([1n]), "AccessControlUnauthorizedAccount");
    await expectRevert(
      p.admin("InferenceEscrow", "setWithdrawalDelay", [31n * DAY]),
      "WithdrawalDelayTooLong",
    );
    await p.admin("InferenceEscrow", "setWithdrawalDelay", [3600n]);
    assert.equal(await p.escrow.read.withdrawalDelay(), 3600n);
  });

  it("the settler is bounded by each consumer's daily cap: a leaked key takes at most a day's cap", async () => {
    const p = await loadFixture(platformFixture);
    // The dev profile's default is generous; governance lowers it (never above maxDefaultDailyCap).
    await expectRevert(
      p.admin("InferenceEscrow", "setDefaultDailyCap", [(await p.escrow.read.maxDefaultDailyCap()) + 1n]),
      "DefaultCapTooHigh",
    );
    await p.admin("InferenceEscrow", "setDefaultDailyCap", [100n * OPEN]);
    const escrow = await deposited(p); // alice: 1,000 OPEN, no cap of her own
    const settler = await p.at("InferenceEscrow", p.settlement);
    assert.deepEqual(await escrow.read.dailyCapOf([addr(p.alice)]), {
      cap: 100n * OPEN,
      spentToday: 0n,
      remainingToday: 100n * OPEN,
      pendingCap: 0n,
      pendingCapAt: 0n,
      isDefault: true,
    });
    assert.equal(await escrow.read.chargeableOf([addr(p.alice)]), 100n * OPEN);
    // The whole escrow in one charge: skipped, nothing taken.
    await settler.write.charge([batch(10), [addr(p.alice)], [1_000n * OPEN]]);
    const skipped = (await settler.getEvents.ChargeSkipped({ batchId: batch(10) }))[0]!.args;
    assert.deepEqual(
      [skipped.amount, skipped.balance, skipped.capRemaining],
      [1_000n * OPEN, 1_000n * OPEN, 100n * OPEN],
    );
    assert.equal(await escrow.read.balanceOf([addr(p.alice)]), 1_000n * OPEN);
    // Within the cap: charged; one wei more the same day: skipped.
    await settler.write.charge([batch(11), [addr(p.alice)], [60n * OPEN]]);
    await settler.write.charge([batch(12), [addr(p.alice)], [40n * OPEN + 1n]]);
    assert.equal((await settler.getEvents.ChargeSkipped({ batchId: batch(12) })).length, 1);
    await settler.write.charge([batch(13), [addr(p.alice)], [40n * OPEN]]);
    assert.equal(await escrow.read.balanceOf([addr(p.alice)]), 900n * OPEN);
    assert.equal(await escrow.read.spendableOf([addr(p.alice)]), 0n, "the gateway stops serving her today");
    // The next UTC day, another cap's worth.
    await increaseTime(DAY);
    assert.equal(await escrow.read.chargeableOf([addr(p.alice)]), 100n * OPEN);
    await settler.write.charge([batch(14), [addr(p.alice)], [100n * OPEN]]);
    assert.equal(await escrow.read.balanceOf([addr(p.alice)]), 800n * OPEN);
  });

  it("a consumer raises its cap at once; a lower cap applies to the gateway at once, to charges after the delay", async () => {
    const p = await loadFixture(platformFixture);
    const escrow = await deposited(p);
    const settler = await p.at("InferenceEscrow", p.settlement);
    await escrow.write.setDailyCap([50n * OPEN]); // below the 1,000,000 OPEN default: a decrease
    let cap = await escrow.read.dailyCapOf([addr(p.alice)]);
    assert.equal(cap.cap, 1_000_000n * OPEN, "the old cap stays in force for charges during the delay");
    assert.equal(cap.pendingCap, 50n * OPEN);
    assert.equal(
      await escrow.read.spendableOf([addr(p.alice)]),
      50n * OPEN,
      "the gateway applies it at once",
    );
    assert.equal(await escrow.read.chargeableOf([addr(p.alice)]), 1_000n * OPEN);
    // Fees for inference already served stay collectable during the delay.
    await settler.write.charge([batch(20), [addr(p.alice)], [200n * OPEN]]);
    assert.equal(await escrow.read.balanceOf([addr(p.alice)]), 800n * OPEN);
    await increaseTime(DAY);
    cap = await escrow.read.dailyCapOf([addr(p.alice)]);
    assert.deepEqual([cap.cap, cap.pendingCap, cap.isDefault], [50n * OPEN, 0n, false]);
    await settler.write.charge([batch(21), [addr(p.alice)], [51n * OPEN]]);
    assert.equal((await settler.getEvents.ChargeSkipped({ batchId: batch(21) })).length, 1);
    await settler.write.charge([batch(22), [addr(p.alice)], [50n * OPEN]]);
    assert.equal(await escrow.read.balanceOf([addr(p.alice)]), 750n * OPEN);
    // Raising is immediate (and cancels a pending decrease).
    await escrow.write.setDailyCap([10n * OPEN]);
    await escrow.write.setDailyCap([500n * OPEN]);
    cap = await escrow.read.dailyCapOf([addr(p.alice)]);
    assert.deepEqual([cap.cap, cap.pendingCap, cap.remainingToday], [500n * OPEN, 0n, 450n * OPEN]);
    const events = await escrow.getEvents.DailyCapSet();
    assert.equal(events.at(-1)?.args.cap, 500n * OPEN);
    await settler.write.charge([batch(23), [addr(p.alice)], [450n * OPEN]]);
    assert.equal(await escrow.read.balanceOf([addr(p.alice)]), 300n * OPEN);
  });

  it("the guardian can pause charging, not unpause it; the admin unpauses", async () => {
    const p = await loadFixture(platformFixture);
    await deposited(p);
    const settler = await p.at("InferenceEscrow", p.settlement);
    const guardian = await p.at("InferenceEscrow", p.guardian);
    await expectRevert(settler.write.pause(), "AccessControlUnauthorizedAccount");
    await guardian.write.pause();
    await expectRevert(settler.write.charge([batch(30), [addr(p.alice)], [1n]]), "EnforcedPause");
    // Consumers' own money is never frozen: withdrawals still work.
    const escrow = await p.at("InferenceEscrow", p.alice);
    await escrow.write.requestWithdrawal([1n]);
    await expectRevert(guardian.write.unpause(), "AccessControlUnauthorizedAccount");
    await p.admin("InferenceEscrow", "unpause");
    await settler.write.charge([batch(30), [addr(p.alice)], [1n]]);
  });
});
