// Settlement throughput (inferences/s from the queue into the ledger) and epoch posting gas
// against the number of recipients.
//
//   npm run bench:settlement            human table
//   npm run bench:settlement -- --json  {"inferencesPerSec": x, "epochPostGas": {"10": g, ...}, ...}
//
// Throughput: N `inference.completed` jobs are enqueued (untimed), then BullMQ workers drain
// them into Postgres; the clock runs from the workers' start to the last settlement row. Each
// inference has 2 agreeing validator results and 3 weighted contributors. Compared in the same
// run: the group-commit path (many inferences per transaction) and the baseline of one
// transaction per inference. Signature checks (EIP-712 recovery, 2 per inference) are measured
// apart: their cost per inference is reported, and the batched run is repeated with them on a
// smaller sample.
// Epoch gas: off-chain cumulative-earnings trees of 10 / 1,000 / 100,000 recipients, the root
// posted through RewardDistributor.postEpoch (after the escrow charge that funds it) with the
// service's chain-intent code; gasUsed from the receipts.
//
// Env: BENCH_INFERENCES (default 20000), BENCH_BASELINE_INFERENCES (2000), BENCH_SIGNED_INFERENCES
// (1000), BENCH_CONCURRENCY (256), BENCH_RECIPIENTS (10,1000,100000).
import { loadavg } from "node:os";
import {
  buildEarningsTree,
  createChainClients,
  inferenceEscrowAbi,
  openTokenAbi,
  signAttributionResult,
} from "@openledger/chain";
import { startLocalChain } from "@openledger/chain/testing";
import { parseConfig, settlementEnv } from "@openledger/config";
import { createTestDatabase } from "@openledger/db/testing";
import { Producer, WorkerSet } from "@openledger/queue";
import { deletePrefix, TEST_REDIS_URL, uniquePrefix } from "@openledger/queue/testing";
import { DEFAULT_SPLIT_BPS } from "@openledger/settlement-core";
import { type Abi, type Address, type Hex, keccak256, toBytes, toHex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { GroupCommit } from "../apps/settlement/src/lib/batcher.ts";
import type { SettlementChain } from "../apps/settlement/src/lib/chain.ts";
import { EpochManager, readEpoch } from "../apps/settlement/src/lib/epochs.ts";
import { executeIntent } from "../apps/settlement/src/lib/intents.ts";
import {
  inferenceIdToBytes32,
  type SettleContext,
  type SettleOutcome,
  settleBatch,
} from "../apps/settlement/src/lib/settle.ts";

const json = process.argv.includes("--json");
const N = Number(process.env.BENCH_INFERENCES ?? 20_000);
const N_BASE = Number(process.env.BENCH_BASELINE_INFERENCES ?? 2_000);
const N_SIGNED = Number(process.env.BENCH_SIGNED_INFERENCES ?? 1_000);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 256);
const sizes = (process.env.BENCH_RECIPIENTS ?? "10,1000,100000").split(",").map(Number);
const progress = (line: string) => process.stderr.write(`[bench:settlement] ${line}\n`);
const silent = { info() {}, warn() {}, error() {} };

const chain = await startLocalChain();
const database = await createTestDatabase("bench-settlement");
const db = database.db;
const prefix = uniquePrefix("bench-settlement");
const out: Record<string, unknown> = {};
/** Node CPU time (this process: workers + ledger code, not Redis/Postgres) per 1,000 inferences, ms. */
const cpuMsPer1k: Record<string, number> = {};

// Deterministic pseudo-random numbers and distinct addresses, so runs are comparable.
let seed = 0x5e771e;
const rand = () => {
  seed = (Math.imul(seed, 1_103_515_245) + 12_345) >>> 0;
  return seed >>> 8; // the low bits of an LCG cycle quickly
};
let addressCounter = 0;
const randomAddress = () => `0x${keccak256(toHex(++addressCounter)).slice(26)}`;

try {
  if (!chain.addresses) throw new Error("platform not deployed");
  const addresses = chain.addresses;
  const validators = chain.accounts.validators.slice(0, 2).map((v) => privateKeyToAccount(v.privateKey));
  const contributors = Array.from({ length: 50 }, randomAddress);
  const baseCtx: SettleContext = {
    bps: DEFAULT_SPLIT_BPS,
    treasury: chain.accounts.treasury.address.toLowerCase(),
    quorum: 2,
    deadlineMs: 3_600_000,
    validators: new Set(validators.map((v) => v.address.toLowerCase())),
  };

  await db.$executeRawUnsafe(
    `INSERT INTO models (id, kind, owner_address, content_hash, price_in_per_1k_wei, price_out_per_1k_wei, updated_at)
     VALUES ('bench-adapter', 'adapter', $1, $2, 1000000000000000007, 2000000000000000003, now())`,
    randomAddress(),
    "ab".repeat(32),
  );

  /** Inserts n inferences with 2 agreeing results (signed when `sign`) and 3 weights each. */
  async function makeInferences(n: number, sign: boolean): Promise<string[]> {
    const ids: string[] = [];
    const chunk = 2_000;
    for (let start = 0; start < n; start += chunk) {
      const m = Math.min(chunk, n - start);
      const inf = Array.from({ length: m }, () => crypto.randomUUID());
      const consumers = inf.map(() => chain.accounts.users[rand() % 6]!.address.toLowerCase());
      await db.$executeRawUnsafe(
        `INSERT INTO inferences (id, model_id, account_address, prompt, output, input_tokens, output_tokens)
         SELECT id, 'bench-adapter', acc, 'p', 'o', 100 + (random() * 900)::int, 10 + (random() * 300)::int
           FROM unnest($1::uuid[], $2::text[]) AS t(id, acc)`,
        inf,
        consumers,
      );
      const rIds: string[] = [];
      const rInf: string[] = [];
      const rVal: string[] = [];
      const rJson: string[] = [];
      const rHash: string[] = [];
      const rSig: string[] = [];
      const wRes: string[] = [];
      const wAddr: string[] = [];
      const wPpm: number[] = [];
      for (const id of inf) {
        const picks = [contributors[rand() % 50]!, contributors[rand() % 50]!, contributors[rand() % 50]!];
        const uniq = [...new Set(picks)];
        const ppm = uniq.map((_, i) =>
          i === uniq.length - 1
            ? 1_000_000 - Math.floor(1_000_000 / uniq.length) * (uniq.length - 1)
            : Math.floor(1_000_000 / uniq.length),
        );
        const canonical = JSON.stringify({ inferenceId: id, weights: uniq.map((a, i) => [a, ppm[i]]) });
        const hash = keccak256(toBytes(canonical));
        for (const v of validators) {
          const rid = crypto.randomUUID();
          rIds.push(rid);
          rInf.push(id);
          rVal.push(v.address.toLowerCase());
          rJson.push(canonical);
          rHash.push(hash);
          rSig.push(
            sign
              ? await signAttributionResult(
                  v,
                  chain.chainId,
                  { inferenceId: inferenceIdToBytes32(id), resultHash: hash },
                  addresses.contracts.RewardDistributor,
                )
              : `0x${"00".repeat(65)}`,
          );
          uniq.forEach((a, i) => {
            wRes.push(rid);
            wAddr.push(a);
            wPpm.push(ppm[i]!);
          });
        }
      }
      await db.$executeRawUnsafe(
        `INSERT INTO attribution_results (id, inference_id, validator_address, method, canonical_json, result_hash, signature)
         SELECT id, inf, val, 'span', js, h, sig FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[])
           AS t(id, inf, val, js, h, sig)`,
        rIds,
        rInf,
        rVal,
        rJson,
        rHash,
        rSig,
      );
      await db.$executeRawUnsafe(
        `INSERT INTO attribution_weights (result_id, contributor_address, weight_ppm)
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::int[])`,
        wRes,
        wAddr,
        wPpm,
      );
      ids.push(...inf);
    }
    return ids;
  }

  /** Enqueues the ids (untimed), then times workers draining them into the ledger. */
  async function drain(
    label: string,
    ids: string[],
    concurrency: number,
    settle: (id: string) => Promise<SettleOutcome | "noop">,
  ): Promise<number> {
    const qPrefix = `${prefix}-${label}`;
    const producer = new Producer({ redisUrl: TEST_REDIS_URL, prefix: qPrefix });
    const queue = producer.queue("settlement");
    for (let i = 0; i < ids.length; i += 5_000) {
      await queue.addBulk(
        ids.slice(i, i + 5_000).map((id) => ({
          name: "inference.completed",
          data: { inferenceId: id },
          opts: { jobId: `inference.completed.${id}`, removeOnComplete: true, attempts: 3 },
        })),
      );
    }
    const workers = new WorkerSet({
      redisUrl: TEST_REDIS_URL,
      prefix: qPrefix,
      queues: ["settlement"],
      logger: silent,
      concurrency: { settlement: concurrency },
    });
    let done = 0;
    let failed = 0;
    workers.handle("inference.completed", async ({ inferenceId }) => {
      const o = await settle(inferenceId);
      if (o !== "settled" && o !== "already" && o !== "noop") failed++;
      done++;
    });
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    await workers.start();
    const ticker = setInterval(() => progress(`${label}: ${done}/${ids.length}`), 2_000);
    while (done < ids.length) await new Promise((res) => setTimeout(res, 10));
    const seconds = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    cpuMsPer1k[label] = Math.round(((cpu.user + cpu.system) / 1000 / ids.length) * 1000);
    clearInterval(ticker);
    await workers.close();
    await producer.close();
    await deletePrefix(qPrefix);
    if (failed > 0) throw new Error(`${label}: ${failed} inferences did not settle`);
    const rate = ids.length / seconds;
    progress(`${label}: ${ids.length} in ${seconds.toFixed(2)} s = ${rate.toFixed(0)} inferences/s`);
    return rate;
  }

  async function checkLedger() {
    const [r] = await db.$queryRawUnsafe<{ s: string; bad: number }[]>(
      `SELECT (SELECT COALESCE(sum(amount_wei), 0)::text FROM ledger_entries) AS s,
              (SELECT count(*)::int FROM settlements s JOIN ledger_entries e ON e.transaction_id = s.transaction_id
                WHERE e.account LIKE 'consumer:%' AND e.amount_wei <> -s.fee_wei) AS bad`,
    );
    if (r?.s !== "0" || r.bad !== 0) throw new Error(`ledger check failed: sum ${r?.s}, bad ${r?.bad}`);
  }

  // ---------------------------------------------------------------- throughput
  progress(`preparing ${N + N_BASE} unsigned inferences and ${N_SIGNED} signed ones`);
  const batchedIds = await makeInferences(N, false);
  const baseIds = await makeInferences(N_BASE, false);
  const signedIds = await makeInferences(N_SIGNED, true);
  await db.$executeRawUnsafe(`ANALYZE`);

  const maxBatch = 500;
  const group = new GroupCommit<string, SettleOutcome>(maxBatch, async (keys) => {
    return (await settleBatch(db, keys, baseCtx)).outcomes;
  });
  // Reference points: the queue alone (handler does nothing) and the ledger path alone (no queue).
  const queueOnly = await drain("queue-only", baseIds, CONCURRENCY, async () => "noop");
  const directIds = batchedIds.slice(0, Math.floor(N / 4));
  const td = performance.now();
  await Promise.all(directIds.map((id) => group.submit(id)));
  const direct = directIds.length / ((performance.now() - td) / 1000);
  progress(`direct group commit (no queue): ${direct.toFixed(0)} inferences/s`);
  const batched = await drain("batched", batchedIds.slice(directIds.length), CONCURRENCY, (id) =>
    group.submit(id),
  );
  const baseline = await drain("baseline", baseIds, 16, async (id) => {
    const r = await settleBatch(db, [id], baseCtx);
    return r.outcomes.get(id) ?? "missing";
  });
  const signedCtx: SettleContext = {
    ...baseCtx,
    signatureDomain: { chainId: chain.chainId, verifyingContract: addresses.contracts.RewardDistributor },
  };
  const signedGroup = new GroupCommit<string, SettleOutcome>(maxBatch, async (keys) => {
    return (await settleBatch(db, keys, signedCtx)).outcomes;
  });
  const signed = await drain("batched+signatures", signedIds, CONCURRENCY, (id) => signedGroup.submit(id));
  await checkLedger();
  const [settledCount] = await db.$queryRawUnsafe<{ n: number }[]>(
    `SELECT count(*)::int AS n FROM settlements`,
  );
  if (settledCount?.n !== N + N_BASE + N_SIGNED)
    throw new Error(`expected ${N + N_BASE + N_SIGNED} settlements, got ${settledCount?.n}`);
  out.inferencesPerSec = Math.round(batched);
  out.baselineInferencesPerSec = Math.round(baseline);
  out.speedup = Number((batched / baseline).toFixed(2));
  out.signatureCheckedInferencesPerSec = Math.round(signed);
  out.queueOnlyJobsPerSec = Math.round(queueOnly);
  out.nodeCpuMsPer1kInferences = cpuMsPer1k;
  out.loadAverage1m = Number(loadavg()[0]?.toFixed(1));
  out.ledgerOnlyInferencesPerSec = Math.round(direct);
  out.throughputSetup = {
    inferences: N - Math.floor(N / 4),
    ledgerOnlyInferences: Math.floor(N / 4),
    baselineInferences: N_BASE,
    signedInferences: N_SIGNED,
    concurrency: CONCURRENCY,
    maxBatch,
    baselineConcurrency: 16,
    resultsPerInference: 2,
    contributorsPerInference: "1-3",
  };

  // ---------------------------------------------------------------- epoch gas
  const a = chain.accounts;
  const opts = { rpcUrl: chain.rpcUrl, chainId: chain.chainId };
  const settler = createChainClients({ ...opts, privateKey: a.settlement.privateKey });
  const consumer = createChainClients({ ...opts, privateKey: a.users[0]!.privateKey });
  const settlementChain: SettlementChain = {
    chainId: chain.chainId,
    addresses,
    publicClient: settler.publicClient,
    settler: settler.walletClient,
    attesters: chain.accounts.validators.map((v) => privateKeyToAccount(v.privateKey)),
    treasury: a.treasury.address.toLowerCase(),
    distributor: addresses.contracts.RewardDistributor,
  };
  const deposit = 100_000n * 10n ** 18n;
  for (const [fn, args, addr, abi] of [
    ["approve", [addresses.contracts.InferenceEscrow, deposit], addresses.contracts.OpenToken, openTokenAbi],
    ["deposit", [deposit], addresses.contracts.InferenceEscrow, inferenceEscrowAbi],
  ] as const) {
    const hash = await consumer.walletClient.writeContract({
      address: addr,
      abi: abi as Abi,
      functionName: fn,
      args,
    } as never);
    await consumer.publicClient.waitForTransactionReceipt({ hash });
  }
  const epochPostGas: Record<string, number> = {};
  const treeBuildMs: Record<string, number> = {};
  let previousTotal = 0n;
  let epochNo = 0;
  const cfg = parseConfig("bench", settlementEnv, {});
  const manager = new EpochManager(db, cfg, async () => settlementChain, silent);
  // A warm-up epoch (1 recipient, not reported) pays the one-time cold-storage writes of the first
  // post and draw, so every measured post starts from the same storage state.
  for (const size of [1, ...sizes]) {
    epochNo++;
    progress(`epoch ${epochNo}: tree of ${size} recipients`);
    // Cumulative amounts that never decrease: every recipient is new and earns 1e12 + i wei.
    const entries = Array.from({ length: size }, (_, i) => ({
      account: randomAddress() as Address,
      cumulativeAmount: 1_000_000_000_000n + BigInt(i),
    }));
    const t0 = performance.now();
    const tree = buildEarningsTree({
      chainId: chain.chainId,
      distributor: settlementChain.distributor,
      epoch: BigInt(epochNo),
      entries,
    });
    if (epochNo > 1) treeBuildMs[String(size)] = Math.round(performance.now() - t0);
    // (Earnings of earlier epochs are not carried in this synthetic series: each tree is
    // self-contained and its total strictly exceeds the previous, as the contract requires.)
    const total = tree.cumulativeTotal > previousTotal ? tree.cumulativeTotal : previousTotal + 1n;
    if (total !== tree.cumulativeTotal) throw new Error("synthetic totals must grow");
    const batchId = keccak256(toBytes(`bench.charge:${epochNo}`));
    await executeIntent(db, settlementChain, {
      key: `bench.charge:${epochNo}`,
      kind: "escrow.charge",
      payload: {},
      call: {
        address: addresses.contracts.InferenceEscrow,
        abi: inferenceEscrowAbi as Abi,
        functionName: "charge",
        args: [batchId, [a.users[0]!.address], [total - previousTotal]],
      },
      isDone: async () => false,
    });
    // The service's own path: a closed epoch row, attestations, then the post intent.
    await db.$executeRawUnsafe(
      `INSERT INTO epochs (id, status, merkle_root, total_wei, cumulative_total_wei, recipient_count, closed_at)
       VALUES ($1, 'closed', $2, $3::numeric, $4::numeric, $5, now())`,
      epochNo,
      tree.root,
      (total - previousTotal).toString(),
      total.toString(),
      size,
    );
    const row = await readEpoch(db, epochNo);
    if (!row || !(await manager.attest(row))) throw new Error("attestation failed");
    const posted = await executeIntent(db, settlementChain, await manager.postSpec(row));
    const receipt = await settler.publicClient.getTransactionReceipt({ hash: posted.txHash as Hex });
    if (epochNo > 1) epochPostGas[String(size)] = Number(receipt.gasUsed);
    previousTotal = total;
  }
  out.epochPostGas = epochPostGas;
  out.treeBuildMs = treeBuildMs;

  if (json) process.stdout.write(`${JSON.stringify(out)}\n`);
  else {
    console.log("\nSettlement throughput (queue -> ledger, Postgres + Redis on this machine)");
    const row = (label: string, value: unknown, unit: string) =>
      console.log(`  ${label.padEnd(62)} ${String(value).padStart(7)} ${unit}`);
    row(`group commit (concurrency ${CONCURRENCY}, <= ${maxBatch}/tx)`, out.inferencesPerSec, "inferences/s");
    row(
      "baseline: one transaction per inference (concurrency 16)",
      out.baselineInferencesPerSec,
      "inferences/s",
    );
    row("speed-up", `x${out.speedup}`, "");
    row(
      "group commit + EIP-712 checks (2 recoveries/inference)",
      out.signatureCheckedInferencesPerSec,
      "inferences/s",
    );
    row("reference: queue alone (no-op handler)", out.queueOnlyJobsPerSec, "jobs/s");
    row(
      "reference: ledger path alone (group commit, no queue)",
      out.ledgerOnlyInferencesPerSec,
      "inferences/s",
    );
    console.log("\nEpoch posting (RewardDistributor.postEpoch, root only)");
    console.log("  recipients   post gas   tree build (ms)");
    for (const s of sizes) {
      console.log(
        `  ${String(s).padStart(10)}   ${String(epochPostGas[String(s)]).padStart(8)}   ${String(treeBuildMs[String(s)]).padStart(15)}`,
      );
    }
  }
} finally {
  await chain.stop();
  await database.drop();
  await deletePrefix(prefix);
}
