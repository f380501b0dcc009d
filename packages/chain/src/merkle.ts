import { type Address, bytesToHex, getAddress, type Hex, hexToBytes, keccak256 } from "viem";

/**
 * Merkle trees of cumulative earnings, exactly as RewardDistributor.leafHash / MerkleProof verify them:
 * leaf = keccak256(keccak256(abi.encode(uint256 chainId, address distributor, uint64 epoch, address account,
 * uint256 cumulativeAmount))), internal node = keccak256 of the sorted pair.
 *
 * The layout is OpenZeppelin's StandardMerkleTree ("standard-v1": leaves sorted by hash, array-backed tree),
 * and `dump()` is in its format, so `StandardMerkleTree.load(dump)` works and the roots and proofs are
 * identical (merkle.test.ts checks this against @openzeppelin/merkle-tree). It is built here directly on
 * fixed-width byte buffers because the library's generic ABI encoder builds a 100,000-leaf tree in ~5 min
 * on this hardware versus seconds here; settlement builds one per epoch.
 */
export const EARNINGS_LEAF_ENCODING = ["uint256", "address", "uint64", "address", "uint256"] as const;

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

/** OpenZeppelin StandardMerkleTree dump format. */
export interface EarningsTreeDump {
  format: "standard-v1";
  leafEncoding: string[];
  tree: Hex[];
  values: { value: [string, string, string, string, string]; treeIndex: number }[];
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
  /** JSON-safe dump (OpenZeppelin "standard-v1") to store with the epoch; reload with `loadEarningsTree`. */
  dump(): EarningsTreeDump;
}

const ADDRESS_RE = /^0x[0-9a-fA-F]{40}$/;
const MAX_UINT256 = (1n << 256n) - 1n;
const MAX_UINT64 = (1n << 64n) - 1n;

function writeUint(buf: Uint8Array, offset: number, value: bigint): void {
  let v = value;
  for (let i = 31; i >= 0; i--) {
    buf[offset + i] = Number(v & 0xffn);
    v >>= 8n;
  }
}

function writeAddress(buf: Uint8Array, offset: number, address: string): void {
  buf.fill(0, offset, offset + 12);
  buf.set(hexToBytes(address as Hex), offset + 12);
}

function keccak(bytes: Uint8Array): Uint8Array {
  return keccak256(bytes, "bytes");
}

const pair = new Uint8Array(64);
function hashPair(a: Uint8Array, b: Uint8Array): Uint8Array {
  const aFirst = Buffer.compare(a, b) <= 0;
  pair.set(aFirst ? a : b, 0);
  pair.set(aFirst ? b : a, 32);
  return keccak(pair);
}

/** Hash of one leaf, as the contract computes it. */
export function earningsLeafHash(
  chainId: number,
  distributor: Address,
  epoch: bigint,
  account: Address,
  cumulativeAmount: bigint,
): Hex {
  return bytesToHex(leafBytes(prefix(chainId, distributor, epoch), account, cumulativeAmount));
}

function prefix(chainId: number, distributor: Address, epoch: bigint): Uint8Array {
  if (!ADDRESS_RE.test(distributor)) throw new Error(`invalid distributor address ${distributor}`);
  if (epoch < 0n || epoch > MAX_UINT64) throw new Error(`epoch out of range: ${epoch}`);
  const buf = new Uint8Array(160);
  writeUint(buf, 0, BigInt(chainId));
  writeAddress(buf, 32, distributor);
  writeUint(buf, 64, epoch);
  return buf;
}

function leafBytes(buf: Uint8Array, account: string, amount: bigint): Uint8Array {
  writeAddress(buf, 96, account);
  writeUint(buf, 128, amount);
  return keccak(keccak(buf));
}

interface Built {
  tree: Uint8Array[];
  /** Per entry (sorted by account): its index in `tree`. */
  treeIndex: number[];
  accounts: string[]; // lowercase, sorted
  amounts: bigint[];
}

function build(
  chainId: number,
  distributor: Address,
  epoch: bigint,
  entries: readonly EarningsEntry[],
): Built {
  if (entries.length === 0) throw new Error("an earnings tree needs at least one entry");
  const rows = entries.map((e) => {
    if (!ADDRESS_RE.test(e.account)) throw new Error(`invalid account address ${e.account}`);
    if (e.cumulativeAmount <= 0n) throw new Error(`non-positive cumulative amount for ${e.account}`);
    if (e.cumulativeAmount > MAX_UINT256) throw new Error(`amount overflows uint256 for ${e.account}`);
    return { key: e.account.toLowerCase(), amount: e.cumulativeAmount };
  });
  // Fixed-width lowercase hex sorts like the numbers it encodes: a stable, locale-free order.
  rows.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  for (let i = 1; i < rows.length; i++) {
    if (rows[i]!.key === rows[i - 1]!.key)
      throw new Error(`duplicate account ${rows[i]!.key} in earnings tree`);
  }
  const buf = prefix(chainId, distributor, epoch);
  const leaves = rows.map((r, i) => ({ hash: leafBytes(buf, r.key, r.amount), i }));
  // StandardMerkleTree: leaves sorted by hash, placed from the end of the array backwards.
  leaves.sort((a, b) => Buffer.compare(a.hash, b.hash));
  const n = leaves.length;
  const tree = new Array<Uint8Array>(2 * n - 1);
  const treeIndex = new Array<number>(n);
  leaves.forEach((leaf, k) => {
    const at = tree.length - 1 - k;
    tree[at] = leaf.hash;
    treeIndex[leaf.i] = at;
  });
  for (let i = tree.length - 1 - n; i >= 0; i--) tree[i] = hashPair(tree[2 * i + 1]!, tree[2 * i + 2]!);
  return { tree, treeIndex, accounts: rows.map((r) => r.key), amounts: rows.map((r) => r.amount) };
}

function wrap(b: Built, chainId: number, distributor: Address, epoch: bigint): EarningsTree {
  const byAccount = new Map<string, number>();
  for (const [i, a] of b.accounts.entries()) byAccount.set(a, i);
  const cumulativeTotal = b.amounts.reduce((s, x) => s + x, 0n);
  const checksummed = getAddress(distributor);
  return {
    root: bytesToHex(b.tree[0]!),
    cumulativeTotal,
    chainId,
    distributor: checksummed,
    epoch,
    size: b.accounts.length,
    claimFor(account) {
      const i = byAccount.get(account.toLowerCase());
      if (i === undefined) return undefined;
      const proof: Hex[] = [];
      for (let at = b.treeIndex[i]!; at > 0; at = Math.floor((at - 1) / 2)) {
        proof.push(bytesToHex(b.tree[at % 2 === 1 ? at + 1 : at - 1]!));
      }
      return { account: getAddress(b.accounts[i]!), cumulativeAmount: b.amounts[i]!, proof };
    },
    dump() {
      return {
        format: "standard-v1",
        leafEncoding: [...EARNINGS_LEAF_ENCODING],
        tree: b.tree.map((h) => bytesToHex(h)),
        values: b.accounts.map((a, i) => ({
          value: [String(chainId), checksummed, epoch.toString(), a, b.amounts[i]!.toString()],
          treeIndex: b.treeIndex[i]!,
        })),
      };
    },
  };
}

/**
 * Build the tree of one epoch. The same earnings give the same root whatever the input order.
 * Throws on a duplicate account, an invalid address, or a zero amount (a leaf that could never be claimed).
 */
export function buildEarningsTree(params: EarningsTreeParams): EarningsTree {
  const b = build(params.chainId, params.distributor, params.epoch, params.entries);
  return wrap(b, params.chainId, params.distributor, params.epoch);
}

/** Rebuild a tree from a dump and check it reproduces the stored root. */
export function loadEarningsTree(dump: EarningsTreeDump): EarningsTree {
  if (dump.format !== "standard-v1") throw new Error(`unknown tree format ${String(dump.format)}`);
  const first = dump.values[0];
  if (!first) throw new Error("empty earnings tree dump");
  const chainId = Number(first.value[0]);
  const distributor = first.value[1] as Address;
  const epoch = BigInt(first.value[2]);
  const tree = buildEarningsTree({
    chainId,
    distributor,
    epoch,
    entries: dump.values.map((v) => {
      if (Number(v.value[0]) !== chainId || BigInt(v.value[2]) !== epoch)
        throw new Error("mixed epochs in dump");
      return { account: v.value[3] as Address, cumulativeAmount: BigInt(v.value[4]) };
    }),
  });
  if (tree.root !== dump.tree[0]) throw new Error("earnings tree dump does not reproduce its root");
  return tree;
}

/** Off-chain check of a claim against a root (what the contract does, without a node). */
export function verifyEarningsClaim(
  root: Hex,
  chainId: number,
  distributor: Address,
  epoch: bigint,
  claim: EarningsClaim,
): boolean {
  let node = hexToBytes(earningsLeafHash(chainId, distributor, epoch, claim.account, claim.cumulativeAmount));
  for (const p of claim.proof) node = hashPair(node, hexToBytes(p));
  return bytesToHex(node) === root.toLowerCase();
}
