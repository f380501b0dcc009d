// Settlement throughput (inferences/s from the queue into the ledger) and epoch posting gas
// against the number of recipients.
//
//   npm run bench:settlement            human table
//   npm run bench:settlement -- --json  {"inferencesPerSec": x, "epochPostGas": {"10": g, ...}, ...}
//
// Throughput: `inference.completed` jobs are enqueued (untimed), then BullMQ workers drain them
// into Postgres; the clock runs from the workers' start to the last settled inference. Each
// inference has 2 agreeing validator results and 1-3 weighted contributors (~9 ledger rows).
// Compared in the same run: batch jobs (BENCH_IDS_PER_JOB ids each, as a producer's
// CompletedBatcher sends under load) through the group commit, one job per inference through
// the group commit, and the baseline of one job and one transaction per inference; and the batch
// jobs again through service-kit's Background (the way the service runs its workers: typed jobs
// map, per-queue concurrency, job metrics), to show the kit costs nothing. References:
// the queue alone (no-op handler) in both job forms, and the ledger path alone (no queue).
// Signature checks (2 EIP-712 signatures per inference) on a smaller set, two ways: recovering
// each signer, and with the validators' public keys known (the service's path).
// For every run: Node CPU (this process) and Postgres CPU (the backends of this process's pool,
// found by application_name) per 1,000 inferences, so each stage's cost is known apart from
// the machine's load.
// Epoch gas: off-chain cumulative-earnings trees of 10 / 1,000 / 100,000 recipients, the root
// posted through RewardDistributor.postEpoch (after the escrow charge that funds it) with the
// service's chain-intent code; gasUsed from the receipts.
//
// Env: BENCH_INFERENCES (batch-job run, default 20000), BENCH_SINGLE_JOB_INFERENCES (5000),
// BENCH_LEDGER_ONLY_INFERENCES (5000), BENCH_BASELINE_INFERENCES (2000), BENCH_SIGNED_INFERENCES
// (1000), BENCH_IDS_PER_JOB (500), BENCH_JOB_CONCURRENCY (8), BENCH_CONCURRENCY (256, one-job-
// per-inference runs), BENCH_RECIPIENTS (10,1000,100000).
import { readFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import {
  attributionCommitment,
  attributionCommitmentSalt,
  buildEarningsTree,
  ChainConnector,
  createChainClients,
  inferenceEscrowAbi,
  inferenceIdToBytes32,
  openTokenAbi,
  signAttributionCommitment,
  signAttributionResult,
  signEpochRoot,
  writeAddresses,
} from "@openledger/chain";
import { startLocalChain } from "@openledger/chain/testing";
import { type BaseConfig, parseConfig, settlementEnv } from "@openledger/config";
import { createDb } from "@openledger/db";
import { createTestDatabase } from "@openledger/db/testing";
import { createLogger } from "@openledger/logger";
import { completedInferenceIds, type JobPayload, jobId, Producer, WorkerSet } from "@openledger/queue";
import { deletePrefix, TEST_REDIS_URL, uniquePrefix } from "@openledger/queue/testing";
import { Background, GroupCommit } from "@openledger/service-kit";
import { DEFAULT_SPLIT_BPS, SignatureVerifier } from "@openledger/settlement-core";
import type { FastifyBaseLogger, FastifyInstance } from "fastify";
import { Registry } from "prom-client";
import { type Abi, type Address, type Hex, keccak256, toBytes, toHex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { type SettlementChain, settlementChainOf } from "../apps/settlement/src/lib/chain.ts";
import { EpochManager, readEpoch } from "../apps/settlement/src/lib/epochs.ts";
import { executeIntent } from "../apps/settlement/src/lib/intents.ts";
import { type SettleContext, type SettleOutcome, settleBatch } from "../apps/settlement/src/lib/settle.ts";

const json = process.argv.includes("--json");
const kitLog = createLogger({ name: "bench", level: "silent" }) as FastifyBaseLogger;
const N = Number(process.env.BENCH_INFERENCES ?? 20_000);
const N_SINGLE = Number(process.env.BENCH_SINGLE_JOB_INFERENCES ?? 5_000);
const N_DIRECT = Number(process.env.BENCH_LEDGER_ONLY_INFERENCES ?? 5_000);
const PER_JOB = Number(process.env.BENCH_IDS_PER_JOB ?? 500);
const JOB_CONCURRENCY = Number(process.env.BENCH_JOB_CONCURRENCY ?? 8);
const N_BASE = Number(process.env.BENCH_BASELINE_INFERENCES ?? 2_000);
const N_SIGNED = Number(process.env.BENCH_SIGNED_INFERENCES ?? 1_000);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 256);
const sizes = (process.env.BENCH_RECIPIENTS ?? "10,1000,100000").split(",").map(Number);
const progress = (line: string) => process.stderr.write(`[bench:settlement] ${line}\n`);
const silent = { info() {}, warn() {}, error() {} };

const chain = await startLocalChain();
const database = await createTestDatabase("bench-settlement");
// Our own client, named, so the Postgres backends serving this run can be found (their CPU time).
const APP_NAME = `bench-settlement-${process.pid}`;
const db = createDb(`${database.url}&application_name=${APP_NAME}`, { maxConnections: 8 });
const TICKS_PER_SEC = 100; // USER_HZ on Linux
const prefix = uniquePrefix("bench-settlement");
const out: Record<string, unknown> = {};
/** CPU time per 1,000 inferences, ms: this process (workers + ledger code) and its Postgres backends. */
const cpuMsPer1k: Record<string, { node: number; postgres: number }> = {};

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
      const rSalt: string[] = [];
      const rCommit: string[] = [];
      const rCommitSig: string[] = [];
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
        const canonical = JSON.stringify({
          inferenceId: id,
          weights: uniq.map((a, i) => ({ contributorId: a, ppm: ppm[i] })),
        });
        const hash = keccak256(toBytes(canonical));
        for (const v of validators) {
          const rid = crypto.randomUUID();
          rIds.push(rid);
          rInf.push(id);
          rVal.push(v.address.toLowerCase());
          rJson.push(canonical);
          rHash.push(hash);
          // Commit-reveal: the validator's commitment to the result and the salt opening it (as the
          // attribution service records them; settlement checks both signatures and the opening).
          const salt = sign
            ? await attributionCommitmentSalt(
                v,
                chain.chainId,
                inferenceIdToBytes32(id),
                addresses.contracts.RewardDistributor,
              )
            : keccak256(toBytes(`${id}:${v.address}`));
          const commitment = attributionCommitment(hash, v.address, salt);
          rSalt.push(salt);
          rCommit.push(commitment);
          rCommitSig.push(
            sign
              ? await signAttributionCommitment(
                  v,
                  chain.chainId,
                  { inferenceId: inferenceIdToBytes32(id), commitment },
                  addresses.contracts.RewardDistributor,
                )
              : `0x${"00".repeat(65)}`,
          );
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
        `INSERT INTO attribution_commitments (inference_id, validator_address, commitment, signature)
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[])`,
        rInf,
        rVal,
        rCommit,
        rCommitSig,
      );
      await db.$executeRawUnsafe(
        `INSERT INTO attribution_results (id, inference_id, validator_address, method, canonical_json, result_hash, signature, salt)
         SELECT id, inf, val, 'span', js, h, sig, salt
           FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])
           AS t(id, inf, val, js, h, sig, salt)`,
        rIds,
        rInf,
        rVal,
        rJson,
        rHash,
        rSig,
        rSalt,
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

  /** Postgres backends serving this process (its pool's application_name), for their CPU time. */
  async function backendPids(): Promise<number[]> {
    const rows = await db.$queryRawUnsafe<{ pid: number }[]>(
      `SELECT pid FROM pg_stat_activity WHERE application_name = $1`,
      APP_NAME,
    );
    return rows.map((r) => r.pid);
  }
  /** CPU ms of a process so far (utime + stime; 0 once it is gone). */
  function processCpuMs(pid: number): number {
    try {
      const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
      return ((Number(fields[11]) + Number(fields[12])) * 1000) / TICKS_PER_SEC;
    } catch {
      return 0;
    }
  }
  async function measure<T>(
    label: string,
    n: number,
    run: () => Promise<T>,
  ): Promise<{ value: T; seconds: number }> {
    const pids0 = await backendPids();
    const pg0 = new Map(pids0.map((pid) => [pid, processCpuMs(pid)]));
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    const value = await run();
    const seconds = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    let pgMs = 0;
    for (const pid of await backendPids()) pgMs += processCpuMs(pid) - (pg0.get(pid) ?? 0);
    cpuMsPer1k[label] = {
      node: Math.round(((cpu.user + cpu.system) / 1000 / n) * 1000),
      postgres: Math.round((pgMs / n) * 1000),
    };
    return { value, seconds };
  }

  type Settle = (ids: string[]) => Promise<(SettleOutcome | "noop")[]>;
  /**
   * Enqueues the ids (untimed) as `inference.completed` jobs of `perJob` ids each (1 = the
   * one-inference form), then times workers draining them into the ledger.
   */
  async function drain(
    label: string,
    ids: string[],
    perJob: number,
    concurrency: number,
    settle: Settle,
    /** "kit": through service-kit's Background (how the settlement service runs its workers). */
    via: "workerset" | "kit" = "workerset",
  ): Promise<number> {
    const qPrefix = `${prefix}-${label.replace(/[^a-z0-9-]/g, "-")}`;
    const producer = new Producer({ redisUrl: TEST_REDIS_URL, prefix: qPrefix });
    const queue = producer.queue("settlement");
    const jobs: { name: "inference.completed"; data: JobPayload<"inference.completed"> }[] = [];
    for (let i = 0; i < ids.length; i += perJob) {
      const chunk = ids.slice(i, i + perJob);
      jobs.push({
        name: "inference.completed",
        data: perJob === 1 ? { inferenceId: chunk[0]! } : { inferenceIds: chunk },
      });
    }
    for (let i = 0; i < jobs.length; i += 5_000) {
      await queue.addBulk(
        jobs.slice(i, i + 5_000).map((j) => ({
          ...j,
          opts: { jobId: jobId(j.name, j.data), removeOnComplete: true, attempts: 3 },
        })),
      );
    }
    let done = 0;
    let failed = 0;
    const handler = async (payload: JobPayload<"inference.completed">) => {
      const outcomes = await settle(completedInferenceIds(payload));
      for (const o of outcomes) if (o !== "settled" && o !== "already" && o !== "noop") failed++;
      done += outcomes.length;
    };
    let workers: { start(): Promise<void>; close(): Promise<void> };
    if (via === "kit") {
      const config = { RUN_WORKERS: true, REDIS_URL: TEST_REDIS_URL, QUEUE_PREFIX: qPrefix } as BaseConfig;
      const background = new Background(config, kitLog, new Registry(), (q) => producer.queue(q));
      background.consume({} as FastifyInstance, config, {
        queues: ["settlement"],
        concurrency: () => ({ settlement: concurrency }),
        jobs: () => ({ "inference.completed": handler }),
      });
      workers = { start: () => background.start(), close: () => background.stop() };
    } else {
      const set = new WorkerSet({
        redisUrl: TEST_REDIS_URL,
        prefix: qPrefix,
        queues: ["settlement"],
        logger: silent,
        concurrency: { settlement: concurrency },
      });
      set.handle("inference.completed", handler);
      workers = set;
    }
    const ticker = setInterval(() => progress(`${label}: ${done}/${ids.length}`), 2_000);
    const { seconds } = await measure(label, ids.length, async () => {
      await workers.start();
      while (done < ids.length) await new Promise((res) => setTimeout(res, 5));
    });
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
  const total = 2 * N + N_SINGLE + N_DIRECT + N_BASE;
  progress(`preparing ${total} unsigned inferences and ${N_SIGNED} signed ones`);
  const batchedIds = await makeInferences(N, false);
  const kitIds = await makeInferences(N, false);
  const singleIds = await makeInferences(N_SINGLE, false);
  const directIds = await makeInferences(N_DIRECT, false);
  const baseIds = await makeInferences(N_BASE, false);
  const signedIds = await makeInferences(N_SIGNED, true);
  await db.$executeRawUnsafe(`ANALYZE`);

  const maxBatch = 500;
  /** Transactions written and inferences in them, per run (the group commit's batch sizes). */
  const transactions: Record<string, { count: number; inferences: number }> = {};
  const grouped = (ctx: SettleContext, label: string) => {
    const stats = { count: 0, inferences: 0 };
    transactions[label] = stats;
    // As the settlement worker's (lib/runtime.ts): two writers, gathered per event-loop turn.
    const group = new GroupCommit<string, string, SettleOutcome>({
      keyOf: (id) => id,
      run: async (keys) => {
        stats.count++;
        stats.inferences += keys.length;
        return (await settleBatch(db, keys, ctx)).outcomes;
      },
      maxBatch,
      parallel: 2,
      gatherTurn: true,
    });
    return (ids: string[]) => Promise.all(ids.map((id) => group.submit(id)));
  };
  const noop: Settle = async (ids) => ids.map(() => "noop" as const);
  // Reference points: the queue alone (handler does nothing), per-inference and batch jobs, and
  // the ledger path alone (no queue).
  const queueOnly = await drain("queue-only", baseIds, 1, CONCURRENCY, noop);
  const queueOnlyBatched = await drain("queue-only-batch-jobs", batchedIds, PER_JOB, JOB_CONCURRENCY, noop);
  const direct =
    directIds.length /
    (await measure("ledger-only", directIds.length, () => grouped(baseCtx, "ledger-only")(directIds)))
      .seconds;
  progress(`direct group commit (no queue): ${direct.toFixed(0)} inferences/s`);
  // The same batch path run the way the settlement service runs it: service-kit's Background
  // (typed jobs map, per-queue concurrency from config, job-duration metrics). Each mechanism runs
  // twice, alternating (A B B A), on halves of the id sets, so warm-up favours neither.
  const runRaw = (ids: string[], label: string) =>
    drain(label, ids, PER_JOB, JOB_CONCURRENCY, grouped(baseCtx, "batch-jobs"));
  const runKit = (ids: string[], label: string) =>
    drain(label, ids, PER_JOB, JOB_CONCURRENCY, grouped(baseCtx, "batch-jobs-kit"), "kit");
  const halfOf = (ids: string[], i: number) => ids.slice(i * (ids.length / 2), (i + 1) * (ids.length / 2));
  const raw1 = await runRaw(halfOf(batchedIds, 0), "batch-jobs-1");
  const kit1 = await runKit(halfOf(kitIds, 0), "batch-jobs-kit-1");
  const kit2 = await runKit(halfOf(kitIds, 1), "batch-jobs-kit-2");
  const raw2 = await runRaw(halfOf(batchedIds, 1), "batch-jobs-2");
  const batched = (raw1 + raw2) / 2;
  const batchedKit = (kit1 + kit2) / 2;
  const single = await drain(
    "per-inference-jobs",
    singleIds,
    1,
    CONCURRENCY,
    grouped(baseCtx, "per-inference-jobs"),
  );
  const baseline = await drain("baseline", baseIds, 1, 16, async (ids) => {
    const r = await settleBatch(db, ids, baseCtx);
    return ids.map((id) => r.outcomes.get(id) ?? "missing");
  });
  const signatureDomain = {
    chainId: chain.chainId,
    verifyingContract: addresses.contracts.RewardDistributor,
  };
  // Signature checks two ways on halves of the signed set: recovering each signer's address (the
  // previous path), and the service's path (validators' public keys known after their first one).
  const half = Math.floor(signedIds.length / 2);
  const signedRecover = await drain(
    "batch-jobs+signatures-recover",
    signedIds.slice(0, half),
    PER_JOB,
    JOB_CONCURRENCY,
    grouped({ ...baseCtx, signatureDomain }, "batch-jobs+signatures-recover"),
  );
  const signed = await drain(
    "batch-jobs+signatures",
    signedIds.slice(half),
    PER_JOB,
    JOB_CONCURRENCY,
    grouped({ ...baseCtx, signatureDomain, signatures: new SignatureVerifier() }, "batch-jobs+signatures"),
  );
  await checkLedger();
  const [settledCount] = await db.$queryRawUnsafe<{ n: number }[]>(
    `SELECT count(*)::int AS n FROM settlements`,
  );
  if (settledCount?.n !== total + N_SIGNED)
    throw new Error(`expected ${total + N_SIGNED} settlements, got ${settledCount?.n}`);
  out.inferencesPerSec = Math.round(batched);
  out.kitBackgroundInferencesPerSec = Math.round(batchedKit);
  out.kitVsWorkerSet = Number((batchedKit / batched).toFixed(2));
  out.baselineInferencesPerSec = Math.round(baseline);
  out.speedup = Number((batched / baseline).toFixed(2));
  out.perInferenceJobsInferencesPerSec = Math.round(single);
  out.signatureCheckedInferencesPerSec = Math.round(signed);
  out.signatureRecoveringInferencesPerSec = Math.round(signedRecover);
  out.queueOnlyJobsPerSec = Math.round(queueOnly);
  out.queueOnlyBatchedInferencesPerSec = Math.round(queueOnlyBatched);
  out.ledgerOnlyInferencesPerSec = Math.round(direct);
  out.cpuMsPer1kInferences = cpuMsPer1k;
  out.inferencesPerTransaction = Object.fromEntries(
    Object.entries(transactions).map(([k, v]) => [k, Math.round(v.inferences / Math.max(1, v.count))]),
  );
  out.loadAverage1m = Number(loadavg()[0]?.toFixed(1));
  out.throughputSetup = {
    batchJobInferences: N,
    idsPerBatchJob: PER_JOB,
    batchJobConcurrency: JOB_CONCURRENCY,
    perInferenceJobInferences: N_SINGLE,
    perInferenceJobConcurrency: CONCURRENCY,
    ledgerOnlyInferences: N_DIRECT,
    baselineInferences: N_BASE,
    baselineConcurrency: 16,
    signedInferences: N_SIGNED,
    maxPerTransaction: maxBatch,
    writers: 2,
    resultsPerInference: 2,
    contributorsPerInference: "1-3",
  };

  // ---------------------------------------------------------------- epoch gas
  const a = chain.accounts;
  const opts = { rpcUrl: chain.rpcUrl, chainId: chain.chainId };
  const consumer = createChainClients({ ...opts, privateKey: a.users[0]!.privateKey });
  // The service's own chain view: the kit's connector in the dev profile (settler #2, validators #5-7).
  const addressesFile = join(tmpdir(), `bench-settlement-${process.pid}.json`);
  await writeAddresses(addressesFile, addresses);
  const connector = new ChainConnector({
    rpcUrl: chain.rpcUrl,
    addressesFile,
    profile: "dev",
    signers: { settler: { key: undefined, variable: "SETTLEMENT_SETTLER_PRIVATE_KEY" } },
    validators: { key: undefined, variable: "SETTLEMENT_ATTESTER_PRIVATE_KEYS" },
  });
  const settlementChain: SettlementChain = settlementChainOf(
    await connector.get(),
    parseConfig("bench", settlementEnv, {}),
  );
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
    // The validator processes' part (recount, then sign EpochRoot), stood in for here: these trees are
    // synthetic (sized for the gas figure), so a recount from the ledger would rightly refuse them.
    for (const v of chain.accounts.validators) {
      const signature = await signEpochRoot(
        privateKeyToAccount(v.privateKey),
        chain.chainId,
        settlementChain.distributor,
        { epoch: BigInt(epochNo), root: tree.root, cumulativeTotal: total },
      );
      await db.$executeRawUnsafe(
        `INSERT INTO epoch_attestations (epoch_id, validator_address, signature) VALUES ($1, $2, $3)`,
        epochNo,
        v.address.toLowerCase(),
        signature,
      );
    }
    const row = await readEpoch(db, epochNo);
    if (!row || !(await manager.attest(row))) throw new Error("attestation failed");
    const posted = await executeIntent(db, settlementChain, await manager.postSpec(row));
    const receipt = await settlementChain.publicClient.getTransactionReceipt({ hash: posted.txHash as Hex });
    if (epochNo > 1) epochPostGas[String(size)] = Number(receipt.gasUsed);
    previousTotal = total;
  }
  out.epochPostGas = epochPostGas;
  out.treeBuildMs = treeBuildMs;

  if (json) process.stdout.write(`${JSON.stringify(out)}\n`);
  else {
    console.log("\nSettlement throughput (queue -> ledger, Postgres + Redis on this machine)");
    console.log(
      `  ${"path".padEnd(64)} ${"inf/s".padStart(7)}  ${"node ms/1k".padStart(10)}  ${"pg ms/1k".padStart(8)}`,
    );
    const row = (label: string, value: unknown, cpuKey?: string) => {
      const c = cpuKey ? cpuMsPer1k[cpuKey] : undefined;
      console.log(
        `  ${label.padEnd(64)} ${String(value).padStart(7)}  ${String(c?.node ?? "").padStart(10)}  ${String(c?.postgres ?? "").padStart(8)}`,
      );
    };
    row(
      `batch jobs (${PER_JOB} ids/job, ${JOB_CONCURRENCY} at once) + group commit`,
      out.inferencesPerSec,
      "batch-jobs",
    );
    row(
      `one job per inference (${CONCURRENCY} at once) + group commit`,
      out.perInferenceJobsInferencesPerSec,
      "per-inference-jobs",
    );
    row(
      "baseline: one job and one transaction per inference (16 at once)",
      out.baselineInferencesPerSec,
      "baseline",
    );
    row("speed-up (batch jobs vs baseline)", `x${out.speedup}`);
    row(
      "batch jobs + EIP-712 checks, validators' keys known (service)",
      out.signatureCheckedInferencesPerSec,
      "batch-jobs+signatures",
    );
    row(
      "batch jobs + EIP-712 checks, recovering each signer",
      out.signatureRecoveringInferencesPerSec,
      "batch-jobs+signatures-recover",
    );
    row("reference: queue alone, one job per inference (no-op)", out.queueOnlyJobsPerSec, "queue-only");
    row(
      "reference: queue alone, batch jobs (no-op)",
      out.queueOnlyBatchedInferencesPerSec,
      "queue-only-batch-jobs",
    );
    row(
      "reference: ledger path alone (group commit, no queue)",
      out.ledgerOnlyInferencesPerSec,
      "ledger-only",
    );
    console.log(`  load average (1 min) ${out.loadAverage1m}`);
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
  await db.$disconnect();
  await database.drop();
  await deletePrefix(prefix);
}
