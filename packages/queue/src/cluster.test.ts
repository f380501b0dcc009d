// Scale-out readiness: the queue layer, unchanged, on a real Redis Cluster. Starts three
// redis-server masters (Debian's redis-server 7, `--cluster-enabled yes`) on free ports, joins them
// with `redis-cli --cluster create`, and runs a producer -> worker round trip for every queue group
// of the catalog through it (REDIS_CLUSTER: the seed URL is one node; the rest are discovered).
import assert from "node:assert/strict";
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { Cluster } from "ioredis";
import { type JobName, type JobPayload, jobsOfQueue, QUEUES } from "./catalog.ts";
import { Producer } from "./producer.ts";
import { freePort, uniquePrefix } from "./testing.ts";
import { type JobHandler, WorkerSet } from "./worker.ts";

const onPath = (bin: string) =>
  (process.env.PATH ?? "").split(path.delimiter).some((d) => d !== "" && existsSync(path.join(d, bin)));
const missing = ["redis-server", "redis-cli"].filter((bin) => !onPath(bin));
const skip = missing.length > 0 ? `${missing.join(" and ")} not installed: no local Redis Cluster` : false;

const silent = { info() {}, warn() {}, error() {} };
const nodes: ChildProcess[] = [];
let dir = "";
let seed = "";
const ports: number[] = [];

function startNode(port: number): Promise<ChildProcess> {
  const child = spawn(
    "redis-server",
    [
      "--port",
      String(port),
      "--bind",
      "127.0.0.1",
      "--cluster-enabled",
      "yes",
      "--cluster-config-file",
      `nodes-${port}.conf`,
      "--cluster-node-timeout",
      "5000",
      "--save",
      "",
      "--appendonly",
      "no",
    ],
    { cwd: dir, stdio: ["ignore", "pipe", "pipe"] },
  );
  return new Promise((resolve, reject) => {
    child.stdout?.on("data", (d: Buffer) => {
      if (d.toString().includes("Ready to accept connections")) resolve(child);
    });
    child.once("error", reject);
    child.once("exit", (code) => reject(new Error(`redis-server on ${port} exited (${code})`)));
  });
}

before(async () => {
  if (skip) return;
  dir = mkdtempSync(path.join(tmpdir(), "redis-cluster-"));
  for (let i = 0; i < 3; i++) ports.push(await freePort());
  for (const p of ports) nodes.push(await startNode(p));
  const create = spawnSync(
    "redis-cli",
    [
      "--cluster",
      "create",
      ...ports.map((p) => `127.0.0.1:${p}`),
      "--cluster-replicas",
      "0",
      "--cluster-yes",
    ],
    { encoding: "utf8", timeout: 60_000 },
  );
  assert.equal(create.status, 0, `redis-cli --cluster create: ${create.stdout}${create.stderr}`);
  for (let i = 0; ; i++) {
    const info = spawnSync("redis-cli", ["-p", String(ports[0]), "cluster", "info"], { encoding: "utf8" });
    if (info.stdout.includes("cluster_state:ok")) break;
    assert.ok(i < 100, `cluster never became ok: ${info.stdout}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  seed = `redis://127.0.0.1:${ports[0]}`;
});

after(() => {
  for (const n of nodes) n.kill("SIGKILL");
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const ID = "3f1d2a8e-1b2c-4d5e-8f90-a1b2c3d4e5f6";
const SAMPLE: { [N in JobName]: JobPayload<N> } = {
  "datanet.validate": { contributionId: ID },
  "attribution.index": { datanetVersionId: ID },
  "attribution.score": { inferenceId: ID },
  "inference.completed": { inferenceId: ID },
  "finetuning.run": { jobId: `ftjob-${"0a".repeat(12)}`, run: 1 },
};

test("a producer -> worker round trip per queue group through a 3-master Redis Cluster", {
  skip,
}, async () => {
  const slots = new Map<string, number>();
  for (const queue of QUEUES) {
    // A prefix (hash tag) per group: the groups' keys land on different slots, so on different masters.
    const prefix = uniquePrefix(`cluster-${queue}`);
    const producer = new Producer({ redisUrl: seed, prefix, cluster: true });
    const workers = new WorkerSet({ redisUrl: seed, prefix, queues: [queue], logger: silent, cluster: true });
    const seen = new Map<string, unknown>();
    const done = new Promise<void>((resolve) => {
      for (const name of jobsOfQueue(queue)) {
        const handler: JobHandler<JobName> = async (payload) => {
          seen.set(name, payload);
          if (seen.size === jobsOfQueue(queue).length) resolve();
          return { ok: true };
        };
        workers.handle(name, handler);
      }
    });
    try {
      await workers.start();
      for (const name of jobsOfQueue(queue)) await producer.enqueue(name, SAMPLE[name] as never);
      await Promise.race([
        done,
        new Promise((_, reject) =>
          setTimeout(() => reject(new Error(`${queue}: no round trip in 30 s`)), 30_000),
        ),
      ]);
      for (const name of jobsOfQueue(queue))
        assert.deepEqual(seen.get(name), SAMPLE[name], `${queue}/${name}`);
      // The handlers ran; BullMQ records the completions right after.
      let counts: Record<string, number> = {};
      for (let i = 0; i < 100; i++) {
        counts = await producer.queue(queue).getJobCounts("completed", "failed");
        if (counts.completed === jobsOfQueue(queue).length) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.deepEqual(counts, { completed: jobsOfQueue(queue).length, failed: 0 });
    } finally {
      await workers.close();
      await producer.close();
    }
    const probe = new Cluster([{ host: "127.0.0.1", port: ports[0]! }]);
    slots.set(queue, (await probe.cluster("KEYSLOT", `${prefix}:${queue}:id`)) as number);
    await probe.quit();
  }
  assert.equal(new Set(slots.values()).size, QUEUES.length, "each group in its own slot");
});
