// Adapter uploads' bad paths on a real gateway (Postgres, the model runtime's loader; no chain:
// registration on chain is off): decompression bombs stop at the limit without being expanded,
// oversized and broken uploads are refused with a clear 4xx and leave nothing behind, and the
// per-account quotas (count, bytes) hold, also for concurrent uploads.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { gzipSync } from "node:zlib";
import { generateRandomPeft, TINY_CONFIG } from "@openledger/model-runtime";
import type { App } from "@openledger/service-kit";
import { testEnvironment } from "@openledger/service-kit/testing";
import tar from "tar-stream";
import { startTestGateway } from "./testing.ts";

const LIMIT = 4 * 1024 * 1024;
let env: Awaited<ReturnType<typeof testEnvironment>>;
let app: App;
let dir: string;
let root: string;
const QUOTA_BYTES = 4 * LIMIT;

const peft = (seed: number, rank = 4) => generateRandomPeft(TINY_CONFIG, { rank, seed });

before(async () => {
  env = await testEnvironment("gateway-uploads");
  dir = await mkdtemp(join(tmpdir(), "gateway-uploads-"));
  ({ app, url: root } = await startTestGateway({
    env: env.env,
    dataDir: join(dir, "store"),
    settings: {
      GATEWAY_CHAIN_REGISTRATION: "false",
      GATEWAY_ADAPTER_MAX_BYTES: String(LIMIT),
      GATEWAY_ADAPTER_QUOTA_COUNT: "3",
      GATEWAY_ADAPTER_QUOTA_BYTES: String(QUOTA_BYTES),
    },
  }));
});

after(async () => {
  await app?.close();
  await env?.cleanup();
  await rm(dir, { recursive: true, force: true });
});

async function keyFor(n: number): Promise<{ key: string; account: string }> {
  const account = `0x${n.toString(16).padStart(40, "0")}`;
  return { key: (await app.apiKeys.create(account, "uploads")).key, account };
}

function filesForm(id: string, p: ReturnType<typeof peft>): FormData {
  const form = new FormData();
  form.append("id", id);
  form.append("adapter_config", new Blob([JSON.stringify(p.adapterConfig)]), "adapter_config.json");
  form.append("adapter_model", new Blob([p.safetensors]), "adapter_model.safetensors");
  return form;
}

function archiveForm(id: string, bytes: Uint8Array, name = "adapter.tar.gz"): FormData {
  const form = new FormData();
  form.append("id", id);
  form.append("adapter", new Blob([bytes]), name);
  return form;
}

/** A tar archive (tar-stream's packer) of the given entries. */
async function tarOf(entries: { name: string; data: Uint8Array }[]): Promise<Buffer> {
  const pack = tar.pack();
  for (const e of entries) pack.entry({ name: e.name, size: e.data.length }, Buffer.from(e.data));
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const c of pack) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

async function upload(key: string, form: FormData) {
  const res = await fetch(`${root}/v1/adapters`, {
    method: "POST",
    headers: { authorization: `Bearer ${key}` },
    body: form,
    signal: AbortSignal.timeout(60_000),
  });
  return {
    status: res.status,
    body: (await res.json()) as { error?: { code: string; message: string } } & Record<string, unknown>,
  };
}

async function nothingLeftBehind(account: string) {
  const incoming = join(dir, "store", "adapters", ".incoming");
  assert.deepEqual(await readdir(incoming).catch(() => []), [], "no upload directory left");
  assert.equal(await app.db.model.count({ where: { ownerAddress: account } }), 0, "nothing registered");
}

test("archives made by tar(1), gzipped or not, at any depth; and plain files", async () => {
  const { key } = await keyFor(1);
  const p = peft(11);
  const src = join(dir, "src", "a-rather-long-directory-name-".repeat(4), "adapter");
  await mkdir(src, { recursive: true });
  await writeFile(join(src, "adapter_config.json"), JSON.stringify(p.adapterConfig));
  await writeFile(join(src, "adapter_model.safetensors"), p.safetensors);
  const hashes: string[] = [];
  for (const [flags, file] of [
    ["-cf", "a.tar"],
    ["-czf", "a.tar.gz"],
  ] as const) {
    execFileSync("tar", [flags, join(dir, file), "-C", join(dir, "src"), "."]);
    const res = await upload(key, archiveForm(`tarred-${file}`, await readFile(join(dir, file)), file));
    assert.equal(res.status, 201, JSON.stringify(res.body));
    hashes.push(String(res.body.contentHash));
  }
  // Both archives held the same two files, read identically (the same content hash).
  assert.equal(hashes[0], hashes[1]);
  const plain = await upload(key, filesForm("plain", peft(12)));
  assert.equal(plain.status, 201, JSON.stringify(plain.body));
  assert.equal(
    plain.body.sizeBytes,
    JSON.stringify(peft(12).adapterConfig).length + peft(12).safetensors.length,
  );
});

test("a decompression bomb is refused at the limit without being expanded; nothing is left behind", async () => {
  const { key, account } = await keyFor(2);
  const p = peft(21);
  // 256 MiB of zeros (~256 KiB gzipped) next to a valid adapter, in two shapes: an extra entry,
  // and as the weights file itself.
  const zeros = new Uint8Array(256 * 1024 * 1024);
  const bombs = [
    await tarOf([
      { name: "adapter/adapter_config.json", data: Buffer.from(JSON.stringify(p.adapterConfig)) },
      { name: "adapter/padding.bin", data: zeros },
      { name: "adapter/adapter_model.safetensors", data: p.safetensors },
    ]),
    await tarOf([
      { name: "adapter_config.json", data: Buffer.from(JSON.stringify(p.adapterConfig)) },
      { name: "adapter_model.safetensors", data: zeros },
    ]),
  ].map((t) => gzipSync(t, { level: 9 }));
  for (const bomb of bombs) {
    assert.ok(bomb.length < LIMIT / 4, "the archive itself is small");
    const before = process.memoryUsage().arrayBuffers;
    let peak = before;
    const sampler = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage().arrayBuffers);
    }, 2);
    const res = await upload(key, archiveForm("bomb", bomb));
    clearInterval(sampler);
    assert.equal(res.status, 413, JSON.stringify(res.body));
    assert.equal(res.body.error?.code, "PAYLOAD_TOO_LARGE");
    assert.match(res.body.error?.message ?? "", new RegExp(`at most ${LIMIT} bytes`));
    // Expanding it (as gunzipSync did) would allocate 256 MiB; streaming stops at the 4 MiB limit.
    assert.ok(peak - before < 64 * 1024 * 1024, `array buffers grew by ${peak - before} bytes`);
  }
  await nothingLeftBehind(account);
});

test("oversized, truncated, malformed and incomplete uploads: a clear 4xx, nothing left behind", async () => {
  const { key, account } = await keyFor(3);
  const p = peft(31);
  const big = new FormData();
  big.append("adapter_config", new Blob([JSON.stringify(p.adapterConfig)]), "adapter_config.json");
  // Four times the limit: refused at the limit with most of the body still to come, which the
  // client must not be left sending into a connection nobody reads.
  big.append("adapter_model", new Blob([new Uint8Array(4 * LIMIT)]), "adapter_model.safetensors");
  const good = gzipSync(
    await tarOf([
      { name: "adapter_config.json", data: Buffer.from(JSON.stringify(p.adapterConfig)) },
      { name: "adapter_model.safetensors", data: p.safetensors },
    ]),
  );
  const cases: [string, FormData, number, RegExp][] = [
    ["a plain file over the limit", big, 413, /./],
    ["a truncated gzip", archiveForm("cut", good.subarray(0, good.length >> 1)), 400, /adapter archive/],
    [
      "not an archive",
      archiveForm("junk", new Uint8Array(4096).fill(7), "adapter.tar"),
      400,
      /adapter archive/,
    ],
    [
      "an archive without the weights",
      archiveForm(
        "half",
        await tarOf([{ name: "adapter_config.json", data: Buffer.from("{}") }]),
        "adapter.tar",
      ),
      400,
      /both adapter_config.json and adapter_model.safetensors are required/,
    ],
  ];
  for (const [what, form, status, message] of cases) {
    const res = await upload(key, form);
    assert.equal(res.status, status, `${what}: ${JSON.stringify(res.body)}`);
    assert.match(res.body.error?.message ?? "", message, what);
  }
  const notMultipart = await fetch(`${root}/v1/adapters`, {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: "{}",
  });
  assert.equal(notMultipart.status, 415);
  await nothingLeftBehind(account);
});

test("per-account quota: the number of active adapters", async () => {
  const { key, account } = await keyFor(4);
  for (let i = 0; i < 3; i++)
    assert.equal((await upload(key, filesForm(`q-${i}`, peft(40 + i)))).status, 201);
  const over = await upload(key, filesForm("q-3", peft(43)));
  assert.equal(over.status, 403, JSON.stringify(over.body));
  assert.equal(over.body.error?.code, "ADAPTER_QUOTA_EXCEEDED");
  assert.equal(await app.db.model.count({ where: { ownerAddress: account } }), 3);
  // Retiring one makes room; another account is not affected.
  const del = await fetch(`${root}/v1/adapters/q-0`, {
    method: "DELETE",
    headers: { authorization: `Bearer ${key}` },
  });
  assert.equal(del.status, 200);
  assert.equal((await upload(key, filesForm("q-3", peft(43)))).status, 201);
  const other = await keyFor(5);
  assert.equal((await upload(other.key, filesForm("q-other", peft(44)))).status, 201);
});

test("per-account quota: bytes, refused while the upload streams in", async () => {
  const { key, account } = await keyFor(6);
  // An account whose adapters already use all but 1 KiB of its quota.
  await app.db.model.create({
    data: {
      id: "q-bytes-held",
      kind: "adapter",
      ownerAddress: account,
      contentHash: "ab".repeat(32),
      priceInPer1kWei: 0,
      priceOutPer1kWei: 0,
      sizeBytes: BigInt(QUOTA_BYTES - 1024),
    },
  });
  // Refused after 1 KiB of a 16 MiB file: the client is still sending most of it.
  const form = new FormData();
  form.append("adapter_config", new Blob([JSON.stringify(peft(60).adapterConfig)]), "adapter_config.json");
  form.append("adapter_model", new Blob([new Uint8Array(4 * LIMIT)]), "adapter_model.safetensors");
  const res = await upload(key, form);
  assert.equal(res.status, 403, JSON.stringify(res.body));
  assert.equal(res.body.error?.code, "ADAPTER_QUOTA_EXCEEDED");
  assert.match(res.body.error?.message ?? "", /pass the account's adapter quota/);
  assert.equal(await app.db.model.count({ where: { ownerAddress: account } }), 1, "nothing new registered");
  assert.deepEqual(await readdir(join(dir, "store", "adapters", ".incoming")).catch(() => []), []);
});

test("concurrent uploads at the quota: exactly as many as fit are registered", async () => {
  const { key, account } = await keyFor(7);
  for (let i = 0; i < 2; i++)
    assert.equal((await upload(key, filesForm(`c-${i}`, peft(70 + i)))).status, 201);
  const racing = await Promise.all([2, 3, 4].map((i) => upload(key, filesForm(`c-${i}`, peft(70 + i)))));
  assert.deepEqual(
    racing.map((r) => r.status).sort(),
    [201, 403, 403],
    JSON.stringify(racing.map((r) => r.body)),
  );
  assert.equal(await app.db.model.count({ where: { ownerAddress: account, status: "active" } }), 3);
});
