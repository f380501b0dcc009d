/**
 * Datanets SERVICE ingest benchmark: rows/s accepted end to end through the real HTTP API
 * (SIWE session, on-chain stake check, parse, daily limits, one INSERT transaction per
 * contribution), BullMQ (`datanet.validate`) and the validation worker (dedupe against the datanet
 * index, per-row UPDATE batches, counts) on the real Postgres, Redis and a local chain.
 *
 * Baseline in the same run: datanet-core alone (same rows, same config, in memory, no I/O), so the
 * table shows what the service adds on top of the pure pipeline (bench/datanets.ts measures that
 * pipeline at 1M rows). Also measured: seeding N existing accepted rows (with their stored MinHash
 * signatures) and the cold rebuild of the dedupe index from Postgres (what a restart costs).
 *
 *   npm run bench:datanets-service [-- --json] [--existing N] [--rows M] [--batch B] [--quick]
 *   (not a root script yet: node --import tsx bench/datanets-service.ts ...)
 * Defaults: 200k existing rows, 50k incoming rows in contributions of 5,000. --quick: 20k / 10k.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startLocalChain } from "@openledger/chain/testing";
import {
  computeBandKeys,
  contentHash,
  contentHashHex,
  DatanetIndex,
  DatanetValidator,
  indexParamsOf,
  makeVariant,
  normalizeText,
  paragraph,
  Rng,
  render,
  resolveValidationConfig,
  signatureToBytes,
} from "@openledger/datanet-core";
import { testEnvironment } from "@openledger/service-kit/testing";
import { buildDatanets, datanetsConfig } from "../apps/datanets/src/app.ts";
import { signIn, stakeOn } from "../apps/datanets/src/test-support.ts";

const argv = process.argv.slice(2);
const JSON_OUT = argv.includes("--json");
const QUICK = argv.includes("--quick");
const argNum = (name: string, fallback: number) => {
  const i = argv.indexOf(name);
  return i >= 0 ? Number(argv[i + 1]) : fallback;
};
const EXISTING = argNum("--existing", QUICK ? 20_000 : 200_000);
const INCOMING = argNum("--rows", QUICK ? 10_000 : 50_000);
const BATCH = argNum("--batch", 5_000);
const log = (m: string) => process.stderr.write(`[datanets-service] ${m}\n`);
const now = () => performance.now();

const rowSeed = (i: number) => Math.imul(i + 1, 0x9e3779b1) ^ 0x5eed;
const existingParagraph = (i: number) => paragraph(new Rng(rowSeed(i)));

/** 85% new paragraphs, 10% near-duplicates of existing rows, 5% exact (case/space) duplicates. */
function incomingRows(count: number): string[] {
  const rng = new Rng(0xbe4c);
  const out: string[] = [];
  for (let i = 0; i < count; i++) {
    const r = rng.int(20);
    if (r < 2) out.push(makeVariant(rng, existingParagraph(rng.int(EXISTING)), "shuffle_edit_case"));
    else if (r < 3) out.push(makeVariant(rng, existingParagraph(rng.int(EXISTING)), "case_whitespace"));
    else out.push(render(paragraph(rng)));
  }
  return out;
}

const dir = await mkdtemp(join(tmpdir(), "bench-dn-svc-"));
const addressesFile = join(dir, "addresses.json");
log("starting a local chain, a Postgres schema and the service...");
const [chain, env] = await Promise.all([
  startLocalChain({ writeAddresses: addressesFile }),
  testEnvironment("bench-dn-svc"),
]);
const app = await buildDatanets(
  datanetsConfig({
    ...env.env,
    CHAIN_RPC_URL: chain.rpcUrl,
    CHAIN_ADDRESSES_FILE: addressesFile,
    DATANETS_SIWE_DOMAIN: "localhost:4001",
    DATANETS_SWEEP_INTERVAL_MS: "0",
  }),
);
const h = { app, chain, env, close: async () => {} };
try {
  const [owner, contributor] = [chain.accounts.users[0]!, chain.accounts.users[1]!];
  const ownerAuth = await signIn(h, owner.privateKey);
  const auth = await signIn(h, contributor.privateKey);
  const created = await app.inject({
    method: "POST",
    url: "/v1/datanets",
    headers: ownerAuth,
    payload: {
      slug: "bench",
      name: "Bench",
      type: "text",
      license: "CC0-1.0",
      minStakeWei: (100n * 10n ** 18n).toString(),
      dailyRowLimitPerContributor: 10_000_000,
      dailyRowLimit: 100_000_000,
    },
  });
  if (created.statusCode !== 201) throw new Error(created.body);
  const datanetId: string = created.json().id;
  await stakeOn(h, contributor.privateKey, BigInt(created.json().chainDatanetId), 1000n);

  // ---- seed EXISTING accepted rows with stored signatures (as validated rows look in Postgres)
  const ctx = app.datanets;
  const config = resolveValidationConfig(ctx.validation);
  const params = indexParamsOf(config);
  const memIndex = new DatanetIndex(params, EXISTING + INCOMING + 1024);
  const validator = new DatanetValidator(config, memIndex);
  const seeder = "0x000000000000000000000000000000000000bee5";
  await app.db.contributor.create({ data: { address: seeder } });
  const seed = await app.db.contribution.create({
    data: { datanetId, contributorAddress: seeder, source: "rows", rowCount: EXISTING, status: "validated" },
  });
  const tSeed = now();
  const keys = new Uint32Array(params.bands);
  const CHUNK = 5000;
  for (let start = 0; start < EXISTING; start += CHUNK) {
    const texts: string[] = [];
    const hashes: string[] = [];
    const sigs: string[] = [];
    const ordinals: number[] = [];
    const sigsRaw: Uint32Array[] = [];
    for (let i = start; i < Math.min(EXISTING, start + CHUNK); i++) {
      const text = render(existingParagraph(i));
      const normalized = normalizeText(text);
      const sig = validator.hasher.signature(normalized);
      texts.push(text);
      hashes.push(contentHashHex(normalized));
      sigs.push(signatureToBytes(sig).toString("hex"));
      sigsRaw.push(sig);
      ordinals.push(i);
    }
    const ids = await app.db.$queryRawUnsafe<{ id: bigint }[]>(
      `INSERT INTO datanet_rows (datanet_id, contribution_id, contributor_address, ordinal, text, normalized_hash, status, quality_score, signature)
       SELECT $1::uuid, $2::uuid, $3, o, t, h, 'accepted', 100, decode(s, 'hex')
       FROM unnest($4::int[], $5::text[], $6::text[], $7::text[]) AS v(o, t, h, s)
       RETURNING id`,
      datanetId,
      seed.id,
      seeder,
      ordinals,
      texts,
      hashes,
      sigs,
    );
    // The in-memory baseline index gets the same rows under the same ids.
    ids.forEach((r, k) => {
      const sig = sigsRaw[k]!;
      memIndex.add(
        Number(r.id),
        contentHash(normalizeText(texts[k]!)),
        sig,
        computeBandKeys(sig, params, keys),
      );
    });
    if ((start / CHUNK) % 10 === 0) log(`seeded ${Math.min(EXISTING, start + CHUNK)}/${EXISTING} rows`);
  }
  await app.db.contribution.update({ where: { id: seed.id }, data: { acceptedCount: EXISTING } });
  const seedSeconds = (now() - tSeed) / 1000;

  const rows = incomingRows(INCOMING);

  // ---- baseline: datanet-core alone on the same rows (clone the index: the service gets its own)
  const baseIndex = DatanetIndex.deserialize(memIndex.serialize());
  const baseValidator = new DatanetValidator(config, baseIndex);
  const tBase = now();
  let baseAccepted = 0;
  for (let i = 0; i < rows.length; i += BATCH) {
    const sub = baseValidator.startSubmission({ dedupe: true });
    const outcomes = sub.validateBatch(rows.slice(i, i + BATCH).map((text) => ({ text })));
    baseAccepted += outcomes.filter((o) => o.status === "accepted").length;
    let next = 1e12 + i;
    sub.commit(() => next++);
  }
  const baseSeconds = (now() - tBase) / 1000;

  const submit = (texts: string[]) =>
    app.inject({
      method: "POST",
      url: `/v1/datanets/${datanetId}/contributions`,
      headers: auth,
      payload: { rows: texts.map((text) => ({ text })) },
    });
  const waitValidated = async (ids: string[]) => {
    for (;;) {
      const n = await app.db.contribution.count({ where: { id: { in: ids }, status: "validated" } });
      if (n === ids.length) return;
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  // ---- cold start: the first job rebuilds the index from the stored signatures
  ctx.indexes.clear();
  const tCold = now();
  const warm = await submit([render(paragraph(new Rng(99), 3, 5))]);
  await waitValidated([warm.json().contribution.id]);
  const coldSeconds = (now() - tCold) / 1000;

  // ---- the measured ingest: HTTP submit + queue + worker + Postgres
  log(`ingesting ${INCOMING} rows in contributions of ${BATCH} against ${EXISTING} existing rows...`);
  const t0 = now();
  let httpMs = 0;
  const ids: string[] = [];
  for (let i = 0; i < rows.length; i += BATCH) {
    const t = now();
    const res = await submit(rows.slice(i, i + BATCH));
    httpMs += now() - t;
    if (res.statusCode !== 202) throw new Error(res.body);
    ids.push(res.json().contribution.id);
  }
  await waitValidated(ids);
  const seconds = (now() - t0) / 1000;
  const agg = await app.db.contribution.aggregate({
    where: { id: { in: ids } },
    _sum: { acceptedCount: true, rejectedCount: true },
  });
  const accepted = agg._sum.acceptedCount ?? 0;

  const result = {
    existingRows: EXISTING,
    incomingRows: INCOMING,
    rowsPerContribution: BATCH,
    accepted,
    rejected: agg._sum.rejectedCount ?? 0,
    service: {
      seconds: Number(seconds.toFixed(2)),
      rowsPerSec: Math.round(INCOMING / seconds),
      acceptedRowsPerSec: Math.round(accepted / seconds),
      httpStoreRowsPerSec: Math.round((INCOMING * 1000) / httpMs),
    },
    baselineCoreOnly: { rowsPerSec: Math.round(INCOMING / baseSeconds), accepted: baseAccepted },
    seedRowsPerSec: Math.round(EXISTING / seedSeconds),
    coldIndexRebuildSeconds: Number(coldSeconds.toFixed(2)),
  };
  if (JSON_OUT) {
    process.stdout.write(`${JSON.stringify(result)}\n`);
  } else {
    console.log(
      `Datanets service ingest: ${INCOMING} rows (${BATCH}/contribution) vs ${EXISTING} existing rows`,
    );
    console.table({
      "service (HTTP + queue + worker + Postgres)": {
        "rows/s": result.service.rowsPerSec,
        "accepted rows/s": result.service.acceptedRowsPerSec,
        accepted,
      },
      "baseline: datanet-core only, in memory": {
        "rows/s": result.baselineCoreOnly.rowsPerSec,
        "accepted rows/s": Math.round(baseAccepted / baseSeconds),
        accepted: baseAccepted,
      },
    });
    console.log(`HTTP store only: ${result.service.httpStoreRowsPerSec} rows/s`);
    console.log(
      `seeding existing rows: ${result.seedRowsPerSec} rows/s; cold index rebuild: ${coldSeconds.toFixed(2)} s`,
    );
  }
} finally {
  await app.close();
  await chain.stop();
  await env.cleanup();
  await rm(dir, { recursive: true, force: true });
}
