import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { getAddress } from "viem";
import { expectRevert, hre, loadFixture, OPEN, platformFixture } from "./helpers.ts";

describe("OpenToken", () => {
  it("mints the fixed supply once, at deployment, to the holder", async () => {
    const [deployer, other] = await hre.viem.getWalletClients();
    const token = await hre.viem.deployContract("OpenToken", [other!.account.address]);
    assert.equal(await token.read.totalSupply(), 1_000_000_000n * OPEN);
    assert.equal(await token.read.balanceOf([other!.account.address]), 1_000_000_000n * OPEN);
    assert.equal(await token.read.balanceOf([deployer!.account.address]), 0n);
    assert.equal(await token.read.TOTAL_SUPPLY(), 1_000_000_000n * OPEN);
    assert.equal(await token.read.symbol(), "OPEN");
    assert.equal(await token.read.decimals(), 18);
  });

  it("rejects a zero holder", async () => {
    await expectRevert(
      hre.viem.deployContract("OpenToken", ["0x0000000000000000000000000000000000000000"]),
      "ZeroHolder",
    );
  });

  it("transfers, and tracks votes after delegation", async () => {
    const p = await loadFixture(platformFixture);
    const token = await p.at("OpenToken", p.alice);
    await token.write.delegate([p.alice.account.address]);
    assert.equal(await token.read.getVotes([p.alice.account.address]), 1_000_000n * OPEN);
    await token.write.transfer([p.bob.account.address, 10n * OPEN]);
    assert.equal(await token.read.getVotes([p.alice.account.address]), 999_990n * OPEN);
    assert.equal(await token.read.balanceOf([p.bob.account.address]), 1_000_010n * OPEN);
    assert.equal(
      getAddress(await token.read.delegates([p.alice.account.address])),
      getAddress(p.alice.account.address),
    );
  });

  it("accepts an EIP-2612 permit and rejects a replayed one", async () => {
    const p = await loadFixture(platformFixture);
    const token = await p.at("OpenToken", p.bob);
    const owner = p.alice.account.address;
    const spender = p.bob.account.address;
    const chainId = await p.publicClient.getChainId();
    const deadline = (await p.publicClient.getBlock()).timestamp + 3600n;
    const nonce = await token.read.nonces([owner]);
    const signature = await p.alice.signTypedData({
      account: p.alice.account,
      domain: { name: "OpenLedger", version: "1", chainId, verifyingContract: token.address },
      types: {
        Permit: [
          { name: "owner", type: "address" },
          { name: "spender", type: "address" },
          { name: "value", type: "uint256" },
          { name: "nonce", type: "uint256" },
          { name: "deadline", type: "uint256" },
        ],
      },
      primaryType: "Permit",
      message: { owner, spender, value: 5n * OPEN, nonce, deadline },
    });
    const r = `0x${signature.slice(2, 66)}` as const;
    const s = `0x${signature.slice(66, 130)}` as const;
    const v = Number.parseInt(signature.slice(130, 132), 16);
    await token.write.permit([owner, spender, 5n * OPEN, deadline, v, r, s]);
    assert.equal(await token.read.allowance([owner, spender]), 5n * OPEN);
    await expectRevert(
      token.write.permit([owner, spender, 5n * OPEN, deadline, v, r, s]),
      "ERC2612InvalidSigner",
    );
  });
});
