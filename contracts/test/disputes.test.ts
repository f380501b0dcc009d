// ValidatorDisputes: the only way a validator slash proposal is filed without a plain key — a quorum of the
// other active validators signs the dispute, and the accused's own signature over the wrong result is the
// evidence. Attacks: one validator alone cannot get another slashed; the accused cannot count itself; a
// result the accused never signed is no evidence; a dispute is filed once.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  attributionDisputeTypedData,
  attributionResultTypedData,
  SLASH_PROPOSER_ROLE,
  StakeRole,
  sortSignatures,
  ZERO_SUBJECT,
} from "@openledger/chain";
import { type Address, encodeAbiParameters, type Hex, keccak256, toHex } from "viem";
import {
  addr,
  expectRevert,
  hre,
  loadFixture,
  type Platform,
  platformFixture,
  type Wallet,
} from "./helpers.ts";

const INFERENCE = keccak256(toHex("inference-1"));
const WRONG = keccak256(toHex("weights naming the accused's friend"));
const RIGHT = keccak256(toHex("weights recomputed from public inputs"));

async function fixture() {
  const p = await platformFixture();
  // deployPlatform deploys it and grants it SLASH_PROPOSER_ROLE (slashBps 1,000 by default).
  const disputes = await hre.viem.getContractAt("ValidatorDisputes", p.addresses.contracts.ValidatorDisputes);
  assert.equal(await p.staking.read.hasRole([SLASH_PROPOSER_ROLE, disputes.address]), true);
  return { p, disputes };
}

/** EIP-712 AttributionDispute signatures of `signers` (ascending by signer, as fileDispute requires). */
async function disputeSigs(
  p: Platform,
  disputes: Address,
  signers: Wallet[],
  accused: Address,
  signed: Hex,
  quorum: Hex,
): Promise<Hex[]> {
  const typed = attributionDisputeTypedData(await p.publicClient.getChainId(), disputes, {
    validator: accused,
    inferenceId: INFERENCE,
    signedResultHash: signed,
    quorumResultHash: quorum,
  });
  return sortSignatures(
    await Promise.all(
      signers.map(async (w) => ({
        signer: w.account.address,
        signature: await w.signTypedData({ account: w.account, ...typed }),
      })),
    ),
  );
}

/** The accused's own EIP-712 AttributionResult signature (attribution domain, bound to the distributor). */
async function resultSig(p: Platform, w: Wallet, resultHash: Hex): Promise<Hex> {
  return w.signTypedData({
    account: w.account,
    ...attributionResultTypedData(
      await p.publicClient.getChainId(),
      { inferenceId: INFERENCE, resultHash },
      p.addresses.contracts.RewardDistributor,
    ),
  });
}

describe("ValidatorDisputes", () => {
  it("a quorum of the other validators files a bounded slash proposal whose evidence binds the signed wrong result", async () => {
    const { p, disputes } = await loadFixture(fixture);
    const [accused, v2, v3] = p.validators as [Wallet, Wallet, Wallet];
    const evidence = await resultSig(p, accused, WRONG);
    const sigs = await disputeSigs(p, disputes.address, [v2, v3], addr(accused), WRONG, RIGHT);
    const before = await p.staking.read.positionOf([addr(accused), StakeRole.Validator, ZERO_SUBJECT]);
    const asReporter = await hre.viem.getContractAt("ValidatorDisputes", disputes.address, {
      client: { wallet: p.reporter },
    });
    await asReporter.write.fileDispute([addr(accused), INFERENCE, WRONG, evidence, RIGHT, sigs]);
    const id = await disputes.read.proposalOf([
      keccak256(encodeAbiParameters([{ type: "address" }, { type: "bytes32" }], [addr(accused), INFERENCE])),
    ]);
    assert.ok(id > 0n);
    const proposal = await p.staking.read.getSlashProposal([id]);
    assert.equal(proposal.account.toLowerCase(), addr(accused).toLowerCase());
    assert.equal(proposal.role, StakeRole.Validator);
    assert.equal(proposal.amount, ((before.active + before.unbonding) * 1_000n) / 10_000n);
    assert.equal(proposal.reporter.toLowerCase(), addr(p.reporter).toLowerCase());
    assert.equal(
      proposal.evidenceHash,
      keccak256(
        encodeAbiParameters(
          [{ type: "bytes32" }, { type: "bytes32" }, { type: "bytes32" }, { type: "bytes32" }],
          [INFERENCE, WRONG, RIGHT, keccak256(evidence)],
        ),
      ),
      "the evidence hash binds the inference, both results and the accused's signature",
    );
    // Once per (validator, inference).
    await expectRevert(
      disputes.write.fileDispute([addr(accused), INFERENCE, WRONG, evidence, RIGHT, sigs]),
      "AlreadyFiled",
    );
  });

  it("attack: one validator alone cannot get another slashed, nor can the accused's own signature count", async () => {
    const { p, disputes } = await loadFixture(fixture);
    const [accused, v2, v3] = p.validators as [Wallet, Wallet, Wallet];
    const evidence = await resultSig(p, accused, WRONG);
    const one = await disputeSigs(p, disputes.address, [v2], addr(accused), WRONG, RIGHT);
    await expectRevert(
      disputes.write.fileDispute([addr(accused), INFERENCE, WRONG, evidence, RIGHT, one]),
      "NoQuorum",
    );
    const withAccused = await disputeSigs(p, disputes.address, [accused, v2], addr(accused), WRONG, RIGHT);
    await expectRevert(
      disputes.write.fileDispute([addr(accused), INFERENCE, WRONG, evidence, RIGHT, withAccused]),
      "AccusedCannotSign",
    );
    // The same signature twice is not two validators.
    const twice = [one[0]!, one[0]!];
    await expectRevert(
      disputes.write.fileDispute([addr(accused), INFERENCE, WRONG, evidence, RIGHT, twice]),
      "SignersNotSorted",
    );
    // A non-validator's signature is no vote.
    const outsiders = await disputeSigs(p, disputes.address, [v3, p.alice], addr(accused), WRONG, RIGHT);
    await expectRevert(
      disputes.write.fileDispute([addr(accused), INFERENCE, WRONG, evidence, RIGHT, outsiders]),
      "NotActiveValidator",
    );
    assert.equal(await p.staking.read.slashProposalCount(), 0n);
  });

  it("attack: a result the accused never signed is no evidence, and agreeing with the quorum is no offence", async () => {
    const { p, disputes } = await loadFixture(fixture);
    const [accused, v2, v3] = p.validators as [Wallet, Wallet, Wallet];
    const sigs = await disputeSigs(p, disputes.address, [v2, v3], addr(accused), WRONG, RIGHT);
    // The accused signed RIGHT; the disputers claim it signed WRONG.
    const signedRight = await resultSig(p, accused, RIGHT);
    await expectRevert(
      disputes.write.fileDispute([addr(accused), INFERENCE, WRONG, signedRight, RIGHT, sigs]),
      "NotSignedByValidator",
    );
    await expectRevert(
      disputes.write.fileDispute([addr(accused), INFERENCE, RIGHT, signedRight, RIGHT, sigs]),
      "SameResult",
    );
    // Signatures over another claim (another quorum result) do not carry over.
    const evidence = await resultSig(p, accused, WRONG);
    await expectRevert(
      disputes.write.fileDispute([
        addr(accused),
        INFERENCE,
        WRONG,
        evidence,
        keccak256(toHex("other")),
        sigs,
      ]),
      "NotActiveValidator",
    );
  });
});
