// SignatureVerifier must give exactly the verdict of "recover the address (viem) and compare",
// for valid signatures, other signers, other digests, flipped v, high s, and malformed values.
import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { domainSeparator, type Hex, hashStruct, hashTypedData, keccak256, recoverAddress, toHex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { eip712Digest, SignatureVerifier, structHashOfTwoWords } from "./signatures.ts";

const N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;
const keys = [1n, 2n, 0xdeadbeefn, N - 1n].map((k) => privateKeyToAccount(toHex(k, { size: 32 })));
const hex32 = (n: bigint) => n.toString(16).padStart(64, "0");

async function viemSays(digest: Uint8Array, signature: string, signer: string): Promise<boolean> {
  try {
    const a = await recoverAddress({ hash: toHex(digest), signature: signature as Hex });
    return a.toLowerCase() === signer.toLowerCase();
  } catch {
    return false;
  }
}

/** Variants of a valid signature, most of them invalid in some way. */
function variant(sig: Hex, kind: number, extra: bigint): string {
  const r = BigInt(`0x${sig.slice(2, 66)}`);
  const s = BigInt(`0x${sig.slice(66, 130)}`);
  const v = Number.parseInt(sig.slice(130), 16);
  const vHex = (x: number) => x.toString(16).padStart(2, "0");
  switch (kind) {
    case 0:
      return sig; // as signed (v = 27/28)
    case 1:
      return `0x${hex32(r)}${hex32(s)}${vHex(v - 27)}`; // yParity form (0/1): still valid
    case 2:
      return `0x${hex32(r)}${hex32(s)}${vHex(v === 27 ? 28 : 27)}`; // flipped v
    case 3:
      return `0x${hex32(r)}${hex32(N - s)}${vHex(v === 27 ? 28 : 27)}`; // high s, v flipped: recovers the same key
    case 4:
      return `0x${hex32(r)}${hex32(N - s)}${vHex(v)}`; // high s alone
    case 5:
      return `0x${hex32((r + extra) % N)}${hex32(s)}${vHex(v)}`; // another r
    case 6:
      return `0x${hex32(r)}${hex32((s + extra) % N)}${vHex(v)}`; // another s (0 possible)
    case 7:
      return `0x${hex32(r)}${hex32(s)}${vHex(29)}`; // v out of range
    case 8:
      return `0x${hex32(N + (extra % 1000n))}${hex32(s)}${vHex(v)}`; // r >= n
    default:
      return `0x${"00".repeat(65)}`;
  }
}

for (const native of [true, false]) {
  test(`the verdict equals recover-and-compare (fast-check), ${native ? "native backend" : "JS backend, before and after a key is known"}`, async () => {
    const verifier = new SignatureVerifier(1024, { native });
    if (native) assert.equal(verifier.backend, "native", "libsecp256k1's prebuilt addon loads here");
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.nat({ max: keys.length - 1 }),
        fc.nat({ max: keys.length - 1 }),
        fc.nat({ max: 9 }),
        fc.bigInt({ min: 1n, max: N - 1n }),
        fc.boolean(),
        async (digest, signerIdx, claimedIdx, kind, extra, otherDigest) => {
          const signer = keys[signerIdx]!;
          const sig = await signer.sign({ hash: toHex(digest) });
          const candidate = variant(sig, kind, extra);
          const checked = otherDigest ? keccak256(digest, "bytes") : digest;
          const claimed = keys[claimedIdx]!.address;
          const expected = await viemSays(checked, candidate, claimed);
          assert.equal(verifier.verify(checked, candidate, claimed), expected, `kind ${kind}`);
          // Asked again (the key now likely known): the same verdict.
          assert.equal(verifier.verify(checked, candidate, claimed.toLowerCase()), expected);
        },
      ),
      { numRuns: 150 },
    );
    if (!native) assert.ok(verifier.knownSigners > 0 && verifier.knownSigners <= keys.length);
  });
}

test("non-canonical encodings are left to the caller (undefined); a bounded key cache", async () => {
  const verifier = new SignatureVerifier(2, { native: false });
  const digest = new Uint8Array(32).fill(7);
  const sig = await keys[0]!.sign({ hash: toHex(digest) });
  assert.equal(verifier.verify(digest, sig.slice(0, 131), keys[0]!.address), undefined);
  assert.equal(verifier.verify(digest, `${sig}00`, keys[0]!.address), undefined);
  assert.equal(verifier.verify(digest, sig, "0x1234"), undefined);
  assert.equal(verifier.verify(digest.subarray(1), sig, keys[0]!.address), undefined);
  for (const k of keys)
    assert.equal(verifier.verify(digest, await k.sign({ hash: toHex(digest) }), k.address), true);
  assert.equal(verifier.knownSigners, 2);
});

test("eip712Digest(structHashOfTwoWords) is viem's typed-data hash", () => {
  const domain = {
    name: "OpenLedger Attribution",
    version: "1",
    chainId: 31337,
    verifyingContract: keys[1]!.address,
  };
  const types = {
    AttributionResult: [
      { name: "inferenceId", type: "bytes32" },
      { name: "resultHash", type: "bytes32" },
    ],
  } as const;
  const typeHash = keccak256(toHex("AttributionResult(bytes32 inferenceId,bytes32 resultHash)"));
  const message = { inferenceId: keccak256(toHex("a")), resultHash: keccak256(toHex("b")) };
  const struct = structHashOfTwoWords(typeHash, message.inferenceId, message.resultHash);
  assert.equal(toHex(struct), hashStruct({ data: message, primaryType: "AttributionResult", types }));
  assert.equal(
    toHex(eip712Digest(domainSeparator({ domain }), struct)),
    hashTypedData({ domain, types, primaryType: "AttributionResult", message }),
  );
});
