import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { deployPlatform } from "@openledger/chain";
import { getAddress } from "viem";
import { addr, expectRevert, hre } from "./helpers.ts";

const ZERO = "0x0000000000000000000000000000000000000000";

describe("constructors and deployment", () => {
  it("reject zero addresses for wired contracts", async () => {
    const [deployer] = await hre.viem.getWalletClients();
    const me = deployer!.account.address;
    const token = await hre.viem.deployContract("OpenToken", [me]);
    await expectRevert(hre.viem.deployContract("Staking", [ZERO, me, 0, me, 0n, 0]), "ZeroAddress");
    await expectRevert(
      hre.viem.deployContract("Staking", [token.address, me, 0, ZERO, 0n, 0]),
      "ZeroAddress",
    );
    await expectRevert(
      hre.viem.deployContract("Staking", [token.address, me, 0, me, 366n * 86400n, 0]),
      "UnbondingPeriodTooLong",
    );
    await expectRevert(
      hre.viem.deployContract("Staking", [token.address, me, 0, me, 0n, 5_001]),
      "ReporterCutTooHigh",
    );
    await expectRevert(hre.viem.deployContract("ModelRegistry", [ZERO, me, 0]), "ZeroAddress");
    await expectRevert(hre.viem.deployContract("InferenceEscrow", [ZERO, me, 0, 0n]), "ZeroAddress");
    await expectRevert(
      hre.viem.deployContract("InferenceEscrow", [token.address, me, 0, 31n * 86400n]),
      "WithdrawalDelayTooLong",
    );
    await expectRevert(
      hre.viem.deployContract("RewardDistributor", [token.address, ZERO, ZERO, me, 0, 0n]),
      "ZeroAddress",
    );
    await expectRevert(
      hre.viem.deployContract("RewardDistributor", [ZERO, token.address, ZERO, me, 0, 0n]),
      "ZeroAddress",
    );
    await expectRevert(
      hre.viem.deployContract("RewardDistributor", [token.address, token.address, ZERO, me, 0, 31n * 86400n]),
      "ActivationDelayTooLong",
    );
  });

  it("deployPlatform hands the admin role over with the delayed two-step transfer", async () => {
    const publicClient = await hre.viem.getPublicClient();
    const wallets = await hre.viem.getWalletClients();
    const [deployer, admin, holder, v1] = wallets as [
      (typeof wallets)[0],
      (typeof wallets)[0],
      (typeof wallets)[0],
      (typeof wallets)[0],
    ];
    const addresses = await deployPlatform({
      publicClient,
      walletClient: deployer,
      roles: {
        admin: admin.account.address,
        tokenHolder: holder.account.address,
        validators: [v1.account.address],
      },
      params: { adminDelay: 3600 },
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
    for (const name of [
      "Staking",
      "DatanetRegistry",
      "ModelRegistry",
      "InferenceEscrow",
      "RewardDistributor",
    ] as const) {
      const c = await hre.viem.getContractAt(name, addresses.contracts[name]);
      const [pending] = await c.read.pendingDefaultAdmin();
      assert.equal(getAddress(pending), addr(admin), name);
      assert.equal(
        getAddress(await c.read.defaultAdmin()),
        addr(deployer),
        `${name}: deployer until accepted`,
      );
    }
    const asAdmin = await hre.viem.getContractAt("Staking", addresses.contracts.Staking, {
      client: { wallet: admin },
    });
    await expectRevert(asAdmin.write.acceptDefaultAdminTransfer(), "AccessControlEnforcedDefaultAdminDelay");
  });
});
