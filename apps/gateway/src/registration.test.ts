// On-chain adapter registration is a chain intent retried by the sweeper: a chain that refuses the
// transaction (down), or that takes it but whose answer is lost, still ends with the adapter
// registered exactly once. Real Postgres and a real local chain; only the HTTP hop to the node
// fails, through a proxy in front of it.
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { createChainPublicClient, modelRegistryAbi } from "@openledger/chain";
import { type LocalChain, startLocalChain } from "@openledger/chain/testing";
import { gatewayEnv, parseConfig, TINY_MODEL_ENV } from "@openledger/config";
import { Prisma } from "@openledger/db";
import { createTestDatabase, type TestDatabase } from "@openledger/db/testing";
import { createServiceChain } from "@openledger/service-kit";
import type { FastifyBaseLogger } from "fastify";
import type { Hex } from "viem";
import { ModelCatalog } from "./plugins/catalog.ts";
import { ModelRegistration, sweepRegistrations } from "./plugins/registration.ts";

/** Forwards JSON-RPC to the node, except `eth_sendRawTransaction` while a fault is set:
 *  "refuse" answers 503 without forwarding; "lose-response" forwards (the node takes the
 *  transaction) but answers 502. */
class FlakyRpc {
  fault: "refuse" | "lose-response" | undefined;
  forwardedSends = 0;
  readonly #server: Server;
  url = "";

  constructor(private readonly target: string) {
    this.#server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", async () => {
        const body = Buffer.concat(chunks).toString("utf8");
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
        if (isSend) this.forwardedSends++;
        if (isSend && this.fault === "lose-response") {
          res.writeHead(502).end("bad gateway");
          return;
        }
        res.writeHead(upstream.status, { "content-type": "application/json" }).end(text);
      });
    });
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
let registration: ModelRegistration;
let dir: string;
const silent = { warn() {}, info() {}, error() {}, debug() {} } as unknown as FastifyBaseLogger;
const BASE_HASH = "ab".repeat(32);

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "gw-registration-"));
  const addressesFile = path.join(dir, "addresses.json");
  chain = await startLocalChain({ writeAddresses: addressesFile });
  database = await createTestDatabase("gwreg");
  rpc = new FlakyRpc(chain.rpcUrl);
  await rpc.start();
  const config = parseConfig("gateway", gatewayEnv, {
    ...TINY_MODEL_ENV,
    DATABASE_URL: database.url,
    CHAIN_RPC_URL: rpc.url,
    CHAIN_ADDRESSES_FILE: addressesFile,
    GATEWAY_DATA_DIR: dir,
    LOG_LEVEL: "silent",
    CHAIN_PROFILE: "dev",
  });
  // Registration needs no queue and, of the catalog, only the base model's content hash.
  const catalog = new ModelCatalog(config, database.db);
  catalog.remember({
    id: config.GATEWAY_BASE_MODEL_ID,
    kind: "base",
    ownerAddress: `0x${"00".repeat(20)}`,
    contentHash: BASE_HASH,
    priceInPer1kWei: new Prisma.Decimal(0),
    priceOutPer1kWei: new Prisma.Decimal(0),
    createdAt: new Date(),
  });
  registration = new ModelRegistration(
    config,
    database.db,
    createServiceChain(config, { operator: "GATEWAY_OPERATOR_PRIVATE_KEY" }),
    catalog,
    silent,
  );
});

after(async () => {
  await rpc?.stop();
  await chain?.stop();
  await database?.drop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const pub = () => createChainPublicClient({ rpcUrl: chain.rpcUrl, chainId: chain.chainId });

async function registrations(contentHash: string): Promise<number> {
  const logs = await pub().getContractEvents({
    address: chain.addresses!.contracts.ModelRegistry,
    abi: modelRegistryAbi,
    eventName: "ModelRegistered",
    fromBlock: 0n,
  });
  return logs.filter((l) => l.args.contentHash === `0x${contentHash}`).length;
}

function register(id: string, contentHash: string) {
  return registration.register({
    id,
    owner: chain.accounts.users[0]!.address.toLowerCase(),
    contentHash,
    priceIn: 1000n,
    priceOut: 2000n,
    datanetVersionIds: [],
    onChain: true,
  });
}

async function assertRegisteredOnce(id: string, contentHash: string) {
  const intent = await database.db.chainIntent.findUniqueOrThrow({
    where: { key: `model.register:${contentHash}` },
  });
  assert.equal(intent.status, "confirmed");
  const onChainId = await pub().readContract({
    address: chain.addresses!.contracts.ModelRegistry,
    abi: modelRegistryAbi,
    functionName: "modelIdByContentHash",
    args: [`0x${contentHash}` as Hex],
  });
  assert.ok(onChainId > 0n);
  const row = await database.db.model.findUniqueOrThrow({ where: { id } });
  assert.equal(row.chainModelId?.toFixed(0), onChainId.toString());
  assert.equal(await registrations(contentHash), 1, "registered once");
}

test("the chain refuses the registration: it stays pending, and the sweeper registers it once", async () => {
  const hash = "c1".repeat(32);
  rpc.fault = "refuse";
  const first = await register("adapter-refused", hash);
  assert.equal(first.chain.status, "pending", JSON.stringify(first.chain));
  assert.ok("error" in first.chain && first.chain.error, "the reason is reported");
  const pending = await database.db.chainIntent.findUniqueOrThrow({
    where: { key: `model.register:${hash}` },
  });
  // No answer from the node: the signed transaction is kept (submitted) and re-broadcast later.
  assert.notEqual(pending.status, "confirmed");
  assert.ok(pending.error);
  assert.equal(await registrations(hash), 0);
  // Still down: a sweep changes nothing.
  assert.equal(await sweepRegistrations(database.db, registration.chain, { olderThanMs: 0 }), 0);
  assert.equal(await registrations(hash), 0);
  rpc.fault = undefined;
  assert.equal(await sweepRegistrations(database.db, registration.chain, { olderThanMs: 0 }), 1);
  await assertRegisteredOnce("adapter-refused", hash);
  // Nothing left to sweep.
  assert.equal(await sweepRegistrations(database.db, registration.chain, { olderThanMs: 0 }), 0);
  assert.equal(await registrations(hash), 1);
});

test("the node takes the transaction but its answer is lost: it is confirmed from its receipt and sent once", async () => {
  const hash = "c2".repeat(32);
  rpc.fault = "lose-response";
  const sendsBefore = rpc.forwardedSends;
  const operator = chain.accounts.operator.address;
  const nonce = await pub().getTransactionCount({ address: operator });
  const first = await register("adapter-lost-answer", hash);
  rpc.fault = undefined;
  assert.equal(rpc.forwardedSends, sendsBefore + 1, "the node got the transaction, once");
  assert.equal(first.chain.status, "confirmed", JSON.stringify(first.chain));
  assert.equal(await sweepRegistrations(database.db, registration.chain, { olderThanMs: 0 }), 0);
  assert.equal(await pub().getTransactionCount({ address: operator }), nonce + 1, "nothing sent again");
  await assertRegisteredOnce("adapter-lost-answer", hash);
});

test("killed after the registration was confirmed but before the model got its on-chain id: the sweeper links it, sends nothing", async () => {
  const hash = "c3".repeat(32);
  const first = await register("adapter-unlinked", hash);
  assert.equal(first.chain.status, "confirmed", JSON.stringify(first.chain));
  // The crash: the intent is confirmed, the model's chainModelId was never written.
  await database.db.model.update({ where: { id: "adapter-unlinked" }, data: { chainModelId: null } });
  const operator = chain.accounts.operator.address;
  const nonce = await pub().getTransactionCount({ address: operator });
  assert.equal(await sweepRegistrations(database.db, registration.chain, { olderThanMs: 0 }), 1);
  assert.equal(await pub().getTransactionCount({ address: operator }), nonce, "nothing sent again");
  await assertRegisteredOnce("adapter-unlinked", hash);
  assert.equal(
    await sweepRegistrations(database.db, registration.chain, { olderThanMs: 0 }),
    0,
    "nothing left",
  );
});
