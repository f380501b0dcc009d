// Small models on the gateway, against real Postgres, Redis, a local Hardhat chain and a real
// attribution service (in-process, its workers on): register the influence model of a labelled
// datanet version (and every refusal), serve it through the official `openai` client (chat,
// completions, streaming), and check that validators attribute the served prediction.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { attributionConfig, buildAttribution } from "@openledger/attribution";
import { argmax, tokenizeWords } from "@openledger/attribution-core";
import {
  builderApprovalTypedData,
  createChainClients,
  createChainPublicClient,
  datanetRegistryAbi,
  inferenceEscrowAbi,
  ModelKind,
  modelRegistryAbi,
  OPEN,
  openTokenAbi,
} from "@openledger/chain";
import { devApiKeyRequest, type LocalChain, sendAs, startLocalChain } from "@openledger/chain/testing";
import { TINY_MODEL_ENV } from "@openledger/config";
import type { Db } from "@openledger/db";
import type { App } from "@openledger/service-kit";
import { testEnvironment, waitFor } from "@openledger/service-kit/testing";
import OpenAI from "openai";
import type { Hex } from "viem";
import { SmallModelRuntime } from "./lib/small-models.ts";
import { startTestGateway } from "./testing.ts";

const ALICE = "0x00000000000000000000000000000000000a11ce";
const BOB = "0x0000000000000000000000000000000000000b0b";
const SPAM_WORDS = ["winner", "free", "prize", "click", "offer", "cash", "urgent", "bonus"];
const HAM_WORDS = ["meeting", "report", "lunch", "schedule", "project", "review", "notes", "team"];

let env: Awaited<ReturnType<typeof testEnvironment>>;
let chain: LocalChain;
let dir: string;
let attribution: Awaited<ReturnType<typeof buildAttribution>>;
let app: App;
let db: Db;
let root: string;
let builderKey: string;
let payerKey: string;
let poorKey: string;
let burstKey: string;
let builder: string;
const versions = {} as {
  labelled: string;
  unlabelled: string;
  unbuilt: string;
  offChain: string;
  relabelled: string;
};

/** The account's own key: it signs the request (POST /v1/api-keys). */
async function createKey(account: string): Promise<string> {
  const res = await fetch(`${root}/v1/api-keys`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(await devApiKeyRequest(account, chain.chainId)),
  });
  assert.equal(res.status, 201, await res.clone().text());
  return ((await res.json()) as { key: string }).key;
}

type RegisterBody = {
  error: { code: string; message: string };
  chain: { status: string };
  [k: string]: unknown;
};

async function register(key: string | null, body: unknown) {
  const res = await fetch(`${root}/v1/small-models`, {
    method: "POST",
    headers: { "content-type": "application/json", ...(key ? { authorization: `Bearer ${key}` } : {}) },
    body: JSON.stringify(body),
  });
  return { status: res.status, headers: res.headers, body: (await res.json()) as RegisterBody };
}

const client = (apiKey: string) => new OpenAI({ apiKey, baseURL: `${root}/v1`, maxRetries: 0 });

/** A datanet registered on chain with its versions published there too (ModelRegistry checks them). */
async function seed(): Promise<void> {
  const owner = chain.accounts.users[0]!;
  const send = (functionName: string, args: unknown[]) =>
    sendAs<bigint>(chain, owner.privateKey, {
      address: chain.addresses!.contracts.DatanetRegistry,
      abi: datanetRegistryAbi,
      functionName,
      args,
    });
  const chainDatanetId = await send("createDatanet", ["openledger:test:spam"]);
  for (const a of [ALICE, BOB]) await db.contributor.create({ data: { address: a } });
  const datanet = await db.datanet.create({
    data: {
      slug: "spam",
      name: "Spam",
      type: "classification",
      license: "CC-BY-4.0",
      ownerAddress: owner.address.toLowerCase(),
      chainDatanetId: chainDatanetId.toString(),
    },
  });
  const offChain = await db.datanet.create({
    data: { slug: "off", name: "Off", type: "classification", license: "CC-BY-4.0", ownerAddress: ALICE },
  });
  let version = 0;
  const mkVersion = async (rows: { who: string; text: string; label?: string }[], datanetId = datanet.id) => {
    const onChain = datanetId === datanet.id;
    if (onChain)
      await send("publishVersion", [chainDatanetId, `0x${"ab".repeat(32)}`, BigInt(rows.length), 1n]);
    const v = await db.datanetVersion.create({
      data: {
        datanetId,
        version: onChain ? ++version : 1,
        merkleRoot: `0x${"ab".repeat(32)}`,
        rowCount: rows.length,
        contributorCount: new Set(rows.map((r) => r.who)).size,
        status: "registered",
      },
    });
    let position = 0;
    for (const r of rows) {
      const c = await db.contribution.create({
        data: { datanetId, contributorAddress: r.who, source: "rows", status: "validated", rowCount: 1 },
      });
      const row = await db.datanetRow.create({
        data: {
          datanetId,
          contributionId: c.id,
          contributorAddress: r.who,
          ordinal: 0,
          text: r.text,
          label: r.label ?? null,
          normalizedHash: "cd".repeat(32),
          status: "accepted",
        },
      });
      await db.datanetVersionRow.create({ data: { versionId: v.id, position: position++, rowId: row.id } });
    }
    return v.id;
  };
  // Alice labels spam, Bob labels ham: a spammy prompt is explained by Alice's rows.
  const labelled = Array.from({ length: 32 }, (_, i) => {
    const spam = i % 2 === 0;
    const words = spam ? SPAM_WORDS : HAM_WORDS;
    const text = Array.from({ length: 6 }, (_, k) => words[(i * 3 + k * 5) % words.length]).join(" ");
    return { who: spam ? ALICE : BOB, text: `${text} ${i}`, label: spam ? "spam" : "ham" };
  });
  versions.labelled = await mkVersion(labelled);
  versions.unlabelled = await mkVersion(labelled.map((r) => ({ who: r.who, text: r.text })));
  versions.unbuilt = await mkVersion(labelled.slice(0, 8));
  versions.offChain = await mkVersion(labelled.slice(0, 8), offChain.id);
  // The same texts under other class names, in the same sorted order: the same weights, so the
  // same ONNX bytes (class names are not in the graph), but other answers.
  versions.relabelled = await mkVersion(
    labelled.map((r) => ({ ...r, label: r.label === "spam" ? "unwanted" : "legit" })),
  );
}

let attributionUrl: string;
/** The attribution service's token, which the gateway holds to fetch small models' graphs. */
const ATTRIBUTION_TOKEN = "gateway-test-attribution-token";

before(async () => {
  env = await testEnvironment("gateway-small");
  dir = await mkdtemp(join(tmpdir(), "gateway-small-"));
  chain = await startLocalChain({ writeAddresses: join(dir, "addresses.json") });
  const chainEnv = { CHAIN_RPC_URL: chain.rpcUrl, CHAIN_ADDRESSES_FILE: join(dir, "addresses.json") };
  attribution = await buildAttribution(
    attributionConfig({
      ...TINY_MODEL_ENV,
      ...env.env,
      ...chainEnv,
      ATTRIBUTION_BLOB_DIR: join(dir, "blobs"),
      ATTRIBUTION_SWEEP_INTERVAL_MS: "0",
      ATTRIBUTION_SERVICE_TOKEN: ATTRIBUTION_TOKEN,
    }),
  );
  await attribution.listen({ port: 0, host: "127.0.0.1" });
  const aAddr = attribution.server.address();
  attributionUrl = `http://127.0.0.1:${typeof aAddr === "object" && aAddr ? aAddr.port : 0}`;
  ({ app, url: root } = await startTestGateway({
    env: env.env,
    dataDir: join(dir, "gateway"),
    chain: { rpcUrl: chain.rpcUrl, addressesFile: join(dir, "addresses.json") },
    settings: {
      GATEWAY_ATTRIBUTION_URL: attributionUrl,
      GATEWAY_ATTRIBUTION_TOKEN: ATTRIBUTION_TOKEN,
      GATEWAY_SLOTS: "3",
      GATEWAY_BALANCE_CACHE_MS: "0",
      GATEWAY_OUTBOX_SWEEP_MS: "600000",
      GATEWAY_RATE_REQUESTS_PER_MIN: "20",
    },
  }));
  db = app.db;
  await seed();

  const [, payer, poor, b, burst] = chain.accounts.users;
  builder = b!.address.toLowerCase();
  const c = chain.addresses!.contracts;
  const amount = 100n * OPEN;
  for (const user of [payer!, burst!]) {
    const { publicClient, walletClient } = createChainClients({
      rpcUrl: chain.rpcUrl,
      chainId: chain.chainId,
      privateKey: user.privateKey as Hex,
    });
    for (const [address, abi, functionName, args] of [
      [c.OpenToken, openTokenAbi, "approve", [c.InferenceEscrow, amount]],
      [c.InferenceEscrow, inferenceEscrowAbi, "deposit", [amount]],
    ] as const) {
      const hash = await walletClient.writeContract({ address, abi, functionName, args } as never);
      await publicClient.waitForTransactionReceipt({ hash });
    }
  }
  payerKey = await createKey(payer!.address);
  burstKey = await createKey(burst!.address);
  poorKey = await createKey(poor!.address);
  builderKey = await createKey(b!.address);

  // The attribution service builds the labelled version's influence model (and its ONNX export).
  const idx = await attribution.inject({
    method: "POST",
    url: "/v1/indexes",
    headers: { authorization: `Bearer ${ATTRIBUTION_TOKEN}` },
    payload: { datanetVersionId: versions.labelled },
  });
  assert.equal(idx.statusCode, 202, idx.body);
  await waitFor("the influence model", async () => {
    const row = await db.attributionIndex.findUnique({
      where: { datanetVersionId_kind: { datanetVersionId: versions.labelled, kind: "influence" } },
    });
    if (row?.status === "failed") assert.fail(row.error ?? "influence build failed");
    return row?.status === "ready";
  });
});

after(async () => {
  await app?.close();
  await attribution?.close();
  await chain?.stop();
  await env?.cleanup();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const good = () => ({
  id: "spam-filter",
  datanet_version_id: versions.labelled,
  price_in_per_1k_wei: "3000000000000000007",
  price_out_per_1k_wei: "9000000000000000011",
});

test("registration refuses bad input with a code, and writes nothing", async () => {
  const before = await db.model.count();
  const intents = await db.chainIntent.count();
  const cases: [string | null, unknown, number, string][] = [
    [null, good(), 401, "MISSING_API_KEY"],
    ["sk-nope", good(), 401, "INVALID_API_KEY"],
    [builderKey, { ...good(), price_in_per_1k_wei: "1.5" }, 400, "VALIDATION_FAILED"],
    [builderKey, { ...good(), price_out_per_1k_wei: (1n << 128n).toString() }, 400, "VALIDATION_FAILED"],
    [builderKey, { ...good(), price_out_per_1k_wei: -1 }, 400, "VALIDATION_FAILED"],
    [builderKey, { ...good(), id: "bad id!" }, 400, "VALIDATION_FAILED"],
    [builderKey, { ...good(), id: "openledger-tiny" }, 400, "VALIDATION_FAILED"],
    [builderKey, { ...good(), datanet_version_id: "nope" }, 400, "VALIDATION_FAILED"],
    [builderKey, { ...good(), extra: 1 }, 400, "VALIDATION_FAILED"],
    [
      builderKey,
      { ...good(), datanet_version_id: "00000000-0000-4000-8000-000000000000" },
      404,
      "DATANET_VERSION_NOT_FOUND",
    ],
    [builderKey, { ...good(), datanet_version_id: versions.unlabelled }, 422, "DATANET_VERSION_NOT_LABELLED"],
    [builderKey, { ...good(), datanet_version_id: versions.unbuilt }, 409, "INFLUENCE_MODEL_NOT_READY"],
  ];
  for (const [key, body, status, code] of cases) {
    const res = await register(key, body);
    assert.equal(res.status, status, `${JSON.stringify(body)}: ${JSON.stringify(res.body)}`);
    assert.equal(res.body.error.code, code, JSON.stringify(res.body));
    assert.ok(res.body.error.message.length > 0);
    if (code === "INFLUENCE_MODEL_NOT_READY") assert.equal(res.headers.get("retry-after"), "5");
  }
  // A failed build is named as such (a rebuild is needed, not patience).
  await db.attributionIndex.create({
    data: {
      datanetVersionId: versions.offChain,
      kind: "influence",
      status: "failed",
      tokenizer: "hashed-ngrams:d512:n2",
      stats: {},
      error: "boom",
    },
  });
  const failed = await register(builderKey, { ...good(), datanet_version_id: versions.offChain });
  assert.equal(failed.status, 409);
  assert.equal(failed.body.error.code, "INFLUENCE_MODEL_FAILED");
  assert.match(failed.body.error.message, /boom/);
  assert.equal(await db.model.count(), before);
  assert.equal(await db.chainIntent.count(), intents);
});

let chainModelId: bigint;

/** The datanet owner's EIP-712 BuilderApproval for `builder` (what the owner's wallet signs). */
async function ownerApproval(builderAddress: string) {
  const owner = chain.accounts.users[0]!;
  const registry = chain.addresses!.contracts.DatanetRegistry;
  const { publicClient, walletClient } = createChainClients({
    rpcUrl: chain.rpcUrl,
    chainId: chain.chainId,
    privateKey: owner.privateKey as Hex,
  });
  const datanet = await db.datanet.findUniqueOrThrow({ where: { slug: "spam" } });
  const datanetId = BigInt(datanet.chainDatanetId!.toFixed(0));
  const nonce = await publicClient.readContract({
    address: registry,
    abi: datanetRegistryAbi,
    functionName: "nonces",
    args: [owner.address as Hex],
  });
  const deadline = BigInt(Math.floor(Date.now() / 1000) + 600);
  const signature = await walletClient.signTypedData(
    builderApprovalTypedData(chain.chainId, registry, {
      datanetId,
      builder: builderAddress as Hex,
      approved: true,
      nonce,
      deadline,
    }),
  );
  return { datanetId, approval: { deadline: deadline.toString(), signature } };
}

test("squatting: a builder the datanet's owner did not approve cannot register its small model (403, nothing written)", async () => {
  // Before: the first builder to register a datanet's small model (first come, by content hash) set its
  // price and took the model owner's 30%.
  const before = await db.model.count();
  const intents = await db.chainIntent.count();
  const res = await register(builderKey, good());
  assert.equal(res.status, 403, JSON.stringify(res.body));
  assert.equal(res.body.error.code, "BUILDER_NOT_APPROVED");
  // An approval signed by someone else than the owner (here: the squatter itself) does not count.
  const { walletClient } = createChainClients({
    rpcUrl: chain.rpcUrl,
    chainId: chain.chainId,
    privateKey: chain.accounts.users[3]!.privateKey as Hex,
  });
  const { approval, datanetId } = await ownerApproval(builder);
  const forged = await walletClient.signTypedData(
    builderApprovalTypedData(chain.chainId, chain.addresses!.contracts.DatanetRegistry, {
      datanetId,
      builder: builder as Hex,
      approved: true,
      nonce: 0n,
      deadline: BigInt(approval.deadline),
    }),
  );
  const withForged = await register(builderKey, {
    ...good(),
    datanet_owner_approval: { ...approval, signature: forged },
  });
  assert.equal(withForged.status, 403, JSON.stringify(withForged.body));
  assert.match(withForged.body.error.message, /not the owner/);
  assert.equal(await db.model.count(), before);
  assert.equal(await db.chainIntent.count(), intents);
});

test("a builder registers a small model: Postgres (small_model + training version) and ModelRegistry", async () => {
  // With the datanet owner's signed approval, which the gateway relays on chain.
  const { approval, datanetId } = await ownerApproval(builder);
  const res = await register(builderKey, { ...good(), datanet_owner_approval: approval });
  const pub = createChainPublicClient({ rpcUrl: chain.rpcUrl, chainId: chain.chainId });
  assert.equal(
    await pub.readContract({
      address: chain.addresses!.contracts.DatanetRegistry,
      abi: datanetRegistryAbi,
      functionName: "isApprovedBuilder",
      args: [datanetId, builder as Hex],
    }),
    true,
  );
  assert.equal(res.status, 201, JSON.stringify(res.body));
  assert.equal(res.body.object, "small_model");
  assert.equal(res.body.owner, builder);
  assert.deepEqual(res.body.classes, ["ham", "spam"]);
  assert.equal(res.body.pricePer1kInputWei, "3000000000000000007");
  assert.equal(res.body.chain.status, "confirmed", JSON.stringify(res.body.chain));
  const index = await db.attributionIndex.findUniqueOrThrow({
    where: { datanetVersionId_kind: { datanetVersionId: versions.labelled, kind: "influence" } },
  });
  assert.equal(res.body.contentHash, index.blobHash);
  assert.equal(res.body.onnxSha256, index.onnxBlobHash);
  const row = await db.model.findUniqueOrThrow({
    where: { id: "spam-filter" },
    include: { trainingVersions: true },
  });
  assert.equal(row.kind, "small_model");
  assert.equal(row.baseModel, null);
  assert.equal(row.ownerAddress, builder);
  assert.deepEqual(
    row.trainingVersions.map((t) => t.datanetVersionId),
    [versions.labelled],
  );
  chainModelId = BigInt(row.chainModelId!.toFixed(0));
  const publicClient = createChainPublicClient({ rpcUrl: chain.rpcUrl, chainId: chain.chainId });
  const onChain = (await publicClient.readContract({
    address: chain.addresses!.contracts.ModelRegistry,
    abi: modelRegistryAbi,
    functionName: "getModel",
    args: [chainModelId],
  })) as { owner: string; kind: number; contentHash: string; pricePer1kInput: bigint };
  assert.equal(onChain.owner.toLowerCase(), builder);
  assert.equal(onChain.kind, ModelKind.Model);
  assert.equal(onChain.contentHash, `0x${index.blobHash}`);
  assert.equal(onChain.pricePer1kInput, 3000000000000000007n);

  // Same id, or the same version's model again: 409, nothing written.
  const count = await db.model.count();
  const dupId = await register(builderKey, good());
  assert.equal(dupId.status, 409);
  assert.equal(dupId.body.error.code, "CONFLICT");
  const dupModel = await register(builderKey, { ...good(), id: "spam-filter-2" });
  assert.equal(dupModel.status, 409);
  assert.match(dupModel.body.error.message, /already registered as spam-filter/);
  assert.equal(await db.model.count(), count);

  const list = await client(payerKey).models.list();
  assert.ok(list.data.some((m) => m.id === "spam-filter" && m.owned_by === builder));
  const mine = await fetch(`${root}/v1/small-models`, { headers: { authorization: `Bearer ${builderKey}` } });
  assert.deepEqual(
    ((await mine.json()) as { data: { id: string }[] }).data.map((m) => m.id),
    ["spam-filter"],
  );
  const one = await fetch(`${root}/v1/small-models/spam-filter`, {
    headers: { authorization: `Bearer ${builderKey}` },
  });
  const detail = (await one.json()) as Record<string, unknown>;
  assert.equal(detail.datanetVersionId, versions.labelled);
  assert.equal(detail.chainModelId, chainModelId.toString());
  const other = await fetch(`${root}/v1/small-models/spam-filter`, {
    headers: { authorization: `Bearer ${payerKey}` },
  });
  assert.equal(other.status, 403);
});

const SPAM_PROMPT = "URGENT: you are a winner, click now for your free cash prize and bonus offer!";
const HAM_PROMPT = "Notes from the project meeting: review the report before lunch, the team schedule moved.";

test("chat and completions answer the predicted label (ONNX), with classifier usage, recorded like adapters", async () => {
  const openai = client(payerKey);
  const { data: chat, response } = await openai.chat.completions
    .create({
      model: "spam-filter",
      messages: [
        { role: "system", content: "Classify the message." },
        { role: "user", content: SPAM_PROMPT },
      ],
      temperature: 0,
    })
    .withResponse();
  assert.equal(chat.object, "chat.completion");
  assert.equal(chat.choices[0]!.message.content, "spam");
  assert.equal(chat.choices[0]!.finish_reason, "stop");
  const words = tokenizeWords(SPAM_PROMPT).length;
  assert.deepEqual(chat.usage, { prompt_tokens: words, completion_tokens: 1, total_tokens: words + 1 });
  const inferenceId = response.headers.get("x-openledger-inference-id")!;
  const inf = await db.inference.findUniqueOrThrow({ where: { id: inferenceId } });
  assert.equal(inf.modelId, "spam-filter");
  assert.equal(inf.prompt, SPAM_PROMPT, "the classified text (last user message) is what is stored");
  assert.equal(inf.output, "spam");
  assert.equal(inf.inputTokens, words);
  assert.equal(inf.outputTokens, 1);
  const outbox = await db.gatewayOutbox.findUniqueOrThrow({ where: { inferenceId } });
  assert.ok(outbox.enqueuedAt, "attribution.score enqueued");

  const completion = await openai.completions.create({ model: "spam-filter", prompt: HAM_PROMPT });
  assert.equal(completion.object, "text_completion");
  assert.equal(completion.choices[0]!.text, "ham");
  assert.equal(completion.usage?.prompt_tokens, tokenizeWords(HAM_PROMPT).length);
  assert.equal(completion.usage?.completion_tokens, 1);

  // Streaming: role chunk, the label, finish, usage, [DONE].
  const stream = await openai.chat.completions.create({
    model: "spam-filter",
    messages: [{ role: "user", content: HAM_PROMPT }],
    stream: true,
    stream_options: { include_usage: true },
  });
  let text = "";
  let finish: string | null = null;
  let usage: OpenAI.CompletionUsage | undefined;
  for await (const chunk of stream) {
    text += chunk.choices[0]?.delta.content ?? "";
    finish = chunk.choices[0]?.finish_reason ?? finish;
    if (chunk.usage) usage = chunk.usage;
  }
  assert.equal(text, "ham");
  assert.equal(finish, "stop");
  assert.equal(usage?.completion_tokens, 1);
  const textStream = await openai.completions.create({
    model: "spam-filter",
    prompt: SPAM_PROMPT,
    stream: true,
  });
  let streamed = "";
  for await (const chunk of textStream) streamed += chunk.choices[0]?.text ?? "";
  assert.equal(streamed, "spam");
  assert.equal(await db.inference.count({ where: { modelId: "spam-filter" } }), 4);
});

test("validators attribute the served prediction to the contributors whose rows drove it", async () => {
  const { data, response } = await client(payerKey)
    .completions.create({ model: "spam-filter", prompt: "free cash prize, click to claim your winner bonus" })
    .withResponse();
  const id = response.headers.get("x-openledger-inference-id")!;
  const results = await waitFor("two validators' results", async () => {
    const r = await db.attributionResult.findMany({ where: { inferenceId: id }, include: { weights: true } });
    return r.length >= 2 ? r : undefined;
  });
  const evidence = JSON.parse(results[0]!.canonicalJson);
  assert.equal(evidence.method, "influence");
  assert.equal(evidence.labelName, data.choices[0]!.text);
  // Independently of the served label: the validators' float64 probabilities pick the same class.
  assert.equal(["ham", "spam"][argmax(evidence.probabilitiesPpm as number[])], data.choices[0]!.text);
  const weights = results[0]!.weights;
  assert.equal(
    weights.reduce((s, w) => s + w.weightPpm, 0),
    1_000_000,
  );
  const alice = weights.find((w) => w.contributorAddress === ALICE)?.weightPpm ?? 0;
  assert.ok(alice > 500_000, `alice's spam rows explain a spam answer: ${JSON.stringify(weights)}`);
});

test("the OpenAI routes' checks hold for small models: 401, 402, 404, 400", async () => {
  const openai = client(payerKey);
  await assert.rejects(
    client("sk-wrong").chat.completions.create({
      model: "spam-filter",
      messages: [{ role: "user", content: "hi" }],
    }),
    (err: InstanceType<typeof OpenAI.APIError>) => err.status === 401,
  );
  await assert.rejects(
    client(poorKey).completions.create({ model: "spam-filter", prompt: SPAM_PROMPT }),
    (err: InstanceType<typeof OpenAI.APIError>) => err.status === 402 && err.code === "payment_required",
  );
  await assert.rejects(
    openai.completions.create({ model: "spam-filter-nope", prompt: SPAM_PROMPT }),
    (err: InstanceType<typeof OpenAI.APIError>) => err.status === 404 && err.code === "model_not_found",
  );
  const bad: [Record<string, unknown>, string][] = [
    [{ prompt: SPAM_PROMPT, stop: "\n" }, "stop"],
    [{ prompt: SPAM_PROMPT, n: 2 }, "n"],
    [{ prompt: SPAM_PROMPT, logprobs: 2 }, "logprobs"],
    [{ prompt: "!!! ???" }, "prompt"],
  ];
  const before = await db.inference.count();
  for (const [extra, param] of bad) {
    await assert.rejects(
      openai.completions.create({ model: "spam-filter", ...extra } as never),
      (err: InstanceType<typeof OpenAI.APIError>) => err.status === 400 && err.param === param,
      JSON.stringify(extra),
    );
  }
  await assert.rejects(
    openai.chat.completions.create({
      model: "spam-filter",
      messages: [{ role: "system", content: SPAM_PROMPT }],
    }),
    (err: InstanceType<typeof OpenAI.APIError>) => err.status === 400 && err.param === "messages",
  );
  assert.equal(await db.inference.count(), before, "refused requests record nothing");
});

test("a small model registered through another gateway replica is served here (looked up in Postgres)", async () => {
  const index = await db.attributionIndex.findUniqueOrThrow({
    where: { datanetVersionId_kind: { datanetVersionId: versions.labelled, kind: "influence" } },
  });
  // What another replica's registration leaves behind: the rows, not this process's memory.
  await db.model.create({
    data: {
      id: "spam-filter-elsewhere",
      kind: "small_model",
      ownerAddress: builder,
      contentHash: index.blobHash!,
      priceInPer1kWei: "1000",
      priceOutPer1kWei: "1000",
      trainingVersions: { create: [{ datanetVersionId: versions.labelled }] },
    },
  });
  assert.equal(app.catalog.models.has("spam-filter-elsewhere"), false);
  const res = await client(payerKey).completions.create({
    model: "spam-filter-elsewhere",
    prompt: SPAM_PROMPT,
  });
  assert.equal(res.choices[0]!.text, "spam");
  assert.ok((await client(payerKey).models.list()).data.some((m) => m.id === "spam-filter-elsewhere"));
});

test("small models have a per-account request bucket: 429 with Retry-After, nothing recorded", async () => {
  const openai = client(burstKey);
  let limited: InstanceType<typeof OpenAI.APIError> | undefined;
  let served = 0;
  // Bounded: 20 per minute with a full bucket, so the limit is met well within 40 requests.
  for (let i = 0; i < 40 && !limited; i++) {
    const before = await db.inference.count();
    try {
      await openai.completions.create({ model: "spam-filter", prompt: HAM_PROMPT });
      served++;
    } catch (err) {
      limited = err as InstanceType<typeof OpenAI.APIError>;
      assert.equal(await db.inference.count(), before, "a limited request records nothing");
    }
  }
  assert.ok(limited, "the bucket ran out");
  assert.equal(limited.status, 429);
  assert.equal(limited.code, "rate_limited");
  assert.ok(Number(limited.headers?.get("retry-after")) >= 1);
  assert.ok(served >= 20, `served ${served} before the limit`);
});

test("a restarted gateway serves the model from its own copy; retiring stops serving", async () => {
  // Forget the loaded session: the next request loads from <data>/small-models (hash-checked).
  await app.catalog.smallModels.close();
  const m = app.catalog.models.get("spam-filter")!;
  delete m.onnxHash;
  const res = await client(payerKey).completions.create({ model: "spam-filter", prompt: SPAM_PROMPT });
  assert.equal(res.choices[0]!.text, "spam");
  assert.ok(m.onnxHash);
  const kept = await readFile(
    join(dir, "gateway", "small-models", m.onnxHash, versions.labelled, "model.onnx"),
  );
  assert.equal(createHash("sha256").update(kept).digest("hex"), m.onnxHash);
  const del = await fetch(`${root}/v1/small-models/spam-filter`, {
    method: "DELETE",
    headers: { authorization: `Bearer ${builderKey}` },
  });
  assert.equal(del.status, 200);
  await assert.rejects(
    client(payerKey).completions.create({ model: "spam-filter", prompt: SPAM_PROMPT }),
    (err: InstanceType<typeof OpenAI.APIError>) => err.status === 404,
  );
});

test("two versions whose ONNX graphs are byte-identical keep their own class names", async () => {
  const idx = await attribution.inject({
    method: "POST",
    url: "/v1/indexes",
    headers: { authorization: `Bearer ${ATTRIBUTION_TOKEN}` },
    payload: { datanetVersionId: versions.relabelled },
  });
  assert.equal(idx.statusCode, 202, idx.body);
  const [a, b] = await waitFor("the relabelled influence model", async () => {
    const rows = await Promise.all(
      [versions.labelled, versions.relabelled].map((datanetVersionId) =>
        db.attributionIndex.findUnique({
          where: { datanetVersionId_kind: { datanetVersionId, kind: "influence" } },
        }),
      ),
    );
    if (rows[1]?.status === "failed") assert.fail(rows[1].error ?? "influence build failed");
    return rows[1]?.status === "ready" ? rows : undefined;
  });
  // The premise: one graph, two versions (else this test proves nothing).
  assert.equal(b!.onnxBlobHash, a!.onnxBlobHash);
  assert.notEqual(b!.blobHash, a!.blobHash);
  // The labelled version's graph is already loaded (and kept on disk) by the tests above.
  const res = await register(builderKey, {
    ...good(),
    id: "relabelled-filter",
    // Upper case on purpose: a uuid is the same version however it is spelled.
    datanet_version_id: versions.relabelled.toUpperCase(),
  });
  assert.equal(res.status, 201, JSON.stringify(res.body));
  assert.deepEqual(res.body.classes, ["legit", "unwanted"]);
  const served = await client(payerKey).completions.create({
    model: "relabelled-filter",
    prompt: SPAM_PROMPT,
  });
  assert.equal(served.choices[0]!.text, "unwanted");
  // And from the disk copy after a restart, in either order.
  await app.catalog.smallModels.close();
  delete app.catalog.models.get("relabelled-filter")!.onnxHash;
  const again = await client(payerKey).completions.create({ model: "relabelled-filter", prompt: HAM_PROMPT });
  assert.equal(again.choices[0]!.text, "legit");
});

test("another replica's small models: listed here, and no longer served once it retires them", async () => {
  const index = await db.attributionIndex.findUniqueOrThrow({
    where: { datanetVersionId_kind: { datanetVersionId: versions.labelled, kind: "influence" } },
  });
  await db.model.create({
    data: {
      id: "spam-filter-replica-b",
      kind: "small_model",
      ownerAddress: builder,
      contentHash: index.blobHash!,
      priceInPer1kWei: "1000",
      priceOutPer1kWei: "1000",
      trainingVersions: { create: [{ datanetVersionId: versions.labelled }] },
    },
  });
  const list = async () => {
    const res = await fetch(`${root}/v1/small-models`, {
      headers: { authorization: `Bearer ${builderKey}` },
    });
    assert.equal(res.status, 200);
    return ((await res.json()) as { data: { id: string }[] }).data.map((m) => m.id);
  };
  assert.ok((await list()).includes("spam-filter-replica-b"), "the caller's active models, from Postgres");
  const res = await client(payerKey).completions.create({
    model: "spam-filter-replica-b",
    prompt: SPAM_PROMPT,
  });
  assert.equal(res.choices[0]!.text, "spam");
  // The other replica retires it (its DELETE writes Postgres and forgets it there, not here).
  await db.model.update({ where: { id: "spam-filter-replica-b" }, data: { status: "retired" } });
  const before = await db.inference.count({ where: { modelId: "spam-filter-replica-b" } });
  await assert.rejects(
    client(payerKey).completions.create({ model: "spam-filter-replica-b", prompt: SPAM_PROMPT }),
    (err: InstanceType<typeof OpenAI.APIError>) => err.status === 404,
  );
  assert.equal(await db.inference.count({ where: { modelId: "spam-filter-replica-b" } }), before);
  assert.ok(!(await list()).includes("spam-filter-replica-b"));
});

test("a gateway without the attribution service's token gets no graph, and says which variable to set", async () => {
  const index = await db.attributionIndex.findUniqueOrThrow({
    where: { datanetVersionId_kind: { datanetVersionId: versions.labelled, kind: "influence" } },
  });
  const url = attributionUrl;
  const fresh = (token?: string) =>
    new SmallModelRuntime(join(dir, `no-cache-${token ?? "none"}`), url, token);
  for (const runtime of [fresh(), fresh("not-the-attribution-token")]) {
    await assert.rejects(
      runtime.load(versions.labelled, index.onnxBlobHash!),
      (err: Error & { statusCode?: number }) => {
        assert.match(err.message, /GATEWAY_ATTRIBUTION_TOKEN must be its ATTRIBUTION_SERVICE_TOKEN/);
        return true;
      },
    );
  }
  const loaded = await fresh(ATTRIBUTION_TOKEN).load(versions.labelled, index.onnxBlobHash!);
  assert.ok(loaded);
});
