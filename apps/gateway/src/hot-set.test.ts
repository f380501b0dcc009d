// The RAM tier's hot set survives a restart: saved on close, warmed in the background after the
// next start (real Postgres and Redis, the tiny model, no chain).
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { generateRandomPeft, TINY_CONFIG } from "@openledger/model-runtime";
import type { App } from "@openledger/service-kit";
import { testEnvironment } from "@openledger/service-kit/testing";
import { startTestGateway } from "./testing.ts";

let env: Awaited<ReturnType<typeof testEnvironment>>;
let dir: string;
let app: App | undefined;
const OWNER = "0x00000000000000000000000000000000000000aa";

before(async () => {
  env = await testEnvironment("gateway-hot-set");
  dir = await mkdtemp(join(tmpdir(), "gateway-hot-set-"));
});

after(async () => {
  await app?.close();
  await env.cleanup();
  await rm(dir, { recursive: true, force: true });
});

const start = (settings: Record<string, string> = {}) =>
  startTestGateway({
    env: env.env,
    dataDir: join(dir, "store"),
    settings: { GATEWAY_CHAIN_REGISTRATION: "false", ...settings },
  });

/** Polls (event-loop turns, not a time limit on the work) until `ok`, failing after many turns. */
async function until(ok: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 2000 && !ok(); i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(ok(), what);
}

test("the adapters in RAM are saved on close and loaded back in the background after a restart", async () => {
  app = (await start()).app;
  const ids: string[] = [];
  for (let i = 0; i < 3; i++) {
    const peft = generateRandomPeft(TINY_CONFIG, { rank: 4, seed: `hot-${i}`, strength: 0.3 });
    const hash = await app.catalog.store.put(
      Buffer.from(JSON.stringify(peft.adapterConfig)),
      peft.safetensors,
    );
    const { model } = await app.registration.register({
      id: `hot-${i}`,
      owner: OWNER,
      contentHash: hash,
      priceIn: 1n,
      priceOut: 1n,
      datanetVersionIds: [],
      onChain: false,
    });
    ids.push(model.id);
  }
  // Two of them are used (loaded into RAM, the second last); the third never is.
  await app.host.cache.ram.load(ids[0]!);
  await app.host.cache.ram.load(ids[1]!);
  await app.close();
  app = undefined;
  const saved = JSON.parse(await readFile(join(dir, "store", "hot-adapters.json"), "utf8")) as {
    adapters: string[];
  };
  assert.deepEqual(saved.adapters, [ids[1], ids[0]]);

  // An id no longer servable in the saved set is skipped; the others are warmed without a request.
  await writeFile(
    join(dir, "store", "hot-adapters.json"),
    JSON.stringify({ savedAt: new Date().toISOString(), adapters: ["retired-adapter", ids[1], ids[0]] }),
  );
  app = (await start()).app;
  const ram = app.host.cache.ram;
  await until(() => ram.isReady(ids[0]!) && ram.isReady(ids[1]!), "the saved adapters are back in RAM");
  assert.equal(ram.isReady(ids[2]!), false);
  assert.equal(app.host.cache.tier(ids[2]!), "cold");
  await app.close();
  app = undefined;

  // Off (GATEWAY_HOT_SET=false): nothing is saved.
  await rm(join(dir, "store", "hot-adapters.json"));
  app = (await start({ GATEWAY_HOT_SET: "false" })).app;
  await app.host.cache.ram.load(ids[2]!);
  await app.close();
  app = undefined;
  await assert.rejects(readFile(join(dir, "store", "hot-adapters.json")));
});
