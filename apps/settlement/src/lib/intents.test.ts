// The chain-intent protocol (@openledger/chain intents) against real Postgres and a real local
// chain, with an RPC proxy in front of the node that refuses a broadcast or forwards it and loses
// the answer: a crash or a lost answer between "sent" and "confirmed" neither loses nor
// double-posts a write, and an intent confirmed from chain state never reports a hash that is not
// its own successful transaction.
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import { after, before, test } from "node:test";
import {
  type ChainPublicClient,
  type ChainWalletClient,
  createChainPublicClient,
  createChainWalletClient,
  executeIntent,
  type IntentSpec,
  openTokenAbi,
  submitIntent,
} from "@openledger/chain";
import { type LocalChain, startLocalChain } from "@openledger/chain/testing";
import { createTestDatabase, type TestDatabase } from "@openledger/db/testing";
import type { Abi, Address, Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";

/** Forwards JSON-RPC to the node. While `fault` is set, `eth_sendRawTransaction` is either refused
 *  (503, not forwarded) or forwarded with its answer lost (502). Counts calls by method. */
class FlakyRpc {
  fault: "refuse" | "lose-response" | undefined;
  readonly calls = new Map<string, number>();
  readonly #server: Server;
  url = "";

  constructor(private readonly target: string) {
    this.#server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", async () => {
        const body = Buffer.concat(chunks).toString("utf8");
        for (const m of body.matchAll(/"method":"([a-zA-Z_]+)"/g)) {
          this.calls.set(m[1]!, (this.calls.get(m[1]!) ?? 0) + 1);
        }
        const isSend = body.includes('"eth_sendRawTransaction"');
        if (isSend && this.fault === "refuse") {
          res.writeHead(503).end("node down");
          return;
        }
        const upstream = await fetch(this.target, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body,
        });
        const text = await upstream.text();
        if (isSend && this.fault === "lose-response") {
          res.writeHead(502).end("bad gateway");
          return;
        }
        res.writeHead(upstream.status, { "content-type": "application/json" }).end(text);
      });
    });
  }

  count(method: string): number {
    return this.calls.get(method) ?? 0;
  }

  async start(): Promise<void> {
    await new Promise<void>((r) => this.#server.listen(0, "127.0.0.1", r));
    const addr = this.#server.address();
    assert.ok(addr && typeof addr === "object");
    this.url = `http://127.0.0.1:${addr.port}`;
  }

  stop(): Promise<void> {
    return new Promise((r) => this.#server.close(() => r()));
  }
}

let chain: LocalChain;
let database: TestDatabase;
let rpc: FlakyRpc;
let signer: { publicClient: ChainPublicClient; wallet: ChainWalletClient };
let direct: { publicClient: ChainPublicClient; wallet: ChainWalletClient };

before(async () => {
  chain = await startLocalChain();
  database = await createTestDatabase("intents");
  rpc = new FlakyRpc(chain.rpcUrl);
  await rpc.start();
  const key = chain.accounts.settlement.privateKey;
  const opts = { chainId: chain.chainId };
  signer = {
    publicClient: createChainPublicClient({ ...opts, rpcUrl: rpc.url }),
    wallet: createChainWalletClient({ ...opts, rpcUrl: rpc.url, privateKey: key }),
  };
  direct = {
    publicClient: createChainPublicClient({ ...opts, rpcUrl: chain.rpcUrl }),
    wallet: createChainWalletClient({ ...opts, rpcUrl: chain.rpcUrl, privateKey: key }),
  };
});

after(async () => {
  await rpc?.stop();
  await chain?.stop();
  await database?.drop();
});

const rpcCall = (method: string, params: unknown[] = []) => chain.rpc(method, params);

const token = () => chain.addresses!.contracts.OpenToken;
const owner = () => chain.accounts.settlement.address;
const allowance = (spender: Address) =>
  direct.publicClient.readContract({
    address: token(),
    abi: openTokenAbi,
    functionName: "allowance",
    args: [owner(), spender],
  });

/** An idempotent write whose effect is readable: approve(spender, amount). */
function approveSpec(key: string, spender: Address, amount: bigint): IntentSpec {
  return {
    key,
    kind: "test.approve",
    payload: { spender, amount: amount.toString() },
    call: { address: token(), abi: openTokenAbi as Abi, functionName: "approve", args: [spender, amount] },
    isDone: async () => (await allowance(spender)) === amount,
  };
}

const freshSpender = () =>
  privateKeyToAccount(`0x${crypto.randomUUID().replaceAll("-", "").padEnd(64, "1")}`).address;

async function row(key: string) {
  return database.db.chainIntent.findUniqueOrThrow({ where: { key } });
}

const nonceOf = () => direct.publicClient.getTransactionCount({ address: owner() });

/** Sends approve from the same key with a given nonce (and a gas limit of its own, so it is a different transaction). */
async function approveDirect(
  spender: Address,
  amount: bigint,
  nonce: number,
  extra: Record<string, unknown> = {},
) {
  const hash = await direct.wallet.writeContract({
    address: token(),
    abi: openTokenAbi,
    functionName: "approve",
    args: [spender, amount],
    nonce,
    gas: 123_456n,
    ...extra,
  } as never);
  return hash;
}

test("the effect happened through another transaction: confirmed with no hash, not the stale one", async () => {
  const spender = freshSpender();
  const key = `approve:${spender}`;
  const nonce = await nonceOf();
  const signed = await submitIntent(database.db, signer, approveSpec(key, spender, 5n), {
    crashBeforeBroadcast: true,
  });
  assert.equal(signed.status, "submitted");
  const stale = signed.tx_hash as Hex;
  // Someone (a previous run, another driver) did the same write with this nonce in another transaction.
  const other = await approveDirect(spender, 5n, nonce);
  assert.notEqual(other, stale);
  await direct.publicClient.waitForTransactionReceipt({ hash: other });

  const result = await executeIntent(database.db, signer, approveSpec(key, spender, 5n));
  assert.equal(result.txHash, null, "the never-mined hash is not reported");
  const r = await row(key);
  assert.equal(r.status, "confirmed");
  assert.equal(r.txHash, null);
  // A later call on the confirmed intent reports the same.
  assert.deepEqual(await executeIntent(database.db, signer, approveSpec(key, spender, 5n)), { txHash: null });
  assert.equal(await nonceOf(), nonce + 1, "nothing sent besides the other transaction");
});

test("the broadcast's answer is lost: the transaction is kept and confirmed from its receipt, sent once", async () => {
  const spender = freshSpender();
  const key = `approve:${spender}`;
  const nonce = await nonceOf();
  rpc.fault = "lose-response";
  try {
    const result = await executeIntent(database.db, signer, approveSpec(key, spender, 7n));
    assert.ok(result.txHash);
    const receipt = await direct.publicClient.getTransactionReceipt({ hash: result.txHash as Hex });
    assert.equal(receipt.status, "success");
    const r = await row(key);
    assert.equal(r.status, "confirmed");
    assert.equal(r.txHash, result.txHash);
  } finally {
    rpc.fault = undefined;
  }
  assert.equal(await nonceOf(), nonce + 1, "one transaction");
  assert.equal(await allowance(spender), 7n);
});

test("the broadcast is refused without an answer: the signed transaction is kept and re-broadcast later, once", async () => {
  const spender = freshSpender();
  const key = `approve:${spender}`;
  const nonce = await nonceOf();
  rpc.fault = "refuse";
  let kept: Awaited<ReturnType<typeof row>>;
  try {
    await assert.rejects(executeIntent(database.db, signer, approveSpec(key, spender, 9n)));
    kept = await row(key);
    assert.equal(kept.status, "submitted", "the node may hold it: not forgotten");
    assert.ok(kept.txHash);
  } finally {
    rpc.fault = undefined;
  }
  const result = await executeIntent(database.db, signer, approveSpec(key, spender, 9n));
  assert.equal(result.txHash, kept.txHash, "the same signed bytes were sent");
  assert.equal(await nonceOf(), nonce + 1);
  assert.equal(await allowance(spender), 9n);
});

test("the transaction is replaced (same nonce, other effect): not confirmed by the replacement's receipt", async () => {
  const spender = freshSpender();
  const key = `approve:${spender}`;
  await rpcCall("evm_setAutomine", [false]);
  let miner: NodeJS.Timeout | undefined;
  try {
    const nonce = await nonceOf();
    const signed = await submitIntent(database.db, signer, approveSpec(key, spender, 11n));
    assert.equal(signed.status, "submitted");
    const before = rpc.count("eth_getTransactionByHash");
    const running = executeIntent(database.db, signer, approveSpec(key, spender, 11n));
    // Wait until viem's receipt wait has read the pending transaction (after executeIntent's own read).
    while (rpc.count("eth_getTransactionByHash") < before + 2) await new Promise((r) => setTimeout(r, 20));
    const pending = await direct.publicClient.getTransaction({ hash: signed.tx_hash as Hex });
    const replacement = await approveDirect(spender, 1n, nonce, {
      maxFeePerGas: (pending.maxFeePerGas ?? 0n) * 2n,
      maxPriorityFeePerGas: (pending.maxPriorityFeePerGas ?? 0n) * 2n,
    });
    await rpcCall("evm_mine");
    await rpcCall("evm_setAutomine", [true]);
    miner = setInterval(() => void rpcCall("evm_mine"), 200);
    const result = await running;
    assert.notEqual(result.txHash, replacement);
    assert.notEqual(result.txHash, signed.tx_hash, "our transaction was never mined");
    assert.ok(result.txHash);
    const receipt = await direct.publicClient.getTransactionReceipt({ hash: result.txHash as Hex });
    assert.equal(receipt.status, "success");
    assert.equal(await allowance(spender), 11n, "the intended effect is on chain");
    assert.equal((await row(key)).txHash, result.txHash);
  } finally {
    if (miner) clearInterval(miner);
    await rpcCall("evm_setAutomine", [true]);
  }
});

test("a driver that lost a race does not overwrite the newer transaction another driver confirmed", async () => {
  const spender = freshSpender();
  const key = `approve:${spender}`;
  const spec = approveSpec(key, spender, 13n);
  const nonce = await nonceOf();
  const signed = await submitIntent(database.db, signer, spec, { crashBeforeBroadcast: true });
  // Its nonce goes to another transaction with another effect: the signed one can never be mined.
  await direct.publicClient.waitForTransactionReceipt({ hash: await approveDirect(spender, 1n, nonce) });
  // Driver A pauses right before it forgets that transaction.
  let reached!: () => void;
  const atReset = new Promise<void>((r) => {
    reached = r;
  });
  let release!: () => void;
  const gate = new Promise<void>((r) => {
    release = r;
  });
  const db = database.db;
  const pausing = {
    async $executeRawUnsafe(query: string, ...values: unknown[]) {
      if (query.includes("SET status = 'pending'")) {
        reached();
        await gate;
      }
      return db.$executeRawUnsafe(query, ...values);
    },
    $queryRawUnsafe: <T>(query: string, ...values: unknown[]) => db.$queryRawUnsafe<T>(query, ...values),
  };
  const driverA = executeIntent(pausing, signer, spec);
  await atReset;
  // Driver B meanwhile forgets it, signs a new transaction and confirms it.
  const b = await executeIntent(database.db, signer, spec);
  assert.ok(b.txHash);
  assert.notEqual(b.txHash, signed.tx_hash);
  release();
  const a = await driverA;
  assert.equal(a.txHash, b.txHash, "A sees B's confirmation");
  const r = await row(key);
  assert.equal(r.status, "confirmed");
  assert.equal(r.txHash, b.txHash, "B's transaction is not forgotten");
  assert.equal(await nonceOf(), nonce + 2, "the other transaction and B's, nothing more");
  assert.equal(await allowance(spender), 13n);
});
