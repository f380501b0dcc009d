// Service-level figures of the attribution app on real Postgres: index build of a datanet
// version from its rows (read, tokenize, SA-IS, store, record) and per-inference scoring
// latency (span attribution + canonical JSON + keccak), with a cold index load.
// Run from the repo root: node --import tsx apps/attribution/scripts/measure.ts [--rows N] [--json]
// (the algorithms' own benchmark is `npm run bench:attribution`).
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { ChainConnector } from "@openledger/chain";
import { createTestDatabase } from "@openledger/db/testing";
import { attributionConfig } from "../src/app.ts";
import { AttributionContext } from "../src/lib/context.ts";
import { buildVersionArtifacts } from "../src/lib/indexing.ts";
import { computeAttribution } from "../src/lib/scoring.ts";
import { resultHashOf } from "../src/lib/validator.ts";

const args = process.argv.slice(2);
const json = args.includes("--json");
const rowsArg = args.indexOf("--rows");
const ROWS = rowsArg >= 0 ? Number(args[rowsArg + 1]) : 20_000;
const log = (m: string) => process.stderr.write(`${m}\n`);

// Deterministic pseudo-text: words from a fixed vocabulary by an LCG (seeded).
const VOCAB =
  "the of and to in a is that for it as was with be by on not he this are or his from at which but have an they you were her she there been one all we their has would when if so no will more out".split(
    " ",
  );
let seed = 12345;
const rnd = () => {
  seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
  return seed;
};
const sentence = (words: number) =>
  Array.from({ length: words }, () => VOCAB[rnd() % VOCAB.length]).join(" ");

const t = await createTestDatabase("attr_measure");
const blobDir = await mkdtemp(path.join(tmpdir(), "attr-measure-"));
try {
  const db = t.db;
  const addrs = Array.from({ length: 50 }, (_, i) => `0x${(i + 1).toString(16).padStart(40, "0")}`);
  await db.contributor.createMany({ data: addrs.map((address) => ({ address })) });
  const datanet = await db.datanet.create({
    data: { slug: "m", name: "m", type: "text", license: "x", ownerAddress: addrs[0]! },
  });
  const contributions = [];
  for (const a of addrs) {
    contributions.push(
      await db.contribution.create({
        data: { datanetId: datanet.id, contributorAddress: a, source: "rows" },
      }),
    );
  }
  const version = await db.datanetVersion.create({
    data: {
      datanetId: datanet.id,
      version: 1,
      merkleRoot: `0x${"00".repeat(32)}`,
      rowCount: ROWS,
      contributorCount: 50,
    },
  });
  log(`inserting ${ROWS} rows...`);
  const texts: string[] = [];
  const BATCH = 2000;
  for (let start = 0; start < ROWS; start += BATCH) {
    const data = [];
    for (let i = start; i < Math.min(ROWS, start + BATCH); i++) {
      const text = sentence(40 + (rnd() % 40));
      texts.push(text);
      const c = contributions[i % contributions.length]!;
      data.push({
        datanetId: datanet.id,
        contributionId: c.id,
        contributorAddress: c.contributorAddress,
        ordinal: i,
        text,
        normalizedHash: "00".repeat(32),
        status: "accepted" as const,
      });
    }
    await db.datanetRow.createMany({ data });
  }
  const rowIds = await db.datanetRow.findMany({ select: { id: true }, orderBy: { id: "asc" } });
  for (let start = 0; start < rowIds.length; start += 10_000) {
    await db.datanetVersionRow.createMany({
      data: rowIds
        .slice(start, start + 10_000)
        .map((r, k) => ({ versionId: version.id, position: start + k, rowId: r.id })),
    });
  }
  const config = attributionConfig({ DATABASE_URL: t.url, ATTRIBUTION_BLOB_DIR: blobDir });
  // Indexing never touches the chain: a connector that is never connected.
  const ctx = new AttributionContext(
    config,
    new ChainConnector({ rpcUrl: config.CHAIN_RPC_URL, profile: config.CHAIN_PROFILE }),
  );
  log("building the index...");
  const loop = monitorEventLoopDelay({ resolution: 10 });
  loop.enable();
  let t0 = performance.now();
  await buildVersionArtifacts(db, ctx, version.id);
  const buildMs = performance.now() - t0;
  loop.disable();
  // The build runs in a worker thread: the service's event loop (HTTP, BullMQ lock renewal) stays free.
  const maxLoopBlockMs = Math.round(loop.max / 1e6);
  const idx = await db.attributionIndex.findFirstOrThrow({
    where: { datanetVersionId: version.id, kind: "span" },
  });
  const tokens = Number(idx.tokenCount);

  const model = await db.model.create({
    data: {
      id: "m",
      kind: "adapter",
      ownerAddress: addrs[0]!,
      contentHash: "00".repeat(32),
      priceInPer1kWei: "1",
      priceOutPer1kWei: "1",
      trainingVersions: { create: [{ datanetVersionId: version.id }] },
    },
  });
  // ~256-byte outputs mixing copied row fragments and fresh text.
  const inferences = [];
  for (let i = 0; i < 30; i++) {
    const src = texts[rnd() % texts.length]!;
    const output = `${sentence(8)} ${src.slice(0, 120)} ${sentence(10)}`.slice(0, 256);
    inferences.push(
      await db.inference.create({
        data: {
          modelId: model.id,
          accountAddress: addrs[0]!,
          prompt: "p",
          output,
          inputTokens: 1,
          outputTokens: 64,
        },
      }),
    );
  }
  t0 = performance.now();
  await computeAttribution(db, ctx, inferences[0]!.id); // cold: reads + decodes the index blob
  const coldMs = performance.now() - t0;
  const lat: number[] = [];
  for (const inf of inferences.slice(1)) {
    t0 = performance.now();
    const r = await computeAttribution(db, ctx, inf.id);
    resultHashOf(r.canonical);
    lat.push(performance.now() - t0);
  }
  lat.sort((a, b) => a - b);
  const q = (p: number) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))]!;
  const out = {
    rows: ROWS,
    tokens,
    indexBuildMs: Math.round(buildMs),
    indexTokensPerSec: Math.round(tokens / (buildMs / 1000)),
    indexBytes: (idx.stats as { bytes: number }).bytes,
    maxEventLoopBlockMsDuringBuild: maxLoopBlockMs,
    scoreColdMs: Math.round(coldMs),
    scoreP50Ms: Number(q(0.5).toFixed(2)),
    scoreP99Ms: Number(q(0.99).toFixed(2)),
    outputBytes: 256,
  };
  if (json) process.stdout.write(`${JSON.stringify(out)}\n`);
  else {
    console.log(
      "| rows | tokens | index build | tokens/s | index bytes | max loop block | score cold | score p50 | score p99 |",
    );
    console.log("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    console.log(
      `| ${out.rows} | ${out.tokens} | ${out.indexBuildMs} ms | ${out.indexTokensPerSec} | ${out.indexBytes} | ${out.maxEventLoopBlockMsDuringBuild} ms | ${out.scoreColdMs} ms | ${out.scoreP50Ms} ms | ${out.scoreP99Ms} ms |`,
    );
  }
} finally {
  await t.drop();
  await rm(blobDir, { recursive: true, force: true });
}
