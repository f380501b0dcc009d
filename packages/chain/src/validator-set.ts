import type { Address } from "viem";
import type { ChainPublicClient } from "./clients.ts";
import { rewardDistributorAbi } from "./generated/abis.ts";

/**
 * The validator quorum as the RewardDistributor counts it: its active validators (admitted by governance
 * and holding the minimum Validator stake on Staking) and how many of them must sign — the governance
 * fraction (>= 2/3, `quorumNumerator/quorumDenominator`) of the active set, rounded up, and at least
 * `minSignatures`. 0 when no validator is active (then nothing can be attested).
 *
 * This is the one quorum of the platform: attribution results (settlement pays a result only when `need`
 * active validators signed the same canonical bytes) and epoch roots (`postEpoch` verifies it on chain).
 */
export interface ValidatorQuorum {
  need: number;
  /** Lower-case addresses of the active validators. */
  active: ReadonlySet<string>;
  numerator: number;
  denominator: number;
  minSignatures: number;
}

/** Reads the distributor's quorum (at `blockNumber`, or the latest block). */
export async function readValidatorQuorum(
  publicClient: ChainPublicClient,
  distributor: Address,
  blockNumber?: bigint,
): Promise<ValidatorQuorum> {
  const at = blockNumber === undefined ? {} : { blockNumber };
  const c = { address: distributor, abi: rewardDistributorAbi, ...at } as const;
  const [need, active, numerator, denominator, minSignatures] = await Promise.all([
    publicClient.readContract({ ...c, functionName: "requiredSignatures" }),
    publicClient.readContract({ ...c, functionName: "activeValidators" }),
    publicClient.readContract({ ...c, functionName: "quorumNumerator" }),
    publicClient.readContract({ ...c, functionName: "quorumDenominator" }),
    publicClient.readContract({ ...c, functionName: "minSignatures" }),
  ]);
  return {
    need: Number(need),
    active: new Set(active.map((a) => a.toLowerCase())),
    numerator: Number(numerator),
    denominator: Number(denominator),
    minSignatures: Number(minSignatures),
  };
}

/**
 * The distributor's quorums at past blocks (an epoch's start, `inferenceEpochBlockSql`): immutable once read,
 * so each block is read once (concurrent callers share the read; a failed read is forgotten), the oldest
 * dropped past `max`. A historical read: on a production L2 the RPC must serve state that old (an archive
 * node). Settlement counts an inference's results against its epoch's quorum with it, and validators
 * decide their disputes with it, so both count the same set.
 */
export class PastValidatorQuorums {
  readonly #byBlock = new Map<string, Promise<ValidatorQuorum>>();

  constructor(readonly max = 1_000) {}

  at(publicClient: ChainPublicClient, distributor: Address, block: bigint): Promise<ValidatorQuorum> {
    const key = `${distributor.toLowerCase()}:${block}`;
    let q = this.#byBlock.get(key);
    if (!q) {
      q = readValidatorQuorum(publicClient, distributor, block);
      q.catch(() => this.#byBlock.delete(key));
      this.#byBlock.set(key, q);
      while (this.#byBlock.size > this.max) this.#byBlock.delete(this.#byBlock.keys().next().value as string);
    }
    return q;
  }
}

interface CachedQuorum {
  distributor: string;
  block: bigint;
  at: number;
  quorum: ValidatorQuorum;
}

/**
 * The quorum for a hot path that only asks "is this address an active validator" (the gateway's
 * adapter-file route): re-read at most every `ttlMs`, and not even then while no block was mined
 * (the set cannot change without one: one `eth_blockNumber` instead of the five reads), the new read
 * pinned to that block. Concurrent callers share one read. A validator removed (or whose stake fell
 * below the minimum) loses access within `ttlMs`; one admitted gains it within `ttlMs`. A miss never
 * forces a re-read: anyone can sign a request, so that would let strangers drive the RPC.
 *
 * No event subscription: the set also changes through Staking (a stake falling below the minimum,
 * a slash) and governance's minimum-stake changes, and over HTTP a log filter is polled anyway — a
 * poll of the logs costs what a re-read of the block number costs (ARCHITECTURE "Decisions": the
 * gateway's validator-set cache).
 */
export class CachedValidatorQuorum {
  #entry: CachedQuorum | undefined;
  #reading: Promise<ValidatorQuorum> | undefined;

  constructor(readonly ttlMs: number) {}

  async get(publicClient: ChainPublicClient, distributor: Address): Promise<ValidatorQuorum> {
    const entry = this.#entry?.distributor === distributor ? this.#entry : undefined;
    if (entry && Date.now() - entry.at < this.ttlMs) return entry.quorum;
    this.#reading ??= this.#read(publicClient, distributor, entry).finally(() => {
      this.#reading = undefined;
    });
    return this.#reading;
  }

  /** Forgets the cached set (the next `get` reads the chain). */
  invalidate(): void {
    this.#entry = undefined;
  }

  async #read(
    publicClient: ChainPublicClient,
    distributor: Address,
    entry: CachedQuorum | undefined,
  ): Promise<ValidatorQuorum> {
    const at = Date.now();
    const block = await publicClient.getBlockNumber({ cacheTime: 0 });
    const quorum =
      entry && entry.block === block
        ? entry.quorum
        : await readValidatorQuorum(publicClient, distributor, block);
    this.#entry = { distributor, block, at, quorum };
    return quorum;
  }
}
