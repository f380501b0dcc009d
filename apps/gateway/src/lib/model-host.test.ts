import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { TINY_MODEL_ENV } from "@openledger/config";
import { generateRandomPeft, TINY_BOS, TINY_CONFIG, writePeftAdapter } from "@openledger/model-runtime";
import { gatewayConfig } from "../app.ts";
import { defaultHooks, ModelHost } from "./model-host.ts";

let dir: string;
let host: ModelHost;
const dirs = new Map<string, string>();

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "model-host-"));
  const good = generateRandomPeft(TINY_CONFIG, { rank: 8, seed: "host-good" });
  await writePeftAdapter(join(dir, "good"), good);
  await writePeftAdapter(join(dir, "corrupt"), good);
  // Valid at upload, damaged on disk later: only the load (on a worker thread) finds out.
  await writeFile(join(dir, "corrupt", "adapter_model.safetensors"), Buffer.alloc(64, 7));
  dirs.set("good", join(dir, "good"));
  dirs.set("corrupt", join(dir, "corrupt"));
  const config = gatewayConfig({
    ...TINY_MODEL_ENV,
    DATABASE_URL: "postgres://unused@127.0.0.1:1/unused",
    GATEWAY_SLOTS: "4",
    GATEWAY_THREADS: "1",
    GATEWAY_RATE_REQUESTS_PER_MIN: "0",
  });
  host = await ModelHost.start(config, { ...defaultHooks(), locator: { dirOf: (id) => dirs.get(id) } });
});
after(async () => {
  await host?.close();
  await rm(dir, { recursive: true, force: true });
});

test("a corrupt adapter on disk fails its own requests with a clear error; the others are served", async () => {
  const submit = (id: string, adapterId: string | null) =>
    host.engine.submit({
      id,
      account: "acct",
      adapterId,
      promptTokens: [TINY_BOS, ...new TextEncoder().encode("hello")],
      maxNewTokens: 6,
      context: { sampling: { temperature: 0 } },
    });
  const handles = [submit("base", null), submit("good", "good"), submit("bad", "corrupt")];
  const [base, good, bad] = await Promise.all(handles.map((h) => h.result));
  assert.equal(base!.reason, "length");
  assert.equal(good!.reason, "length");
  assert.equal(good!.completionTokens, 6);
  assert.equal(bad!.reason, "error");
  assert.equal(bad!.error?.code, "adapter_load_failed");
  assert.equal(bad!.error?.adapterId, "corrupt");
  assert.match(bad!.error!.message, /loading adapter corrupt failed: .*safetensors/);
  // A tiny-model adapter (65 KB) is decoded inline; SmolLM-sized ones go to the workers
  // (both paths: model-runtime's adapter-pool tests).
  assert.equal(host.loadPool.inlineLoads + host.loadPool.offThreadLoads, 1, "one load: the good adapter");
  // The next request for the good adapter is served from the warm tiers, no new load.
  const again = await submit("good-2", "good").result;
  assert.equal(again.reason, "length");
  assert.deepEqual(again.outputTokens, good!.outputTokens, "greedy: same prompt, same adapter, same output");
  assert.equal(host.cache.metrics().ram.loads, 1);
});
