import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  buildEarningsTree,
  deployPlatform,
  inferenceEscrowAbi,
  openTokenAbi,
  rewardDistributorAbi,
  StakeRole,
  stakingAbi,
  subjectOf,
  ZERO_SUBJECT,
} from "@openledger/chain";
import { encodeFunctionData, getAddress, keccak256, toHex } from "viem";
import {
  addr,
  contractAt,
  DAY,
  expectRevert,
  hre,
  increaseTime,
  loadFixture,
  OPEN,
  type Platform,
  signEpoch,
} from "./helpers.ts";

/**
 * The platform deployed on a hook-bearing token (ERC-777/1363 style): every transfer to a registered receiver
 * hands control to it mid-call. A hostile receiver re-enters the contract that is paying it.
 */
async function hostileFixture() {
  const publicClient = await hre.viem.getPublicClient();
  const wallets = await hre.viem.getWalletClients();
  const [deployer, operator, settlement, treasury, guardian, v1, v2, v3, alice] = wallets;
  const hook = await hre.viem.deployContract("HookToken", [deployer!.account.address, 1_000_000_000n * OPEN]);
  const addresses = await deployPlatform({
    publicClient,
    walletClient: deployer!,
    token: hook.address,
    roles: {
      operator: operator!.account.address,
      settlement: settlement!.account.address,
      treasury: treasury!.account.address,
      guardian: guardian!.account.address,
      validators: [v1!, v2!, v3!].map((v) => v.account.address),
    },
    params: { activationDelay: 3600 },
    fund: [{ address: alice!.account.address, amount: 1_000_000n * OPEN }],
  });
  const attacker = await hre.viem.deployContract("ReentrantReceiver", []);
  await hook.write.transfer([attacker.address, 100_000n * OPEN]);
  await hook.write.setHooked([attacker.address, true]);
  const at = <N extends "Staking" | "InferenceEscrow" | "RewardDistributor">(name: N, wallet = deployer!) =>
    contractAt(name, addresses.contracts[name], wallet);
  const platformLike = {
    publicClient,
    validators: [v1!, v2!, v3!],
    addresses,
  } as unknown as Platform;
  return {
    publicClient,
    hook,
    attacker,
    addresses,
    at,
    deployer: deployer!,
    operator: operator!,
    settlement: settlement!,
    alice: alice!,
    platformLike,
  };
}

describe("reentrancy through a malicious token receiver", () => {
  it("RewardDistributor.claim cannot be re-entered by the receiving account", async () => {
    const f = await loadFixture(hostileFixture);
    const escrowAddr = f.addresses.contracts.InferenceEscrow;
    const distributor = await f.at("RewardDistributor");
    // Fund settled fees: alice deposits, settlement charges.
    const aliceToken = await hre.viem.getContractAt("HookToken", f.hook.address, {
      client: { wallet: f.alice },
    });
    await aliceToken.write.approve([escrowAddr, 1_000n * OPEN]);
    const aliceEscrow = await f.at("InferenceEscrow", f.alice);
    await aliceEscrow.write.deposit([1_000n * OPEN]);
    await (await f.at("InferenceEscrow", f.settlement)).write.charge([
      keccak256(toHex("b")),
      [addr(f.alice)],
      [1_000n * OPEN],
    ]);
    const tree = buildEarningsTree({
      chainId: await f.publicClient.getChainId(),
      distributor: distributor.address,
      epoch: 1n,
      entries: [
        { account: getAddress(f.attacker.address), cumulativeAmount: 400n * OPEN },
        { account: addr(f.alice), cumulativeAmount: 600n * OPEN },
      ],
    });
    const sigs = await signEpoch(f.platformLike, f.platformLike.validators.slice(0, 2), {
      epoch: 1n,
      root: tree.root,
      cumulativeTotal: tree.cumulativeTotal,
    });
    await distributor.write.postEpoch([1n, tree.root, tree.cumulativeTotal, sigs]);
    await increaseTime(3600n);
    const c = tree.claimFor(getAddress(f.attacker.address))!;
    const claimData = encodeFunctionData({
      abi: rewardDistributorAbi,
      functionName: "claim",
      args: [1n, c.account, c.cumulativeAmount, c.proof],
    });
    await f.attacker.write.arm([distributor.address, claimData]);
    await expectRevert(
      distributor.write.claim([1n, c.account, c.cumulativeAmount, c.proof]),
      "ReentrancyGuardReentrantCall",
    );
    assert.equal(await distributor.read.claimed([c.account]), 0n);
    // Unarmed, the same claim goes through once: it was the guard that stopped the re-entry.
    await f.attacker.write.arm([distributor.address, "0x"]);
    await f.hook.write.setHooked([f.attacker.address, false]);
    await distributor.write.claim([1n, c.account, c.cumulativeAmount, c.proof]);
    assert.equal(await distributor.read.claimed([c.account]), 400n * OPEN);
  });

  it("Staking.withdraw and InferenceEscrow.withdraw cannot be re-entered", async () => {
    const f = await loadFixture(hostileFixture);
    const staking = f.addresses.contracts.Staking;
    const escrow = f.addresses.contracts.InferenceEscrow;
    const subject = subjectOf(1n);
    const exec = (to: `0x${string}`, data: `0x${string}`) => f.attacker.write.exec([to, data]);
    await exec(
      f.hook.address,
      encodeFunctionData({ abi: openTokenAbi, functionName: "approve", args: [staking, 10_000n * OPEN] }),
    );
    await exec(
      f.hook.address,
      encodeFunctionData({ abi: openTokenAbi, functionName: "approve", args: [escrow, 10_000n * OPEN] }),
    );
    await exec(
      staking,
      encodeFunctionData({
        abi: stakingAbi,
        functionName: "stake",
        args: [StakeRole.Contributor, subject, 1_000n * OPEN],
      }),
    );
    await exec(
      staking,
      encodeFunctionData({
        abi: stakingAbi,
        functionName: "unbond",
        args: [StakeRole.Contributor, subject, 1_000n * OPEN],
      }),
    );
    await exec(
      escrow,
      encodeFunctionData({ abi: inferenceEscrowAbi, functionName: "deposit", args: [1_000n * OPEN] }),
    );
    await exec(
      escrow,
      encodeFunctionData({
        abi: inferenceEscrowAbi,
        functionName: "requestWithdrawal",
        args: [1_000n * OPEN],
      }),
    );
    await increaseTime(8n * DAY);

    const stakingWithdraw = encodeFunctionData({
      abi: stakingAbi,
      functionName: "withdraw",
      args: [StakeRole.Contributor, subject],
    });
    await f.attacker.write.arm([staking, stakingWithdraw]);
    await expectRevert(exec(staking, stakingWithdraw), "ReentrancyGuardReentrantCall");
    const escrowWithdraw = encodeFunctionData({
      abi: inferenceEscrowAbi,
      functionName: "withdraw",
      args: [],
    });
    await f.attacker.write.arm([escrow, escrowWithdraw]);
    await expectRevert(exec(escrow, escrowWithdraw), "ReentrancyGuardReentrantCall");

    // State unchanged by the failed attempts; honest withdrawals then work exactly once.
    await f.hook.write.setHooked([f.attacker.address, false]);
    await exec(staking, stakingWithdraw);
    await exec(escrow, escrowWithdraw);
    assert.equal(await f.hook.read.balanceOf([f.attacker.address]), 100_000n * OPEN);
    await expectRevert(exec(staking, stakingWithdraw), "NothingToWithdraw");
    await expectRevert(exec(escrow, escrowWithdraw), "NoPendingWithdrawal");
  });

  it("a hostile slashing reporter cannot re-enter Staking while being paid", async () => {
    const f = await loadFixture(hostileFixture);
    const token = await hre.viem.getContractAt("HookToken", f.hook.address, { client: { wallet: f.alice } });
    const aliceStaking = await f.at("Staking", f.alice);
    await token.write.approve([aliceStaking.address, 500n * OPEN]);
    await aliceStaking.write.stake([StakeRole.Contributor, subjectOf(1n), 500n * OPEN]);
    // The reporter tries to stake (any nonReentrant entry point) while receiving its cut.
    await f.attacker.write.arm([
      aliceStaking.address,
      encodeFunctionData({
        abi: stakingAbi,
        functionName: "stake",
        args: [StakeRole.Validator, ZERO_SUBJECT, 10_000n * OPEN],
      }),
    ]);
    const slasher = await f.at("Staking", f.operator);
    await expectRevert(
      slasher.write.slashWithReporter([
        addr(f.alice),
        StakeRole.Contributor,
        subjectOf(1n),
        100n * OPEN,
        subjectOf(9n),
        f.attacker.address,
      ]),
      "ReentrancyGuardReentrantCall",
    );
    assert.equal(
      await aliceStaking.read.activeStake([addr(f.alice), StakeRole.Contributor, subjectOf(1n)]),
      500n * OPEN,
    );
  });
});
