// Every Prisma model must round-trip against the schema that the hand-written SQL
// migrations create: if the SQL and schema.prisma disagree (a column name, a type, an
// enum value, a default), a create or a read here fails.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { Prisma } from "./generated/prisma/client.ts";
import { createTestDatabase, type TestDatabase } from "./testing.ts";
import { toWei, withTransaction } from "./transaction.ts";

let t: TestDatabase;
before(async () => {
  t = await createTestDatabase("schema");
});
after(async () => {
  await t?.drop();
});

const ADDR = "0x1111111111111111111111111111111111111111";
const OWNER = "0x2222222222222222222222222222222222222222";
const ROOT = `0x${"ab".repeat(32)}`;
const HASH64 = "cd".repeat(32);
const SIG = `0x${"ef".repeat(65)}`;
const BIG = 2n ** 255n + 12345n; // beyond 2^64: NUMERIC(78,0) must keep every digit

/** Creates a row with every column set, reads it back and compares field by field. */
async function roundTrip<T extends Record<string, unknown>>(
  name: string,
  create: () => Promise<T>,
  read: (created: T) => Promise<T | null>,
) {
  const created = await create();
  const read1 = await read(created);
  assert.ok(read1, `${name}: row not found after create`);
  assert.deepEqual(normalize(read1), normalize(created), `${name}: read differs from created`);
  covered.add(name);
  return created;
}

function normalize(value: unknown): unknown {
  if (value instanceof Prisma.Decimal) return `dec:${value.toFixed()}`;
  if (value instanceof Date) return value.toISOString();
  if (Array.isArray(value)) return value.map(normalize);
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, normalize(v)]));
  }
  return value;
}

const covered = new Set<string>();

test("every model round-trips, with wei amounts beyond 64 bits intact", async () => {
  const db = t.db;
  await roundTrip(
    "Contributor",
    () => db.contributor.create({ data: { address: ADDR } }),
    (c) => db.contributor.findUnique({ where: { address: c.address } }),
  );
  const datanet = await roundTrip(
    "Datanet",
    () =>
      db.datanet.create({
        data: {
          slug: "legal-qa",
          name: "Legal Q&A",
          description: "Questions and answers about contract law",
          tags: ["legal", "qa"],
          type: "text",
          license: "CC-BY-4.0",
          ownerAddress: OWNER,
          metadataUri: "ipfs://meta",
          minStakeWei: new Prisma.Decimal(BIG.toString()),
          dailyRowLimitPerContributor: 500,
          dailyRowLimit: 50_000,
          chainDatanetId: new Prisma.Decimal("7"),
        },
      }),
    (d) => db.datanet.findUnique({ where: { id: d.id } }),
  );
  assert.equal(toWei(datanet.minStakeWei), BIG);
  const contribution = await roundTrip(
    "Contribution",
    () =>
      db.contribution.create({
        data: {
          datanetId: datanet.id,
          contributorAddress: ADDR,
          source: "file",
          fileName: "rows.jsonl",
          status: "validated",
          rowCount: 2,
          acceptedCount: 1,
          rejectedCount: 1,
          validatedAt: new Date("2026-01-02T03:04:05.678Z"),
        },
      }),
    (c) => db.contribution.findUnique({ where: { id: c.id } }),
  );
  const row = await roundTrip(
    "DatanetRow",
    () =>
      db.datanetRow.create({
        data: {
          datanetId: datanet.id,
          contributionId: contribution.id,
          contributorAddress: ADDR,
          ordinal: 0,
          text: "A contract needs offer, acceptance and consideration — ünïcödé too.",
          label: "contracts",
          normalizedHash: HASH64,
          status: "accepted",
          qualityScore: 87,
        },
      }),
    (r) => db.datanetRow.findUnique({ where: { id: r.id } }),
  );
  await roundTrip(
    "DatanetRow (rejected)",
    () =>
      db.datanetRow.create({
        data: {
          datanetId: datanet.id,
          contributionId: contribution.id,
          contributorAddress: ADDR,
          ordinal: 1,
          text: "duplicate",
          normalizedHash: HASH64,
          status: "rejected",
          rejectReason: "exact_duplicate",
          duplicateOfRowId: row.id,
          qualityScore: 10,
        },
      }),
    (r) => db.datanetRow.findUnique({ where: { id: r.id } }),
  );
  const version = await roundTrip(
    "DatanetVersion",
    () =>
      db.datanetVersion.create({
        data: {
          datanetId: datanet.id,
          version: 1,
          merkleRoot: ROOT,
          rowCount: 1,
          contributorCount: 1,
          status: "registered",
          chainTxHash: ROOT,
        },
      }),
    (v) => db.datanetVersion.findUnique({ where: { id: v.id } }),
  );
  await roundTrip(
    "DatanetVersionRow",
    () => db.datanetVersionRow.create({ data: { versionId: version.id, position: 0, rowId: row.id } }),
    (v) =>
      db.datanetVersionRow.findUnique({
        where: { versionId_position: { versionId: v.versionId, position: 0 } },
      }),
  );
  // Attribution service: the span index / influence model of a version (blob hashes).
  await roundTrip(
    "AttributionIndex",
    () =>
      db.attributionIndex.create({
        data: {
          datanetVersionId: version.id,
          kind: "influence",
          status: "ready",
          blobHash: HASH64,
          onnxBlobHash: HASH64,
          tokenizer: "hashed-ngrams:d512:n2",
          tokenCount: 3_000_000_000n,
          rowCount: 1,
          stats: { classes: 2, iterations: 6 },
          error: null,
          jobId: "attribution.index.x",
        },
      }),
    (a) => db.attributionIndex.findUnique({ where: { id: a.id } }),
  );
  await roundTrip(
    "SlashingProposal",
    () =>
      db.slashingProposal.create({
        data: {
          datanetId: datanet.id,
          contributorAddress: ADDR,
          contributionId: contribution.id,
          reason: "redundant",
          evidence: { rows: [{ id: "2", duplicates: "1", similarity: 0.97 }] },
          evidenceHash: ROOT,
          amountWei: new Prisma.Decimal("1000000000000000000"),
          status: "disputed",
          disputeDeadline: new Date("2026-02-01T00:00:00.000Z"),
          disputeReason: "these are different questions",
          executedTxHash: null,
        },
      }),
    (s) => db.slashingProposal.findUnique({ where: { id: s.id } }),
  );
  // Datanets service (issue 4): dedupe columns on rows and the slashing state history.
  await roundTrip(
    "DatanetRow (datanets service columns)",
    () =>
      db.datanetRow.create({
        data: {
          datanetId: datanet.id,
          contributionId: contribution.id,
          contributorAddress: ADDR,
          ordinal: 7,
          text: "a near duplicate row",
          normalizedHash: HASH64,
          status: "rejected",
          rejectReason: "near_duplicate",
          duplicateOfRowId: row.id,
          similarityPpm: 812_500,
          signature: new Uint8Array([1, 2, 3, 4, 255, 0, 0, 128]),
          metadata: { section: "Guide > Install", source: "csv" },
          qualityScore: 70,
        },
      }),
    (r) => db.datanetRow.findUnique({ where: { id: r.id } }),
  );
  const proposalForEvents = await db.slashingProposal.create({
    data: {
      datanetId: datanet.id,
      contributorAddress: ADDR,
      reason: "redundant",
      evidence: {},
      evidenceHash: ROOT,
      amountWei: new Prisma.Decimal(BIG.toString()),
      disputeDeadline: new Date("2026-02-01T00:00:00.000Z"),
    },
  });
  await roundTrip(
    "SlashingEvent",
    () =>
      db.slashingEvent.create({
        data: {
          proposalId: proposalForEvents.id,
          fromStatus: "proposed",
          toStatus: "executed",
          actor: OWNER,
          note: "dispute window over",
          txHash: ROOT,
        },
      }),
    (e) => db.slashingEvent.findUnique({ where: { id: e.id } }),
  );
  const model = await roundTrip(
    "Model",
    () =>
      db.model.create({
        data: {
          id: "legal-lora-v1",
          kind: "adapter",
          ownerAddress: OWNER,
          baseModel: "tiny-llama-test",
          contentHash: HASH64,
          priceInPer1kWei: new Prisma.Decimal("1000000000000000"),
          priceOutPer1kWei: new Prisma.Decimal(BIG.toString()),
          status: "active",
          chainModelId: new Prisma.Decimal("3"),
          sizeBytes: 7_400_000_000n,
        },
      }),
    (m) => db.model.findUnique({ where: { id: m.id } }),
  );
  await roundTrip(
    "ModelTrainingVersion",
    () => db.modelTrainingVersion.create({ data: { modelId: model.id, datanetVersionId: version.id } }),
    (m) =>
      db.modelTrainingVersion.findUnique({
        where: { modelId_datanetVersionId: { modelId: m.modelId, datanetVersionId: m.datanetVersionId } },
      }),
  );
  const inference = await roundTrip(
    "Inference",
    () =>
      db.inference.create({
        data: {
          modelId: model.id,
          accountAddress: ADDR,
          prompt: "What makes a contract binding?",
          output: "Offer, acceptance and consideration.",
          inputTokens: 12,
          outputTokens: 8,
          status: "completed",
          ttftMs: 35,
          durationMs: 180,
          priceInPer1kWei: new Prisma.Decimal(BIG.toString()),
          priceOutPer1kWei: new Prisma.Decimal((BIG + 7n).toString()),
        },
      }),
    (i) => db.inference.findUnique({ where: { id: i.id } }),
  );
  const commitment = await roundTrip(
    "AttributionCommitment",
    () =>
      db.attributionCommitment.create({
        data: { inferenceId: inference.id, validatorAddress: OWNER, commitment: ROOT, signature: SIG },
      }),
    (c) =>
      db.attributionCommitment.findUnique({
        where: { inferenceId_validatorAddress: { inferenceId: c.inferenceId, validatorAddress: OWNER } },
      }),
  );
  await roundTrip(
    "AttributionDisputeSignature",
    () =>
      db.attributionDisputeSignature.create({
        data: {
          accused: ADDR,
          inferenceId: inference.id,
          signer: OWNER,
          signedResultHash: ROOT,
          quorumResultHash: `0x${HASH64}`,
          signature: SIG,
          filedAt: new Date("2026-12-04T23:30:00.123Z"),
          parkedSet: ROOT,
          refusals: 2,
          retryAt: new Date("2026-12-05T22:00:00.123Z"),
          givenUpAt: new Date("2026-12-05T22:10:00.123Z"),
        },
      }),
    (d) =>
      db.attributionDisputeSignature.findUnique({
        where: {
          accused_inferenceId_signer: { accused: d.accused, inferenceId: d.inferenceId, signer: d.signer },
        },
      }),
  );
  const result = await roundTrip(
    "AttributionResult",
    () =>
      db.attributionResult.create({
        data: {
          inferenceId: inference.id,
          validatorAddress: OWNER,
          method: "span",
          canonicalJson: '{"method":"span","weights":[]}',
          resultHash: ROOT,
          signature: SIG,
          salt: ROOT,
          disputeCheckedAt: new Date("2026-12-04T22:30:00.123Z"),
        },
      }),
    (r) => db.attributionResult.findUnique({ where: { id: r.id } }),
  );
  // The database orders commitments and reveals (one sequence, drawn by a trigger): a number given
  // on insert is replaced, and a commitment cannot be changed or deleted.
  assert.ok(result.revealSeq > commitment.seq, "a reveal is ordered after the commitment inserted before it");
  await assert.rejects(
    db.attributionCommitment.update({
      where: { inferenceId_validatorAddress: { inferenceId: inference.id, validatorAddress: OWNER } },
      data: { commitment: SIG.slice(0, 66) },
    }),
    /immutable/,
  );
  await assert.rejects(
    db.attributionCommitment.delete({
      where: { inferenceId_validatorAddress: { inferenceId: inference.id, validatorAddress: OWNER } },
    }),
    /immutable/,
  );
  await assert.rejects(
    db.attributionResult.update({ where: { id: result.id }, data: { revealSeq: 1n } }),
    /immutable/,
  );
  const early = await db.attributionCommitment.create({
    data: { inferenceId: inference.id, validatorAddress: ADDR, commitment: ROOT, signature: SIG, seq: 1n },
  });
  assert.ok(early.seq > result.revealSeq, "an explicit order number is replaced by the next one");
  await roundTrip(
    "AttributionWeight",
    () =>
      db.attributionWeight.create({
        data: { resultId: result.id, contributorAddress: ADDR, weightPpm: 1_000_000 },
      }),
    (w) =>
      db.attributionWeight.findUnique({
        where: {
          resultId_contributorAddress: { resultId: w.resultId, contributorAddress: w.contributorAddress },
        },
      }),
  );
  const epoch = await roundTrip(
    "Epoch",
    () =>
      db.epoch.create({
        data: {
          id: 1,
          status: "posted",
          closedAt: new Date("2026-03-01T00:00:00.000Z"),
          merkleRoot: ROOT,
          totalWei: new Prisma.Decimal(BIG.toString()),
          postTxHash: ROOT,
        },
      }),
    (e) => db.epoch.findUnique({ where: { id: e.id } }),
  );
  await roundTrip(
    "EpochAttestation",
    () =>
      db.epochAttestation.create({ data: { epochId: epoch.id, validatorAddress: OWNER, signature: SIG } }),
    (a) =>
      db.epochAttestation.findUnique({
        where: { epochId_validatorAddress: { epochId: a.epochId, validatorAddress: a.validatorAddress } },
      }),
  );
  await roundTrip(
    "EpochDisagreement",
    () =>
      db.epochDisagreement.create({
        data: {
          epochId: epoch.id,
          validatorAddress: OWNER,
          closedRoot: ROOT,
          recountedRoot: ROOT,
          closedTotalWei: new Prisma.Decimal(BIG.toString()),
          recountedTotalWei: new Prisma.Decimal((BIG - 1n).toString()),
        },
      }),
    (d) =>
      db.epochDisagreement.findUnique({
        where: { epochId_validatorAddress: { epochId: d.epochId, validatorAddress: d.validatorAddress } },
      }),
  );
  // A balanced journal entry and its settlement, written atomically.
  const { txn, entries } = await withTransaction(db, async (tx) => {
    const txn = await tx.ledgerTransaction.create({
      data: { kind: "inference_fee", externalKey: `fee:${inference.id}`, memo: "fee split" },
    });
    await tx.ledgerEntry.createMany({
      data: [
        {
          transactionId: txn.id,
          account: `consumer:${ADDR}`,
          amountWei: new Prisma.Decimal((-BIG).toString()),
        },
        { transactionId: txn.id, account: "treasury", amountWei: new Prisma.Decimal((BIG - 1n).toString()) },
        { transactionId: txn.id, account: `contributor:${ADDR}`, amountWei: new Prisma.Decimal("1") },
      ],
    });
    const entries = await tx.ledgerEntry.findMany({
      where: { transactionId: txn.id },
      orderBy: { id: "asc" },
    });
    return { txn, entries };
  });
  covered.add("LedgerEntry");
  assert.equal(
    entries.reduce((sum, e) => sum + toWei(e.amountWei), 0n),
    0n,
  );
  assert.equal(toWei(entries[0]!.amountWei), -BIG);
  await roundTrip(
    "LedgerTransaction",
    async () => txn,
    (x) => db.ledgerTransaction.findUnique({ where: { id: x.id } }),
  );
  // Settlement service: an escrow charge batch (the settlement below was charged by it).
  const charge = await roundTrip(
    "EscrowCharge",
    () =>
      db.escrowCharge.create({
        data: {
          id: crypto.randomUUID(),
          batchId: ROOT,
          status: "applied",
          items: [{ consumer: ADDR, amountWei: BIG.toString(), outcome: "charged" }],
          totalWei: new Prisma.Decimal(BIG.toString()),
          chargedWei: new Prisma.Decimal(BIG.toString()),
          txHash: ROOT,
          appliedAt: new Date("2026-03-01T00:00:09.000Z"),
        },
      }),
    (c) => db.escrowCharge.findUnique({ where: { id: c.id } }),
  );
  await roundTrip(
    "EscrowDeferral",
    () =>
      db.escrowDeferral.create({
        data: {
          consumer: OWNER,
          deferredWei: new Prisma.Decimal(BIG.toString()),
          settlementCount: 4,
          balanceWei: new Prisma.Decimal("17"),
          since: new Date("2026-03-01T00:00:00.000Z"),
          checkedAt: new Date("2026-03-01T00:00:05.000Z"),
        },
      }),
    (d) => db.escrowDeferral.findUnique({ where: { consumer: d.consumer } }),
  );
  const writeoff = await roundTrip(
    "FeeWriteoff",
    () =>
      db.feeWriteoff.create({
        data: {
          id: "4f2d3c1b-0a9e-4d8c-b7a6-5f4e3d2c1b0a",
          consumer: OWNER,
          totalWei: new Prisma.Decimal(BIG.toString()),
          settlementCount: 2,
          reason: "consumer withdrew everything and left",
          deferredSince: new Date("2026-03-01T00:00:00.000Z"),
        },
      }),
    (w) => db.feeWriteoff.findUnique({ where: { id: w.id } }),
  );
  await roundTrip(
    "Settlement",
    () =>
      db.settlement.create({
        data: {
          inferenceId: inference.id,
          feeWei: new Prisma.Decimal(BIG.toString()),
          splitBps: { treasury: 1000, validators: 500, modelOwner: 3500, contributors: 5000 },
          epochId: epoch.id,
          heldByEpochId: epoch.id,
          transactionId: txn.id,
          chargeId: charge.id,
          writeoffId: writeoff.id,
        },
      }),
    (s) => db.settlement.findUnique({ where: { inferenceId: s.inferenceId } }),
  );
  await roundTrip(
    "ChainIntent",
    () =>
      db.chainIntent.create({
        data: {
          key: "epoch.post:1",
          kind: "epoch.post",
          payload: { root: ROOT },
          status: "submitted",
          txHash: ROOT,
        },
      }),
    (c) => db.chainIntent.findUnique({ where: { id: c.id } }),
  );
  // Settlement service: epoch totals and the per-account cumulative earnings of an epoch.
  const settledEpoch = await roundTrip(
    "Epoch (settlement columns)",
    () =>
      db.epoch.create({
        data: {
          id: 2,
          status: "confirmed",
          merkleRoot: ROOT,
          totalWei: new Prisma.Decimal(BIG.toString()),
          cumulativeTotalWei: new Prisma.Decimal((BIG + 1n).toString()),
          settlementCount: 12,
          recipientCount: 3,
          activatesAt: new Date("2026-12-02T18:00:00.250Z"),
          finalAt: new Date("2026-12-02T18:00:01.000Z"),
        },
      }),
    (e) => db.epoch.findUnique({ where: { id: e.id } }),
  );
  await roundTrip(
    "Epoch (revoked)",
    () =>
      db.epoch.create({
        data: {
          id: 3,
          status: "revoked",
          merkleRoot: ROOT,
          activatesAt: new Date("2026-12-02T19:00:00.000Z"),
          revokedAt: new Date("2026-12-02T18:30:00.000Z"),
          releasedAt: new Date("2026-12-02T18:45:00.000Z"),
        },
      }),
    (e) => db.epoch.findUnique({ where: { id: e.id } }),
  );
  await roundTrip(
    "SettlementAnomaly",
    () =>
      db.settlementAnomaly.create({
        data: {
          inferenceId: "3b0c8a57-2a4e-4f0e-8d3c-6a1e5b9d7c21",
          kind: "weights_cache_mismatch",
          detail: { signed: [{ address: OWNER, ppm: 1_000_000 }], stored: [] },
          resolvedAt: new Date("2026-12-02T18:50:00.000Z"),
        },
      }),
    (a) => db.settlementAnomaly.findUnique({ where: { inferenceId: a.inferenceId } }),
  );
  await roundTrip(
    "EpochBalance",
    () =>
      db.epochBalance.create({
        data: { epochId: settledEpoch.id, address: OWNER, cumulativeWei: new Prisma.Decimal(BIG.toString()) },
      }),
    (b) =>
      db.epochBalance.findUnique({ where: { epochId_address: { epochId: b.epochId, address: b.address } } }),
  );
  await roundTrip(
    "SettlementPending",
    () =>
      db.settlementPending.create({
        data: {
          inferenceId: inference.id,
          firstSeenAt: new Date("2026-03-01T00:00:00.000Z"),
          checkedAt: new Date("2026-03-01T00:00:05.000Z"),
          checks: 3,
        },
      }),
    (p) => db.settlementPending.findUnique({ where: { inferenceId: p.inferenceId } }),
  );

  // Gateway: API keys (hash only) and the inference.completed outbox.
  await roundTrip(
    "ApiKey",
    () =>
      db.apiKey.create({
        data: { keyHash: "c".repeat(64), prefix: "sk-abcdef", accountAddress: ADDR, name: "ci" },
      }),
    (k) => db.apiKey.findUnique({ where: { id: k.id } }),
  );
  await roundTrip(
    "GatewayOutbox",
    () => db.gatewayOutbox.create({ data: { inferenceId: inference.id, attempts: 1 } }),
    (o) => db.gatewayOutbox.findUnique({ where: { inferenceId: o.inferenceId } }),
  );
  const reservation = await roundTrip(
    "GatewayReservation",
    () =>
      db.gatewayReservation.create({
        data: {
          id: "7f1c2c43-5f0e-4d55-9d1b-0a4b2f3c9e11",
          accountAddress: ADDR,
          maxCostWei: new Prisma.Decimal(BIG.toString()),
          expiresAt: new Date("2026-11-24T05:00:00.123Z"),
          replicaId: "gateway-host-1:/data/gateway",
          bootId: "2b1c2c43-5f0e-4d55-9d1b-0a4b2f3c9e12",
          modelId: model.id,
          prompt: "a prompt",
          inputTokens: 12,
          priceInPer1kWei: new Prisma.Decimal(BIG.toString()),
          priceOutPer1kWei: new Prisma.Decimal("7"),
          output: "delivered so far",
          outputTokens: 3,
          ttftMs: 41,
        },
      }),
    (r) => db.gatewayReservation.findUnique({ where: { id: r.id } }),
  );
  assert.equal(toWei(reservation.maxCostWei), BIG);
  const account = await roundTrip(
    "GatewayAccount",
    () =>
      db.gatewayAccount.create({
        data: {
          accountAddress: ADDR,
          billedWei: new Prisma.Decimal(BIG.toString()),
          clearedWei: new Prisma.Decimal("5"),
          reservedWei: new Prisma.Decimal("6"),
        },
      }),
    (a) => db.gatewayAccount.findUnique({ where: { accountAddress: a.accountAddress } }),
  );
  assert.equal(toWei(account.billedWei), BIG);

  const job = await roundTrip(
    "FineTuningJob",
    () =>
      db.fineTuningJob.create({
        data: {
          id: `ftjob-${"ab".repeat(12)}`,
          accountAddress: ADDR,
          baseModel: "openledger-tiny",
          baseModelHash: HASH64,
          suffix: "sotu",
          status: "running",
          datanetVersionIds: [version.id],
          hyperparameters: { n_epochs: 2, batch_size: 4, learning_rate_multiplier: 1 },
          trainerOptions: { mode: "lora" },
          configHash: HASH64,
          seed: 7,
          metadata: { team: "a" },
          pricePer1kTokensWei: new Prisma.Decimal("1000"),
          maxFeeWei: new Prisma.Decimal(BIG.toString()),
          feeWei: new Prisma.Decimal("12"),
          grantId: "00000000-0000-4000-8000-000000000001",
          grantToken: "gt-secret",
          totalSteps: 20,
          step: 3,
          plannedTokens: 1234n,
          trainedTokens: 99n,
          tokensByContributor: { [ADDR]: "1234" },
          loss: 2.5,
          tokensPerSecond: 321.5,
          estimatedFinish: new Date(),
          fineTunedModel: "ft-model",
          adapterContentHash: HASH64,
          error: { code: "x", message: "y" },
          runs: 2,
          runnerId: "host:1",
          leaseUntil: new Date(),
          registeringAt: new Date(),
          startedAt: new Date(),
          finishedAt: new Date(),
        },
      }),
    (j) => db.fineTuningJob.findUnique({ where: { id: j.id } }),
  );
  await roundTrip(
    "FineTuningEvent",
    () =>
      db.fineTuningEvent.create({
        data: { jobId: job.id, level: "info", type: "metrics", message: "Step 3/20", data: { step: 3 } },
      }),
    (e) => db.fineTuningEvent.findUnique({ where: { id: e.id } }),
  );
  const grant = await roundTrip(
    "TrainingGrant",
    () =>
      db.trainingGrant.create({
        data: {
          id: "00000000-0000-4000-8000-000000000001",
          tokenHash: HASH64,
          accountAddress: ADDR,
          jobRef: job.id,
          datanetVersionIds: [version.id],
          baseModelHash: HASH64,
          pricePer1kTokensWei: new Prisma.Decimal("1000"),
          maxTokens: 5000n,
          maxFeeWei: new Prisma.Decimal(BIG.toString()),
          reservationId: "00000000-0000-4000-8000-000000000002",
          expiresAt: new Date(),
          usedAt: new Date(),
          releasedAt: new Date(),
          modelId: model.id,
          inferenceId: inference.id,
          trainedTokens: 1234n,
          trainingConfigHash: HASH64,
        },
      }),
    (g) => db.trainingGrant.findUnique({ where: { id: g.id } }),
  );
  await roundTrip(
    "TrainingGrantShare",
    () =>
      db.trainingGrantShare.create({ data: { grantId: grant.id, contributorAddress: ADDR, tokens: 1234n } }),
    (s) =>
      db.trainingGrantShare.findUnique({
        where: {
          grantId_contributorAddress: { grantId: s.grantId, contributorAddress: s.contributorAddress },
        },
      }),
  );
  await roundTrip(
    "AdapterInfluence",
    () =>
      db.adapterInfluence.create({
        data: {
          modelId: model.id,
          blobHash: HASH64,
          adapterHash: HASH64,
          baseModelHash: HASH64,
          trainingConfigHash: HASH64,
          rowCount: 32,
          stats: { seq: 128, dim: 3584, bytes: 458_752 },
        },
      }),
    (a) => db.adapterInfluence.findUnique({ where: { modelId: a.modelId } }),
  );

  for (const name of Object.values(Prisma.ModelName)) {
    assert.ok(covered.has(name), `model ${name} has no round-trip check`);
  }
});

test("constraints hold: unique keys and foreign keys are enforced by the migrated schema", async () => {
  const db = t.db;
  await assert.rejects(
    db.ledgerTransaction
      .create({ data: { kind: "x", externalKey: "dup-key" } })
      .then(() => db.ledgerTransaction.create({ data: { kind: "x", externalKey: "dup-key" } })),
    (err: unknown) => err instanceof Prisma.PrismaClientKnownRequestError && err.code === "P2002",
  );
  await assert.rejects(
    db.contribution.create({
      data: { datanetId: "00000000-0000-0000-0000-000000000000", contributorAddress: ADDR, source: "rows" },
    }),
    (err: unknown) => err instanceof Prisma.PrismaClientKnownRequestError && err.code === "P2003",
  );
});
