import {
  type ChainPublicClient,
  type ChainWalletClient,
  createChainClients,
  createChainPublicClient,
  defaultAddressesPath,
  loadAddresses,
  type PlatformAddresses,
} from "@openledger/chain";
import { localAccounts } from "@openledger/chain/testing";
import type { DatanetsConfig } from "@openledger/config";
import type { Db } from "@openledger/db";
import { AppError } from "@openledger/errors";
import { type Address, type Hex, keccak256, type TransactionReceipt } from "viem";

const LOCAL_CHAIN_ID = 31337;

export interface ChainAccess {
  chainId: number;
  addresses: PlatformAddresses;
  publicClient: ChainPublicClient;
  /** Signs as the operator (PUBLISHER_ROLE / SLASHER_ROLE); never logged. */
  walletClient: ChainWalletClient;
  operator: Address;
}

/**
 * Connects lazily (the service starts while the chain is down) and caches the connection once it
 * worked. Chain id comes from the node; addresses from CHAIN_ADDRESSES_FILE or the default path.
 */
export class ChainConnector {
  #access: Promise<ChainAccess> | undefined;

  constructor(private readonly config: DatanetsConfig) {}

  get(): Promise<ChainAccess> {
    if (!this.#access) {
      this.#access = this.#connect();
      this.#access.catch(() => {
        this.#access = undefined; // retry on the next call
      });
    }
    return this.#access;
  }

  /** Like get(), but a failure is a 503 CHAIN_UNAVAILABLE for HTTP callers. */
  async require(): Promise<ChainAccess> {
    try {
      return await this.get();
    } catch (err) {
      throw new AppError("CHAIN_UNAVAILABLE", `the chain is not reachable: ${(err as Error).message}`, {
        status: 503,
      });
    }
  }

  async #connect(): Promise<ChainAccess> {
    const probe = createChainPublicClient({ rpcUrl: this.config.CHAIN_RPC_URL, chainId: 1 });
    const chainId = await probe.getChainId();
    const addresses = await loadAddresses(this.config.CHAIN_ADDRESSES_FILE ?? defaultAddressesPath(chainId));
    if (addresses.chainId !== chainId) {
      throw new Error(`addresses file is for chain ${addresses.chainId}, the node is chain ${chainId}`);
    }
    let key = this.config.DATANETS_OPERATOR_PRIVATE_KEY as Hex | undefined;
    if (!key) {
      if (chainId !== LOCAL_CHAIN_ID) {
        throw new Error(`DATANETS_OPERATOR_PRIVATE_KEY is required on chain ${chainId}`);
      }
      // Hardhat's well-known account #1: the operator of a local deployment (chain 31337 only).
      key = localAccounts().operator.privateKey;
    }
    const { publicClient, walletClient } = createChainClients({
      rpcUrl: this.config.CHAIN_RPC_URL,
      chainId,
      privateKey: key,
    });
    return { chainId, addresses, publicClient, walletClient, operator: walletClient.account.address };
  }
}

// ------------------------------------------------------------------ chain intents

/** What an intent sends: a contract call, already encoded, from the operator. */
export interface IntentCall {
  to: Address;
  data: Hex;
}

interface IntentPayload {
  call: IntentCall;
  /** Set once signed: the raw transaction, re-broadcast on retry (same hash, never a second tx). */
  raw?: Hex;
  nonce?: number;
  [k: string]: unknown;
}

export type IntentOutcome =
  | { status: "confirmed"; receipt: TransactionReceipt; intentId: string }
  | { status: "failed"; error: string; intentId: string };

/** One signer at a time in this process: nonces are taken from the chain's pending count. */
let signing: Promise<unknown> = Promise.resolve();
function serialize<T>(fn: () => Promise<T>): Promise<T> {
  const run = signing.then(fn, fn);
  signing = run.catch(() => {});
  return run;
}

const NONCE_TOO_LOW = /nonce too low|nonce has already been used|already known|known transaction/i;

/**
 * Runs a recorded on-chain write. The intent row exists before anything is sent (the caller
 * creates it in the same transaction as the state it belongs to). Here: sign with the operator
 * key and store the raw transaction and its hash (status submitted) BEFORE broadcasting, then
 * broadcast and wait for the receipt. A retry of a submitted intent re-broadcasts the same raw
 * bytes (same hash), so it can never be mined twice; it re-signs only when the old transaction
 * can provably never be mined (its nonce was used by another transaction and it has no receipt).
 * `apply` records the effect of a successful receipt in the same DB transaction that confirms it.
 */
export async function runIntent(
  db: Db,
  chain: ChainAccess,
  intentId: string,
  apply: (tx: Parameters<Parameters<Db["$transaction"]>[0]>[0], receipt: TransactionReceipt) => Promise<void>,
): Promise<IntentOutcome> {
  const intent = await db.chainIntent.findUniqueOrThrow({ where: { id: intentId } });
  if (intent.status === "confirmed") {
    const receipt = await chain.publicClient.getTransactionReceipt({ hash: intent.txHash as Hex });
    return { status: "confirmed", receipt, intentId };
  }
  if (intent.status === "failed") return { status: "failed", error: intent.error ?? "failed", intentId };

  const payload = intent.payload as unknown as IntentPayload;
  let txHash = intent.txHash as Hex | null;

  if (txHash) {
    const existing = await chain.publicClient.getTransactionReceipt({ hash: txHash }).catch(() => null);
    if (existing) return finish(db, intentId, existing, apply);
    // Not mined: re-broadcast the same bytes, unless that nonce is gone for good.
    const confirmedNonce = await chain.publicClient.getTransactionCount({
      address: chain.operator,
      blockTag: "latest",
    });
    if (payload.nonce !== undefined && confirmedNonce > payload.nonce) {
      // The nonce is used: either ours was mined just now, or another transaction took it.
      const mined = await chain.publicClient.getTransactionReceipt({ hash: txHash }).catch(() => null);
      if (mined) return finish(db, intentId, mined, apply);
      txHash = null; // replaced by another transaction with the same nonce: safe to sign again
    }
  }

  if (!txHash) {
    // The hash this decision was based on (null, or a replaced transaction's): recording our signed
    // transaction is a compare-and-set on it, so of several concurrent callers (in this process or
    // in other replicas) exactly one records and broadcasts; the others drop their signed bytes
    // unsent and wait for the winner's transaction.
    const basedOn = intent.txHash;
    const signed = await serialize(async () => {
      const nonce = await chain.publicClient.getTransactionCount({
        address: chain.operator,
        blockTag: "pending",
      });
      const request = await chain.walletClient.prepareTransactionRequest({
        to: payload.call.to,
        data: payload.call.data,
        nonce,
      });
      const raw = await chain.walletClient.signTransaction(request);
      const hash = keccak256(raw);
      const claimed = await db.chainIntent.updateMany({
        where: { id: intentId, txHash: basedOn, status: { in: ["pending", "submitted"] } },
        data: { status: "submitted", txHash: hash, payload: { ...payload, raw, nonce } as object },
      });
      if (claimed.count === 0) return null; // someone else recorded first: never send ours
      await broadcast(chain, raw);
      return hash;
    });
    if (signed === null) {
      const winner = await db.chainIntent.findUniqueOrThrow({ where: { id: intentId } });
      if (winner.status === "failed") return { status: "failed", error: winner.error ?? "failed", intentId };
      if (!winner.txHash) throw new Error(`intent ${intentId} lost its transaction hash`);
      txHash = winner.txHash as Hex;
    } else {
      txHash = signed;
    }
  } else if (payload.raw) {
    await broadcast(chain, payload.raw);
  }

  const receipt = await chain.publicClient.waitForTransactionReceipt({ hash: txHash, timeout: 60_000 });
  return finish(db, intentId, receipt, apply);
}

async function broadcast(chain: ChainAccess, raw: Hex): Promise<void> {
  try {
    await chain.publicClient.sendRawTransaction({ serializedTransaction: raw });
  } catch (err) {
    // Already in the pool or mined: the receipt wait decides.
    if (!NONCE_TOO_LOW.test((err as Error).message)) throw err;
  }
}

async function finish(
  db: Db,
  intentId: string,
  receipt: TransactionReceipt,
  apply: (tx: Parameters<Parameters<Db["$transaction"]>[0]>[0], receipt: TransactionReceipt) => Promise<void>,
): Promise<IntentOutcome> {
  if (receipt.status !== "success") {
    const error = `transaction ${receipt.transactionHash} reverted`;
    await db.chainIntent.update({ where: { id: intentId }, data: { status: "failed", error } });
    return { status: "failed", error, intentId };
  }
  await db.$transaction(async (tx) => {
    // Several callers may wait for the same receipt: only the first confirms and applies it.
    const confirmed = await tx.chainIntent.updateMany({
      where: { id: intentId, status: { not: "confirmed" } },
      data: { status: "confirmed", txHash: receipt.transactionHash },
    });
    if (confirmed.count === 1) await apply(tx, receipt);
  });
  return { status: "confirmed", receipt, intentId };
}
