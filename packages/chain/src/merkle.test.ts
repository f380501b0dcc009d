import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { StandardMerkleTree } from "@openzeppelin/merkle-tree";
import { type Address, getAddress } from "viem";
import {
  buildEarningsTree,
  EARNINGS_LEAF_ENCODING,
  type EarningsEntry,
  earningsLeafHash,
  loadEarningsTree,
  verifyEarningsClaim,
} from "./merkle.ts";

const DISTRIBUTOR = getAddress("0x5fc8d32690cc91d4c39d9d3abcbd16989f875707");
const account = (i: number): Address =>
  getAddress(`0x${(0x1000n + BigInt(i)).toString(16).padStart(40, "0")}`);
const entries: EarningsEntry[] = Array.from({ length: 37 }, (_, i) => ({
  account: account(i),
  cumulativeAmount: BigInt(i + 1) * 1_000_000_007n,
}));

describe("earnings merkle tree", () => {
  it("is deterministic whatever the input order, and sums the cumulative total", () => {
    const a = buildEarningsTree({ chainId: 31337, distributor: DISTRIBUTOR, epoch: 4n, entries });
    const b = buildEarningsTree({
      chainId: 31337,
      distributor: DISTRIBUTOR,
      epoch: 4n,
      entries: [...entries].reverse(),
    });
    assert.equal(a.root, b.root);
    assert.equal(a.size, 37);
    assert.equal(
      a.cumulativeTotal,
      entries.reduce((s, e) => s + e.cumulativeAmount, 0n),
    );
  });

  it("binds the root to chain id, distributor and epoch", () => {
    const base = buildEarningsTree({ chainId: 31337, distributor: DISTRIBUTOR, epoch: 4n, entries }).root;
    assert.notEqual(
      buildEarningsTree({ chainId: 1, distributor: DISTRIBUTOR, epoch: 4n, entries }).root,
      base,
    );
    assert.notEqual(
      buildEarningsTree({ chainId: 31337, distributor: account(99), epoch: 4n, entries }).root,
      base,
    );
    assert.notEqual(
      buildEarningsTree({ chainId: 31337, distributor: DISTRIBUTOR, epoch: 5n, entries }).root,
      base,
    );
  });

  it("gives proofs that verify, for every account, and that fail for a changed amount", () => {
    const tree = buildEarningsTree({ chainId: 31337, distributor: DISTRIBUTOR, epoch: 4n, entries });
    for (const e of entries) {
      const claim = tree.claimFor(e.account)!;
      assert.equal(claim.cumulativeAmount, e.cumulativeAmount);
      assert.ok(verifyEarningsClaim(tree.root, 31337, DISTRIBUTOR, 4n, claim));
      assert.ok(
        !verifyEarningsClaim(tree.root, 31337, DISTRIBUTOR, 4n, {
          ...claim,
          cumulativeAmount: e.cumulativeAmount + 1n,
        }),
      );
      assert.ok(!verifyEarningsClaim(tree.root, 31337, DISTRIBUTOR, 5n, claim));
    }
    assert.equal(tree.claimFor(account(500)), undefined);
  });

  it("leaf hashes are OpenZeppelin's double-hashed standard leaves (what the contract computes)", () => {
    const values = [["31337", DISTRIBUTOR, "4", account(3), "42"]];
    const oz = StandardMerkleTree.of(values, [...EARNINGS_LEAF_ENCODING]);
    assert.equal(oz.leafHash(values[0]!), earningsLeafHash(31337, DISTRIBUTOR, 4n, account(3), 42n));
    // A single-leaf tree's root is the leaf itself.
    const single = buildEarningsTree({
      chainId: 31337,
      distributor: DISTRIBUTOR,
      epoch: 4n,
      entries: [{ account: account(3), cumulativeAmount: 42n }],
    });
    assert.equal(single.root, earningsLeafHash(31337, DISTRIBUTOR, 4n, account(3), 42n));
  });

  it("is identical to @openzeppelin/merkle-tree's StandardMerkleTree: root, proofs, dump", () => {
    for (const size of [1, 2, 3, 5, 8, 37]) {
      const sub = entries.slice(0, size);
      const ours = buildEarningsTree({ chainId: 31337, distributor: DISTRIBUTOR, epoch: 9n, entries: sub });
      const oz = StandardMerkleTree.of(
        sub.map((e) => ["31337", DISTRIBUTOR, "9", e.account, e.cumulativeAmount.toString()]),
        [...EARNINGS_LEAF_ENCODING],
      );
      assert.equal(ours.root, oz.root);
      for (const [i, v] of oz.entries()) {
        assert.deepEqual(ours.claimFor(v[3] as Address)!.proof, oz.getProof(i));
      }
      // Our dump loads in OpenZeppelin's library and proves the same leaves.
      const loaded = StandardMerkleTree.load(ours.dump() as never);
      assert.equal(loaded.root, ours.root);
      loaded.validate();
    }
  });

  it("round-trips through dump/load (stored with the epoch)", () => {
    const tree = buildEarningsTree({ chainId: 31337, distributor: DISTRIBUTOR, epoch: 4n, entries });
    const loaded = loadEarningsTree(JSON.parse(JSON.stringify(tree.dump())));
    const tampered = tree.dump();
    tampered.values[0]!.value[4] = "1";
    assert.throws(() => loadEarningsTree(tampered), /does not reproduce/);
    assert.equal(loaded.root, tree.root);
    assert.equal(loaded.epoch, 4n);
    assert.equal(loaded.cumulativeTotal, tree.cumulativeTotal);
    assert.deepEqual(loaded.claimFor(account(7)), tree.claimFor(account(7)));
  });

  it("rejects duplicate accounts, non-positive amounts and empty trees", () => {
    const p = { chainId: 31337, distributor: DISTRIBUTOR, epoch: 1n };
    assert.throws(() => buildEarningsTree({ ...p, entries: [] }), /at least one/);
    assert.throws(
      () =>
        buildEarningsTree({
          ...p,
          entries: [
            { account: account(1), cumulativeAmount: 1n },
            { account: account(1).toLowerCase() as Address, cumulativeAmount: 2n },
          ],
        }),
      /duplicate/,
    );
    assert.throws(
      () => buildEarningsTree({ ...p, entries: [{ account: account(1), cumulativeAmount: 0n }] }),
      /non-positive/,
    );
  });
});
