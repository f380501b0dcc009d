import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  DEFAULT_ADMIN_ROLE,
  DEFAULT_FEE_SPLIT,
  deployPlatform,
  EXECUTOR_ROLE,
  PROPOSER_ROLE,
} from "@openledger/chain";
import { getAddress } from "viem";
import { addr, asChainClients, expectRevert, hre, loadFixture, platformFixture } from "./helpers.ts";

const ZERO = "0x0000000000000000000000000000000000000000";
const ADMINED = [
  "Staking",
  "DatanetRegistry",
  "ModelRegistry",
  "InferenceEscrow",
  "RewardDistributor",
] as const;

describe("constructors and deployment", () => {
  it("reject zero addresses and out-of-range parameters", async () => {
    const [deployer] = await hre.viem.getWalletClients();
    const me = deployer!.account.address;
    const token = await hre.viem.deployContract("OpenToken", [me]);
    const split = DEFAULT_FEE_SPLIT;
    await expectRevert(hre.viem.deployContract("Staking", [ZERO, me, 0, me, 0n, 0, 0n]), "ZeroAddress");
    await expectRevert(
      hre.viem.deployContract("Staking", [token.address, me, 0, ZERO, 0n, 0, 0n]),
      "ZeroAddress",
    );
    await expectRevert(
      hre.viem.deployContract("Staking", [token.address, me, 0, me, 366n * 86400n, 0, 0n]),
      "UnbondingPeriodTooLong",
    );
    // A slash must be able to run before an offender's unbonding ends: the window has to be shorter.
    await expectRevert(
      hre.viem.deployContract("Staking", [token.address, me, 0, me, 0n, 0, 0n]),
      "DisputeWindowNotShorterThanUnbonding",
    );
    await expectRevert(
      hre.viem.deployContract("Staking", [token.address, me, 0, me, 1n, 5_001, 0n]),
      "ReporterCutTooHigh",
    );
    await expectRevert(
      hre.viem.deployContract("Staking", [token.address, me, 0, me, 0n, 0, 31n * 86400n]),
      "SlashDisputeWindowOutOfRange",
    );
    await expectRevert(hre.viem.deployContract("ModelRegistry", [ZERO, me, 0]), "ZeroAddress");
    await expectRevert(hre.viem.deployContract("InferenceEscrow", [ZERO, me, 0, 0n, 0n, 0n]), "ZeroAddress");
    await expectRevert(
      hre.viem.deployContract("InferenceEscrow", [token.address, me, 0, 31n * 86400n, 0n, 0n]),
      "WithdrawalDelayTooLong",
    );
    await expectRevert(
      hre.viem.deployContract("InferenceEscrow", [token.address, me, 0, 0n, 11n, 10n]),
      "DefaultCapTooHigh",
    );
    await expectRevert(
      hre.viem.deployContract("RewardDistributor", [
        token.address,
        ZERO,
        token.address,
        me,
        0,
        0n,
        0n,
        split,
      ]),
      "ZeroAddress",
    );
    await expectRevert(
      hre.viem.deployContract("RewardDistributor", [
        ZERO,
        token.address,
        token.address,
        me,
        0,
        0n,
        0n,
        split,
      ]),
      "ZeroAddress",
    );
    // Staking is not optional: no distributor can be built that ignores validator stakes.
    await expectRevert(
      hre.viem.deployContract("RewardDistributor", [
        token.address,
        token.address,
        ZERO,
        me,
        0,
        0n,
        0n,
        split,
      ]),
      "ZeroAddress",
    );
    await expectRevert(
      hre.viem.deployContract("RewardDistributor", [
        token.address,
        token.address,
        token.address,
        me,
        0,
        31n * 86400n,
        0n,
        split,
      ]),
      "ActivationDelayOutOfRange",
    );
    await expectRevert(
      hre.viem.deployContract("RewardDistributor", [
        token.address,
        token.address,
        token.address,
        me,
        0,
        0n,
        60n,
        split,
      ]),
      "ActivationDelayOutOfRange",
      [0n, 60n, 30n * 86400n],
    );
    await expectRevert(
      hre.viem.deployContract("RewardDistributor", [
        token.address,
        token.address,
        token.address,
        me,
        0,
        0n,
        0n,
        { ...split, contributorsBps: 1 },
      ]),
      "InvalidFeeSplit",
    );
  });

  it("dev profile: the timelock holds every admin role; the deployer is the dev admin through it", async () => {
    const p = await loadFixture(platformFixture);
    assert.equal(p.addresses.profile, "dev");
    assert.equal(p.addresses.roles.devAdmin, addr(p.deployer));
    const timelock = p.addresses.contracts.OpenTimelock;
    for (const name of ADMINED) {
      const c = await p.at(name);
      assert.equal(getAddress(await c.read.defaultAdmin()), timelock, name);
      assert.equal(await c.read.hasRole([DEFAULT_ADMIN_ROLE, addr(p.deployer)]), false, name);
    }
    assert.equal(await p.timelock.read.getMinDelay(), 0n);
    assert.equal(await p.timelock.read.hasRole([PROPOSER_ROLE, addr(p.deployer)]), true);
    assert.equal(await p.timelock.read.hasRole([PROPOSER_ROLE, p.addresses.contracts.OpenGovernor]), true);
    assert.equal(await p.timelock.read.hasRole([EXECUTOR_ROLE, p.addresses.contracts.OpenGovernor]), true);
    assert.equal(getAddress(await p.governor.read.timelock()), timelock);
    assert.equal(getAddress(await p.governor.read.proposalGuardian()), addr(p.guardian));
    // The dev admin's votes are delegated to itself, so governance works on a dev chain too.
    assert.equal(getAddress(await p.token.read.delegates([addr(p.deployer)])), addr(p.deployer));
  });

  it("gives the OPEN left to the token holder; production refuses missing roles and values below its floors", async () => {
    const publicClient = await hre.viem.getPublicClient();
    const wallets = await hre.viem.getWalletClients();
    const [deployer, operator, settlement, guardian, holder, v1, v2] = wallets as [
      (typeof wallets)[0],
      (typeof wallets)[0],
      (typeof wallets)[0],
      (typeof wallets)[0],
      (typeof wallets)[0],
      (typeof wallets)[0],
      (typeof wallets)[0],
    ];
    const clients = asChainClients(publicClient, deployer);
    const addresses = await deployPlatform({
      ...clients,
      roles: { tokenHolder: holder.account.address, validators: [v1.account.address] },
    });
    assert.equal(addresses.params.quorum, 1);
    const token = await hre.viem.getContractAt("OpenToken", addresses.contracts.OpenToken);
    // Everything the deployer did not spend on validator stakes went to the holder.
    assert.equal(await token.read.balanceOf([addr(deployer)]), 0n);
    assert.equal(
      (await token.read.balanceOf([addr(holder)])) +
        (await token.read.balanceOf([addresses.contracts.Staking])),
      await token.read.totalSupply(),
    );
    const roles = {
      operator: operator.account.address,
      settlement: settlement.account.address,
      guardian: guardian.account.address,
      validators: [v1.account.address, v2.account.address],
    };
    await assert.rejects(
      deployPlatform({ ...clients, profile: "production", roles: { ...roles, guardian: undefined } }),
      /roles.guardian must be given/,
    );
    await assert.rejects(
      deployPlatform({
        ...clients,
        profile: "production",
        roles: { ...roles, operator: deployer.account.address },
      }),
      /roles.operator must be given and differ from the deployer/,
    );
    await assert.rejects(
      deployPlatform({
        ...clients,
        profile: "production",
        roles,
        params: { minActivationDelay: 60, governance: { timelockDelayFloor: 3600 } },
      }),
      /below its floors: governance.timelockDelayFloor, .*minActivationDelay/,
    );
    await assert.rejects(
      deployPlatform({
        ...clients,
        profile: "production",
        roles: { ...roles, validators: [v1.account.address] },
      }),
      /cannot reach minSignatures 2/,
    );
  });
});
