// A cut stream is billed for what was delivered — with the gateway as a real process: SIGKILLed
// mid-stream (the tokens the client received are recovered from what was written before they were
// sent, and the holds are released when the replica comes back, not when they expire), and a
// client that disconnects mid-stream. Real Postgres, Redis and a local chain.
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { OPEN } from "@openledger/chain";
import { devApiKeyRequest, type LocalChain, startLocalChain } from "@openledger/chain/testing";
import { TINY_MODEL_ENV } from "@openledger/config";
import { freePort, testEnvironment } from "@openledger/service-kit/testing";
import { gatewayConfig } from "./app.ts";
import { MAX_UNSENT_CHARS } from "./lib/completion.ts";
import { Billing } from "./plugins/billing.ts";
import { depositToEscrow } from "./testing.ts";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
let env: Awaited<ReturnType<typeof testEnvironment>>;
let chain: LocalChain;
let dir: string;
let childEnv: Record<string, string>;
let url: string;
let gateway: ChildProcess | undefined;
let output = "";
let key: string;
let account: string;
let billing: Billing;

async function startGateway(): Promise<void> {
  output = "";
  const child = spawn(process.execPath, ["--import", "tsx", path.join(ROOT, "apps/gateway/src/server.ts")], {
    cwd: ROOT,
    env: { ...process.env, ...childEnv },
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stdout!.on("data", (d: Buffer) => {
    output = (output + d.toString()).slice(-20_000);
  });
  child.stderr!.on("data", (d: Buffer) => {
    output = (output + d.toString()).slice(-20_000);
  });
  gateway = child;
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) assert.fail(`the gateway exited during start-up:\n${output}`);
    const ready = await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(2000) }).catch(() => undefined);
    if (ready?.status === 200) return;
    if (i > 600) assert.fail(`the gateway was not ready:\n${output}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function killGateway(): Promise<void> {
  const child = gateway;
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGKILL");
  await exited;
}

/** A streamed chat completion read event by event; `onChunk` runs after each content chunk. */
async function stream(
  content: string,
  onChunk: (chunks: number, delta: string, inferenceId: string) => void,
  signal?: AbortSignal,
  maxTokens = 1000,
): Promise<{ inferenceId: string; received: string; done: boolean }> {
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
    body: JSON.stringify({
      model: "openledger-tiny",
      messages: [{ role: "user", content }],
      max_tokens: maxTokens,
      temperature: 0,
      stream: true,
    }),
    ...(signal ? { signal } : {}),
  });
  assert.equal(res.status, 200);
  const inferenceId = res.headers.get("x-openledger-inference-id")!;
  let received = "";
  let done = false;
  let chunks = 0;
  let buffer = "";
  const decoder = new TextDecoder();
  try {
    for await (const bytes of res.body!) {
      buffer += decoder.decode(bytes as Uint8Array, { stream: true });
      let end = buffer.indexOf("\n\n");
      while (end >= 0) {
        const event = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        end = buffer.indexOf("\n\n");
        const data = event.replace(/^data: /, "");
        if (data === "[DONE]") {
          done = true;
          continue;
        }
        const delta = (JSON.parse(data) as { choices: { delta: { content?: string } }[] }).choices[0]?.delta
          .content;
        if (delta) {
          received += delta;
          onChunk(++chunks, delta, inferenceId);
        }
      }
    }
  } catch {
    // The connection went away (killed server, or our own abort): what arrived is what counts.
  }
  return { inferenceId, received, done };
}

before(async () => {
  env = await testEnvironment("gateway-crash");
  dir = await mkdtemp(path.join(tmpdir(), "gateway-crash-"));
  chain = await startLocalChain({ writeAddresses: path.join(dir, "addresses.json") });
  const port = await freePort();
  url = `http://127.0.0.1:${port}`;
  childEnv = {
    ...TINY_MODEL_ENV,
    ...env.env,
    LOG_LEVEL: "warn",
    CHAIN_RPC_URL: chain.rpcUrl,
    CHAIN_ADDRESSES_FILE: path.join(dir, "addresses.json"),
    GATEWAY_PORT: String(port),
    GATEWAY_DATA_DIR: path.join(dir, "gateway"),
    GATEWAY_THREADS: "1",
    GATEWAY_SLOTS: "2",
    GATEWAY_MAX_NEW_TOKENS: "1000",
    GATEWAY_CHAIN_REGISTRATION: "false",
    GATEWAY_OUTBOX_SWEEP_MS: "600000",
    GATEWAY_BASE_PRICE_IN_PER_THOUSAND_WEI: "1000",
    GATEWAY_BASE_PRICE_OUT_PER_THOUSAND_WEI: "2000",
  };
  const user = chain.accounts.users[0]!;
  account = user.address.toLowerCase();
  await depositToEscrow(chain, user, 1000n * OPEN);
  billing = new Billing({
    config: gatewayConfig(childEnv),
    db: env.database.db,
    chain: { read: () => Promise.reject(new Error("not used")) },
    log: { warn() {} } as never,
  });
  await startGateway();
  const res = await fetch(`${url}/v1/api-keys`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(await devApiKeyRequest(account, chain.chainId, "crash")),
  });
  key = ((await res.json()) as { key: string }).key;
});

after(async () => {
  await killGateway();
  await chain?.stop();
  await env?.cleanup();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/**
 * The bill of an inference against what its client received: it covers everything received (never
 * less: what is sent was written first), and exceeds it at most by `slack` characters — for a killed
 * gateway, what was committed but not yet written to the socket when the process died (one
 * write-ahead at most, which the gateway caps at MAX_UNSENT_CHARS however slow its database is: a
 * bound by construction, not by timing); for a client that left, what the gateway had written
 * before it saw the connection close (the client stopped reading).
 */
function assertBilledFor(row: { output: string; outputTokens: number }, received: string, slack: number) {
  assert.ok(received.length > 0, "the client received some text");
  assert.ok(
    row.output.startsWith(received),
    `billed ${JSON.stringify(row.output)} covers ${JSON.stringify(received)}`,
  );
  assert.ok(row.output.length - received.length <= slack, `at most ${slack} characters beyond what arrived`);
  // The tiny model's tokens are UTF-8 bytes: the billed tokens are exactly the text's.
  assert.equal(row.outputTokens, Buffer.byteLength(row.output));
}

test("the gateway killed mid-stream: the tokens the client received are billed, the holds released on restart", async () => {
  const { inferenceId, received, done } = await stream("a long story, please", (chunks) => {
    if (chunks === 20) void killGateway();
  });
  assert.equal(done, false, "the stream was cut, no [DONE]");
  assert.match(inferenceId, /^[0-9a-f-]{36}$/);
  // Dead replica: its hold is still there (it would lapse only after the 30 s TTL) ...
  const held = await env.database.db.gatewayReservation.findUniqueOrThrow({ where: { id: inferenceId } });
  assert.ok(held.outputTokens > 0, "what was delivered was written before it was sent");
  assert.equal(await env.database.db.inference.count({ where: { id: inferenceId } }), 0);
  // ... until the same replica starts again: recorded for what it delivered, the hold released.
  await startGateway();
  assert.equal(await env.database.db.gatewayReservation.count(), 0, "holds released at start-up");
  const row = await env.database.db.inference.findUniqueOrThrow({ where: { id: inferenceId } });
  assertBilledFor(row, received, MAX_UNSENT_CHARS);
  assert.equal(row.accountAddress, account);
  assert.ok(row.outputTokens < 1000);
  assert.equal(await billing.owed(account), BigInt(row.inputTokens) + 2n * BigInt(row.outputTokens));
  assert.deepEqual(await billing.reconcile(), []);
  // The restarted gateway serves: a full stream ends with [DONE].
  const full = await stream("short", () => {});
  assert.ok(full.done);
});

test("a client that disconnects mid-stream is billed for the tokens it received", async () => {
  if (!gateway || gateway.exitCode !== null) await startGateway();
  const controller = new AbortController();
  const { inferenceId, received } = await stream(
    "another long story",
    (chunks) => {
      if (chunks === 15) controller.abort();
    },
    controller.signal,
  );
  let row = null;
  for (let i = 0; i < 200 && !row; i++) {
    row = await env.database.db.inference.findUnique({ where: { id: inferenceId } });
    if (!row) await new Promise((r) => setTimeout(r, 50));
  }
  assert.ok(row, "recorded");
  assertBilledFor(row, received, 64);
  assert.equal(await env.database.db.gatewayReservation.count(), 0, "its hold is released");
  assert.deepEqual(await billing.reconcile(), []);
});

test("a database slower than the model: each write-ahead covers at most MAX_UNSENT_CHARS, however much queued", async () => {
  if (!gateway || gateway.exitCode !== null) await startGateway();
  // The first chunk's write-ahead is done; then the test holds the reservation row's lock, so the
  // gateway's next progress write waits while the model generates to the end (no sequence running).
  // Every piece that queued meanwhile must then go out in writes of at most MAX_UNSENT_CHARS each:
  // without the cap, the first piece after the lock is released carries the whole backlog.
  let locked: Promise<void> | undefined;
  let releasedAt = -1;
  const after: string[] = [];
  const runningSequences = async () => {
    const text = await (await fetch(`${url}/metrics`)).text();
    return Number(/^gateway_running_sequences(?:\{[^}]*\})? (\d+)$/m.exec(text)?.[1] ?? Number.NaN);
  };
  const { received, done } = await stream(
    "a story while the database is slow",
    (chunks, delta, inferenceId) => {
      if (chunks === 1) {
        locked = env.database.db.$transaction(
          async (tx) => {
            await tx.$queryRaw`SELECT id FROM gateway_reservations WHERE id = ${inferenceId}::uuid FOR UPDATE`;
            // Hold it until the model has finished generating: everything left is queued behind us.
            for (let i = 0; (await runningSequences()) !== 0; i++) {
              assert.ok(i < 600, "the model finished generating while the row was locked");
              await new Promise((r) => setTimeout(r, 50));
            }
            releasedAt = chunks;
          },
          { timeout: 60_000, maxWait: 10_000 },
        );
      } else if (releasedAt >= 0) after.push(delta);
    },
    undefined,
    600,
  );
  await locked;
  assert.ok(done, "the stream ended normally");
  const backlog = after.join("");
  assert.ok(
    backlog.length > 2 * MAX_UNSENT_CHARS,
    `more than two caps of text queued behind the lock (${backlog.length} characters)`,
  );
  for (const piece of after)
    assert.ok(
      piece.length <= MAX_UNSENT_CHARS,
      `a piece of ${piece.length} characters went out in one write`,
    );
  assert.ok(received.endsWith(backlog));
});
