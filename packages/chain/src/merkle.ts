import { StandardMerkleTree } from "@openzeppelin/merkle-tree";
import { type Address, encodeAbiParameters, getAddress, type Hex, keccak256 } from "viem";

/**
 * Merkle trees of cumulative earnings, exactly as RewardDistributor.leafHash verifies them:
 * leaf = keccak256(keccak256(abi.encode(uint256 chainId, address distributor, uint64 epoch, address account,
 * uint256 cumulativeAmount))), sorted-pair hashing (OpenZeppelin StandardMerkleTree / MerkleProof).
 */
export const EARNINGS_LEAF_ENCODING = ["uint256", "address", "uint64", "address", "uint256"] as const;

type LeafValue = [string, string, string, string, string];

export interface EarningsEntry {
  account: Address;
  /** Everything the account has earned up to and including this epoch (wei). Never decreases. */
  cumulativeAmount: bigint;
}

export interface EarningsTreeParams {
  chainId: number;
  distributor: Address;
  epoch: bigint;
  entries: readonly EarningsEntry[];
}

export interface EarningsClaim {
  account: Address;
  cumulativeAmount: bigint;
  proof: Hex[];
}

export interface EarningsTree {
  root: Hex;
  /** Sum of all cumulative amounts: the `cumulativeTotal` posted with the root. */
  cumulativeTotal: bigint;
  chainId: number;
  distributor: Address;
  epoch: bigint;
  size: number;
  /** Claim data (amount + proof) for an account, or undefined when it has no leaf. */
  claimFor(account: Address): EarningsClaim | undefined;
  /** JSON-safe dump (OpenZeppelin format) to store with the epoch and reload with `loadEarningsTree`. */
  dump(): unknown;
}

export function earningsLeafHash(
  chainId: number,
  distributor: Address,
  epoch: bigint,
  account: Address,
  cumulativeAmount: bigint,
): Hex {
  const inner = keccak256(
    encodeAbiParameters(
      [
        { type: "uint256" },
        { type: "address" },
        { type: "uint64" },
        { type: "address" },
        { type: "uint256" },
      ],
      [BigInt(chainId), distributor, epoch, account, cumulativeAmount],
    ),
  );
  return keccak256(inner);
}

function wrap(
  tree: StandardMerkleTree<LeafValue>,
  meta: { chainId: number; distributor: Address; epoch: bigint },
): EarningsTree {
  const indexByAccount = new Map<string, number>();
  let cumulativeTotal = 0n;
  for (const [i, v] of tree.entries()) {
    indexByAccount.set(v[3].toLowerCase(), i);
    cumulativeTotal += BigInt(v[4]);
  }
  return {
    root: tree.root as Hex,
    cumulativeTotal,
    chainId: meta.chainId,
    distributor: meta.distributor,
    epoch: meta.epoch,
    size: indexByAccount.size,
    claimFor(account) {
      const i = indexByAccount.get(account.toLowerCase());
      if (i === undefined) return undefined;
      const v = tree.at(i)!;
      return { account: getAddress(v[3]), cumulativeAmount: BigInt(v[4]), proof: tree.getProof(i) as Hex[] };
    },
    dump: () => tree.dump(),
  };
}

/**
 * Build the tree of one epoch. Entries are sorted by account so the same earnings always give the same root.
 * Throws on a duplicate account or a zero/negative amount (a leaf that could never be claimed).
 */
export function buildEarningsTree(params: EarningsTreeParams): EarningsTree {
  if (params.entries.length === 0) throw new Error("an earnings tree needs at least one entry");
  const seen = new Set<string>();
  const entries = [...params.entries].sort((a, b) => {
    const x = BigInt(a.account);
    const y = BigInt(b.account);
    return x < y ? -1 : x > y ? 1 : 0;
  });
  const chainId = params.chainId.toString();
  const distributor = getAddress(params.distributor);
  const epoch = params.epoch.toString();
  const values: LeafValue[] = entries.map((e) => {
    const key = e.account.toLowerCase();
    if (seen.has(key)) throw new Error(`duplicate account ${e.account} in earnings tree`);
    seen.add(key);
    if (e.cumulativeAmount <= 0n) throw new Error(`non-positive cumulative amount for ${e.account}`);
    return [chainId, distributor, epoch, getAddress(e.account), e.cumulativeAmount.toString()];
  });
  const tree = StandardMerkleTree.of(values, [...EARNINGS_LEAF_ENCODING]);
  return wrap(tree, { chainId: params.chainId, distributor, epoch: params.epoch });
}

export function loadEarningsTree(dump: unknown): EarningsTree {
  const tree = StandardMerkleTree.load(dump as Parameters<typeof StandardMerkleTree.load<LeafValue>>[0]);
  const first = tree.at(0);
  if (!first) throw new Error("empty earnings tree dump");
  return wrap(tree, {
    chainId: Number(first[0]),
    distributor: getAddress(first[1]),
    epoch: BigInt(first[2]),
  });
}

/** Off-chain check of a claim against a root (what the contract does, without a node). */
export function verifyEarningsClaim(
  root: Hex,
  chainId: number,
  distributor: Address,
  epoch: bigint,
  claim: EarningsClaim,
): boolean {
  return StandardMerkleTree.verify(
    root,
    [...EARNINGS_LEAF_ENCODING],
    [
      chainId.toString(),
      getAddress(distributor),
      epoch.toString(),
      getAddress(claim.account),
      claim.cumulativeAmount.toString(),
    ],
    claim.proof,
  );
}
