import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { getAddress, keccak256, toHex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { HARDHAT_DEV_ACCOUNTS } from "./testing.ts";
import {
  attributionCommitment,
  attributionCommitmentSalt,
  commitAndRevealAttribution,
  recoverAttributionCommitmentSigner,
  recoverAttributionResultSigner,
  recoverEpochRootSigner,
  signAttributionResult,
  signEpochRoot,
  sortSignatures,
} from "./typed-data.ts";

const DISTRIBUTOR = getAddress("0x5fc8d32690cc91d4c39d9d3abcbd16989f875707");
const accounts = HARDHAT_DEV_ACCOUNTS.slice(5, 8).map((a) => privateKeyToAccount(a.privateKey));

describe("EIP-712 typed data", () => {
  it("derives the well-known Hardhat dev keys", () => {
    assert.equal(HARDHAT_DEV_ACCOUNTS[0]!.address, "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266");
    assert.equal(
      HARDHAT_DEV_ACCOUNTS[0]!.privateKey,
      "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    );
  });

  it("epoch root signatures recover their signer and are bound to chain and distributor", async () => {
    const message = { epoch: 3n, root: keccak256(toHex("root")), cumulativeTotal: 10n ** 21n };
    const sig = await signEpochRoot(accounts[0]!, 31337, DISTRIBUTOR, message);
    assert.equal(await recoverEpochRootSigner(31337, DISTRIBUTOR, message, sig), accounts[0]!.address);
    assert.notEqual(await recoverEpochRootSigner(1, DISTRIBUTOR, message, sig), accounts[0]!.address);
    assert.notEqual(
      await recoverEpochRootSigner(31337, DISTRIBUTOR, { ...message, epoch: 4n }, sig),
      accounts[0]!.address,
    );
  });

  it("attribution results sign and recover under their own domain", async () => {
    const message = { inferenceId: keccak256(toHex("inf-1")), resultHash: keccak256(toHex("weights")) };
    const sig = await signAttributionResult(accounts[1]!, 31337, message);
    assert.equal(await recoverAttributionResultSigner(31337, message, sig), accounts[1]!.address);
    assert.notEqual(
      await recoverAttributionResultSigner(31337, { ...message, resultHash: keccak256(toHex("other")) }, sig),
      accounts[1]!.address,
    );
    const bound = await signAttributionResult(accounts[1]!, 31337, message, DISTRIBUTOR);
    assert.notEqual(bound, sig);
    assert.equal(
      await recoverAttributionResultSigner(31337, message, bound, DISTRIBUTOR),
      accounts[1]!.address,
    );
  });

  it("commitments bind the result, the validator and a salt only the validator can derive (deterministically)", async () => {
    const inferenceId = keccak256(toHex("inf-2"));
    const resultHash = keccak256(toHex("weights"));
    const [a, b] = [accounts[0]!, accounts[1]!];
    const salt = await attributionCommitmentSalt(a, 31337, inferenceId, DISTRIBUTOR);
    assert.equal(
      await attributionCommitmentSalt(a, 31337, inferenceId, DISTRIBUTOR),
      salt,
      "same after a restart",
    );
    assert.notEqual(await attributionCommitmentSalt(b, 31337, inferenceId, DISTRIBUTOR), salt);
    assert.notEqual(await attributionCommitmentSalt(a, 31337, keccak256(toHex("inf-3")), DISTRIBUTOR), salt);
    const c = await commitAndRevealAttribution(a, 31337, inferenceId, resultHash, DISTRIBUTOR);
    assert.equal(c.salt, salt);
    assert.equal(c.commitment, attributionCommitment(resultHash, a.address, salt));
    // Another validator revealing the same hash and salt does not open a's commitment.
    assert.notEqual(attributionCommitment(resultHash, b.address, salt), c.commitment);
    assert.notEqual(attributionCommitment(keccak256(toHex("other")), a.address, salt), c.commitment);
    assert.equal(
      await recoverAttributionCommitmentSigner(
        31337,
        { inferenceId, commitment: c.commitment },
        c.commitmentSignature,
        DISTRIBUTOR,
      ),
      a.address,
    );
  });

  it("sorts signatures by signer and rejects duplicates", async () => {
    const message = { epoch: 1n, root: keccak256(toHex("r")), cumulativeTotal: 1n };
    const signed = await Promise.all(
      accounts.map(async (a) => ({
        signer: a.address,
        signature: await signEpochRoot(a, 31337, DISTRIBUTOR, message),
      })),
    );
    const sorted = sortSignatures([...signed].reverse());
    const signers = await Promise.all(
      sorted.map((s) => recoverEpochRootSigner(31337, DISTRIBUTOR, message, s)),
    );
    const asNumbers = signers.map((s) => BigInt(s));
    assert.deepEqual(
      asNumbers,
      [...asNumbers].sort((a, b) => (a < b ? -1 : 1)),
    );
    assert.throws(() => sortSignatures([signed[0]!, signed[0]!]), /duplicate/);
  });
});
