import type { SettlementConfig } from "@openledger/config";
import { AppError } from "@openledger/errors";
import { Address, bearerMatches, ErrorBody, Wei } from "@openledger/service-kit";
import type { FastifyPluginAsync, FastifyRequest } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { z } from "zod";
import { type SettlementChain, settlementChainOf } from "../lib/chain.ts";
import { claimInfo, reconcile } from "../lib/claims.ts";
import {
  type EpochRow,
  LedgerChainMismatchError,
  listEpochs,
  NotRevokedError,
  readEpoch,
} from "../lib/epochs.ts";
import { IntentRejectedError } from "../lib/intents.ts";
import type {} from "../lib/runtime.ts"; // its `declare module "fastify"` (settlement): in every program with this file
import { WRITEOFF_COLUMNS, type WriteoffRow, writeOff } from "../lib/writeoffs.ts";

const EpochOut = z.object({
  id: z.number().int(),
  status: z.string(),
  merkleRoot: z.string().nullable(),
  totalWei: Wei.describe("Fees settled in this epoch"),
  cumulativeTotalWei: Wei.describe("All fees up to and including this epoch (posted with the root)"),
  settlementCount: z.number().int(),
  recipientCount: z.number().int(),
  postTxHash: z.string().nullable(),
  closedAt: z.string().nullable(),
  confirmedAt: z.string().nullable(),
  activatesAt: z.string().nullable().describe("When the root becomes claimable, on the chain's clock"),
  finalAt: z.string().nullable().describe("When settlement saw it active: it can no longer be revoked"),
  revokedAt: z
    .string()
    .nullable()
    .describe("When settlement saw the guardian's EpochRevoked (status revoked)"),
  releasedAt: z.string().nullable().describe("When a revoked epoch's held settlements were released"),
});

function epochOut(e: EpochRow): z.infer<typeof EpochOut> {
  return {
    id: e.id,
    status: e.status,
    merkleRoot: e.merkle_root,
    totalWei: e.total_wei,
    cumulativeTotalWei: e.cumulative_total_wei,
    settlementCount: e.settlement_count,
    recipientCount: e.recipient_count,
    postTxHash: e.post_tx_hash,
    closedAt: e.closed_at?.toISOString() ?? null,
    confirmedAt: e.confirmed_at?.toISOString() ?? null,
    activatesAt: e.activates_at?.toISOString() ?? null,
    finalAt: e.final_at?.toISOString() ?? null,
    revokedAt: e.revoked_at?.toISOString() ?? null,
    releasedAt: e.released_at?.toISOString() ?? null,
  };
}

export const ClaimRoute = {
  tags: ["claims"],
  summary: "What an account can claim from the RewardDistributor, with its merkle proof",
  description:
    "Cumulative earnings of the account in the latest ACTIVE epoch (its activation delay passed on the chain's " +
    "clock and the guardian did not revoke it; a pending or revoked root is never served), what it already " +
    "claimed on chain, the difference (claimable) and the proof; `next` says when the next posted root activates " +
    "and what it will give. The account's own wallet calls " +
    "`RewardDistributor.claim(epoch, account, cumulativeAmount, proof)`; nothing is pushed. 503 when the chain is unreachable.",
  params: z.object({ address: Address }),
  response: {
    200: z.object({
      address: z.string(),
      epoch: z.number().int().nullable(),
      cumulativeAmount: Wei,
      claimed: Wei,
      claimable: Wei,
      active: z.boolean().describe("The epoch's activation delay passed and it is not revoked"),
      proof: z.array(z.string()),
      distributor: z.string(),
      chainId: z.number().int(),
      next: z
        .object({
          epoch: z.number().int(),
          activatesAt: z.string().describe("chain clock"),
          cumulativeAmount: Wei,
        })
        .nullable()
        .describe("The oldest posted root still pending: when it becomes claimable"),
    }),
    400: ErrorBody,
    503: ErrorBody,
  },
};

export const LedgerRoute = {
  tags: ["ledger"],
  summary: "Ledger balances of an address per role (settled, whether or not in an epoch yet)",
  params: z.object({ address: Address }),
  response: {
    200: z.object({
      address: z.string(),
      accounts: z.array(z.object({ account: z.string(), balanceWei: z.string().describe("signed wei") })),
    }),
    400: ErrorBody,
  },
};

export const InferenceSettlementRoute = {
  tags: ["ledger"],
  summary: "The settlement of an inference: fee, split basis points and the balanced journal",
  description: "404 NOT_FOUND when the inference is not settled (yet).",
  params: z.object({ id: z.uuid() }),
  response: {
    200: z.object({
      inferenceId: z.string(),
      feeWei: Wei,
      splitBps: z.record(z.string(), z.unknown()),
      epochId: z.number().int().nullable(),
      heldByEpochId: z
        .number()
        .int()
        .nullable()
        .describe("A revoked epoch this settlement was in: held out of later epochs until released"),
      entries: z.array(z.object({ account: z.string(), amountWei: z.string() })),
    }),
    400: ErrorBody,
    404: ErrorBody,
  },
};

export const ListEpochsRoute = {
  tags: ["epochs"],
  summary: "Recent epochs, newest first",
  response: { 200: z.object({ epochs: z.array(EpochOut) }) },
};

export const GetEpochRoute = {
  tags: ["epochs"],
  summary: "One epoch",
  params: z.object({ id: z.coerce.number().int().min(1) }),
  response: { 200: EpochOut, 400: ErrorBody, 404: ErrorBody },
};

export const CloseEpochRoute = {
  tags: ["epochs"],
  summary: "Close the current epoch now and drive it on chain (admin)",
  description:
    "Finishes an epoch in flight first, else charges the waiting fees in the escrow (re-reading the balances " +
    "of consumers whose fees were carried over) and closes a new epoch over what was charged, when that is non-zero. " +
    "Bearer SETTLEMENT_ADMIN_TOKEN. 409 CONFLICT when the chain rejects a write (the intent stays and is retried). " +
    "Bounded: 503 CHAIN_UNAVAILABLE at once when the chain does not answer a probe (CHAIN_REQUEST_TIMEOUT_MS); " +
    "202 with `running: true` (and the latest epoch) when the epoch is not done within SETTLEMENT_EPOCH_CLOSE_WAIT_MS: " +
    "it goes on in the background (poll GET /v1/epochs/{id}).",
  response: {
    200: z.object({ epoch: EpochOut.nullable() }),
    202: z.object({ epoch: EpochOut.nullable(), running: z.literal(true) }),
    401: ErrorBody,
    403: ErrorBody,
    409: ErrorBody,
    503: ErrorBody,
  },
};

export const ReconciliationRoute = {
  tags: ["epochs"],
  summary: "Compare the ledger with on-chain state (distributor roots and balance, escrow charges and draws)",
  response: {
    200: z.object({
      ok: z.boolean(),
      checkedAt: z.string(),
      latestConfirmedEpoch: z.number().int().nullable(),
      checks: z.array(
        z.object({
          name: z.string(),
          ledger: z.string(),
          chain: z.string(),
          ok: z.boolean(),
          note: z.string().optional(),
        }),
      ),
    }),
    503: ErrorBody,
  },
};

export const settlementRoutes: FastifyPluginAsync<{ config: SettlementConfig }> = async (
  root,
  { config },
) => {
  const app = root.withTypeProvider<ZodTypeProvider>();
  const rt = root.settlement;

  /** The chain for a request: connecting and every read bounded (CHAIN_REQUEST_TIMEOUT_MS), else 503. */
  async function chainOr503(): Promise<SettlementChain> {
    return settlementChainOf(await root.chain.require(), config);
  }

  function requireAdmin(req: FastifyRequest): void {
    if (!config.SETTLEMENT_ADMIN_TOKEN)
      throw new AppError("FORBIDDEN", "admin routes are disabled (SETTLEMENT_ADMIN_TOKEN unset)");
    if (!bearerMatches(req.headers.authorization, config.SETTLEMENT_ADMIN_TOKEN)) {
      throw new AppError("UNAUTHORIZED", "missing or wrong admin bearer token");
    }
  }

  app.get(
    "/v1/accounts/:address/claim",
    {
      schema: ClaimRoute,
    },
    async (req) => claimInfo(await chainOr503(), rt.epochs, req.params.address),
  );

  app.get(
    "/v1/accounts/:address/ledger",
    {
      schema: LedgerRoute,
    },
    async (req) => {
      const rows = await root.db.$queryRawUnsafe<{ account: string; balance: string }[]>(
        `SELECT account, sum(amount_wei)::text AS balance FROM ledger_entries
          WHERE account IN ('consumer:' || $1, 'treasury:' || $1, 'validator:' || $1, 'model_owner:' || $1, 'contributor:' || $1)
          GROUP BY account ORDER BY account`,
        req.params.address,
      );
      return {
        address: req.params.address,
        accounts: rows.map((r) => ({ account: r.account, balanceWei: r.balance })),
      };
    },
  );

  const Deferral = z.object({
    consumer: z.string(),
    deferredWei: Wei.describe("Settled fees carried over: not charged, in no epoch yet"),
    settlementCount: z.number().int(),
    balanceWei: Wei.describe("The consumer's escrow balance at the last check"),
    since: z.string(),
    checkedAt: z.string(),
  });
  type DeferralRow = {
    consumer: string;
    deferred_wei: string;
    settlement_count: number;
    balance_wei: string;
    since: Date;
    checked_at: Date;
  };
  const DEFERRAL_COLUMNS = `consumer, deferred_wei::text AS deferred_wei, settlement_count, balance_wei::text AS balance_wei,
    since, checked_at`;
  const deferralOut = (d: DeferralRow): z.infer<typeof Deferral> => ({
    consumer: d.consumer,
    deferredWei: d.deferred_wei,
    settlementCount: d.settlement_count,
    balanceWei: d.balance_wei,
    since: d.since.toISOString(),
    checkedAt: d.checked_at.toISOString(),
  });

  app.get(
    "/v1/deferrals",
    {
      schema: {
        tags: ["ledger"],
        summary: "Consumers whose escrow balance did not cover their settled fees (largest first)",
        description:
          "Their fees are carried over: not charged and in no epoch, so not yet claimable by the recipients. " +
          "They are charged in a later epoch once the balance covers them (re-checked every epoch interval, " +
          "or on POST /v1/epochs/close).",
        querystring: z.object({ limit: z.coerce.number().int().min(1).max(1000).default(100) }),
        response: { 200: z.object({ deferrals: z.array(Deferral) }), 400: ErrorBody },
      },
    },
    async (req) => {
      const rows = await root.db.$queryRawUnsafe<DeferralRow[]>(
        `SELECT ${DEFERRAL_COLUMNS} FROM escrow_deferrals ORDER BY deferred_wei DESC, consumer LIMIT $1`,
        req.query.limit,
      );
      return { deferrals: rows.map(deferralOut) };
    },
  );

  const Writeoff = z.object({
    id: z.string(),
    consumer: z.string(),
    totalWei: Wei,
    settlementCount: z.number().int(),
    reason: z.string(),
    deferredSince: z.string().describe("When the escrow was first found short of these fees"),
    createdAt: z.string(),
  });
  const writeoffOut = (w: WriteoffRow) => ({
    id: w.id,
    consumer: w.consumer,
    totalWei: w.total_wei,
    settlementCount: w.settlement_count,
    reason: w.reason,
    deferredSince: w.deferred_since.toISOString(),
    createdAt: w.created_at.toISOString(),
  });

  app.post(
    "/v1/writeoffs",
    {
      schema: {
        tags: ["ledger"],
        summary: "Write off a consumer's uncollectable fees (admin, explicit, logged)",
        description:
          "The write-off rule: fees the escrow has not covered for at least SETTLEMENT_WRITEOFF_AFTER_MS (the " +
          "consumer is in GET /v1/deferrals since then: it withdrew and left, or the chain its balance was on is " +
          "gone) are never charged nor paid once an operator writes them off with a reason. The ledger reverses " +
          "their fee transactions (`writeoff:<id>`), the gateway stops counting them as owed, the write-off is " +
          "listed in GET /v1/writeoffs and logged. Nothing is ever written off automatically. " +
          "Bearer SETTLEMENT_ADMIN_TOKEN. 409 NOT_DEFERRED when the fees may still be collected.",
        body: z.object({
          consumer: Address,
          reason: z.string().trim().min(3).max(500).describe("Why these fees can never be collected"),
        }),
        response: { 201: Writeoff, 400: ErrorBody, 401: ErrorBody, 403: ErrorBody, 409: ErrorBody },
      },
    },
    async (req, reply) => {
      requireAdmin(req);
      const w = await writeOff(root.db, {
        consumer: req.body.consumer,
        reason: req.body.reason,
        afterMs: config.SETTLEMENT_WRITEOFF_AFTER_MS,
      });
      req.log.warn(
        {
          writeoff: w.id,
          consumer: w.consumer,
          totalWei: w.total_wei,
          settlements: w.settlement_count,
          reason: w.reason,
        },
        "uncollectable fees written off by an operator (ledger writeoff:<id>)",
      );
      return reply.status(201).send(writeoffOut(w));
    },
  );

  app.get(
    "/v1/writeoffs",
    {
      schema: {
        tags: ["ledger"],
        summary: "Write-offs of uncollectable fees, newest first",
        querystring: z.object({ limit: z.coerce.number().int().min(1).max(1000).default(100) }),
        response: { 200: z.object({ writeoffs: z.array(Writeoff) }), 400: ErrorBody },
      },
    },
    async (req) => {
      const rows = await root.db.$queryRawUnsafe<WriteoffRow[]>(
        `SELECT ${WRITEOFF_COLUMNS} FROM fee_writeoffs ORDER BY created_at DESC, id LIMIT $1`,
        req.query.limit,
      );
      return { writeoffs: rows.map(writeoffOut) };
    },
  );

  app.get(
    "/v1/accounts/:address/billing",
    {
      schema: {
        tags: ["ledger"],
        summary: "A consumer's settled fees: charged in the escrow, or waiting (and why)",
        params: z.object({ address: Address }),
        response: {
          200: z.object({
            address: z.string(),
            chargedWei: Wei.describe("Settled fees the escrow took"),
            unchargedWei: Wei.describe(
              "Settled fees not charged yet (waiting for the next epoch, or carried over)",
            ),
            unchargedSettlements: z.number().int(),
            deferral: Deferral.nullable().describe("Set when the balance fell short at the last charge"),
          }),
          400: ErrorBody,
        },
      },
    },
    async (req) => {
      const [sums] = await root.db.$queryRawUnsafe<{ charged: string; uncharged: string; n: number }[]>(
        `SELECT COALESCE(sum(s.fee_wei) FILTER (WHERE c.status = 'applied' OR (s.charge_id IS NULL AND s.epoch_id IS NOT NULL)), 0)::text AS charged,
                COALESCE(sum(s.fee_wei) FILTER (WHERE s.epoch_id IS NULL AND c.status IS DISTINCT FROM 'applied' AND s.writeoff_id IS NULL), 0)::text AS uncharged,
                (count(*) FILTER (WHERE s.epoch_id IS NULL AND c.status IS DISTINCT FROM 'applied' AND s.writeoff_id IS NULL))::int AS n
           FROM settlements s JOIN inferences i ON i.id = s.inference_id
           LEFT JOIN escrow_charges c ON c.id = s.charge_id
          WHERE i.account_address = $1 AND s.fee_wei > 0`,
        req.params.address,
      );
      const [deferral] = await root.db.$queryRawUnsafe<DeferralRow[]>(
        `SELECT ${DEFERRAL_COLUMNS} FROM escrow_deferrals WHERE consumer = $1`,
        req.params.address,
      );
      return {
        address: req.params.address,
        chargedWei: sums?.charged ?? "0",
        unchargedWei: sums?.uncharged ?? "0",
        unchargedSettlements: sums?.n ?? 0,
        deferral: deferral ? deferralOut(deferral) : null,
      };
    },
  );

  app.get(
    "/v1/inferences/:id/settlement",
    {
      schema: InferenceSettlementRoute,
    },
    async (req) => {
      const s = await root.db.settlement.findUnique({
        where: { inferenceId: req.params.id },
        include: { transaction: { include: { entries: { orderBy: { id: "asc" } } } } },
      });
      if (!s) throw new AppError("NOT_FOUND", `inference ${req.params.id} is not settled`);
      return {
        inferenceId: s.inferenceId,
        feeWei: s.feeWei.toFixed(),
        splitBps: s.splitBps as Record<string, unknown>,
        epochId: s.epochId,
        heldByEpochId: s.heldByEpochId,
        entries: s.transaction.entries.map((e) => ({ account: e.account, amountWei: e.amountWei.toFixed() })),
      };
    },
  );

  app.get(
    "/v1/epochs",
    {
      schema: ListEpochsRoute,
    },
    async () => ({ epochs: (await listEpochs(root.db)).map(epochOut) }),
  );

  app.get(
    "/v1/epochs/:id",
    {
      schema: GetEpochRoute,
    },
    async (req) => {
      const e = await readEpoch(root.db, req.params.id);
      if (!e) throw new AppError("NOT_FOUND", `no epoch ${req.params.id}`);
      return epochOut(e);
    },
  );

  app.post(
    "/v1/epochs/close",
    {
      schema: CloseEpochRoute,
    },
    async (req, reply) => {
      requireAdmin(req);
      // A chain that does not answer: 503 now, not after the epoch's RPCs time out one by one.
      await root.chain.probe();
      await chainOr503();
      try {
        const run = rt.epochs.tick({ force: true });
        const finished = await Promise.race([
          run.then((e) => ({ e })),
          new Promise<undefined>((r) =>
            setTimeout(() => r(undefined), config.SETTLEMENT_EPOCH_CLOSE_WAIT_MS).unref(),
          ),
        ]);
        if (!finished) {
          run.catch((err) => req.log.warn({ err }, "epoch close (answered 202) failed; the ticker retries"));
          const latest = (await listEpochs(root.db, 1))[0];
          return reply.status(202).send({ epoch: latest ? epochOut(latest) : null, running: true as const });
        }
        // Nothing new to close (or another replica just finished it): answer the latest epoch.
        const e = finished.e ?? (await listEpochs(root.db, 1))[0];
        return { epoch: e ? epochOut(e) : null };
      } catch (err) {
        if (err instanceof IntentRejectedError) throw new AppError("CONFLICT", err.message);
        if (err instanceof LedgerChainMismatchError)
          throw new AppError("LEDGER_CHAIN_MISMATCH", err.message, { status: 409 });
        throw err;
      }
    },
  );

  app.post(
    "/v1/epochs/:id/release",
    {
      schema: {
        tags: ["epochs"],
        summary: "Release a revoked epoch's held settlements into the next epoch (admin)",
        description:
          "When the guardian revokes a root, its settlements are held out of later epochs and the ledger moves their " +
          "credits to `held:epoch:<id>` (transaction `epoch_revoked:<id>`). Once the cause is understood and the " +
          "settlements are right, this puts them back into the next epoch (ledger `epoch_released:<id>`). " +
          "Idempotent. Bearer SETTLEMENT_ADMIN_TOKEN. 409 NOT_REVOKED for an epoch that is not revoked.",
        params: z.object({ id: z.coerce.number().int().min(1) }),
        response: {
          200: z.object({ epoch: EpochOut, released: z.number().int() }),
          400: ErrorBody,
          401: ErrorBody,
          403: ErrorBody,
          404: ErrorBody,
          409: ErrorBody,
        },
      },
    },
    async (req) => {
      requireAdmin(req);
      const e = await readEpoch(root.db, req.params.id);
      if (!e) throw new AppError("NOT_FOUND", `no epoch ${req.params.id}`);
      try {
        const released = await rt.epochs.release(e.id);
        return { epoch: epochOut((await readEpoch(root.db, e.id)) ?? e), released };
      } catch (err) {
        if (err instanceof NotRevokedError) throw new AppError("NOT_REVOKED", err.message, { status: 409 });
        throw err;
      }
    },
  );

  app.get(
    "/v1/anomalies",
    {
      schema: {
        tags: ["ledger"],
        summary: "Inferences whose quorum-signed attribution result could not be paid (nobody was paid)",
        description:
          "Settlement pays exactly the weights inside the canonical result the validator quorum signed. When the " +
          "weights stored beside it (the attribution service's cache) differ from the signed bytes " +
          "(`weights_cache_mismatch`), or the signed bytes are not a payable result (`unpayable_signed_result`), or a " +
          "fine-tuning job's recorded shares do not check out against its datanet versions (`training_shares_mismatch`), the " +
          "inference is held and listed here; the sweeper re-checks it and `resolvedAt` is set once it settles. " +
          "`all=true` includes resolved ones.",
        querystring: z.object({
          all: z
            .enum(["true", "false"])
            .default("false")
            .transform((v) => v === "true"),
          limit: z.coerce.number().int().min(1).max(1000).default(100),
        }),
        response: {
          200: z.object({
            anomalies: z.array(
              z.object({
                inferenceId: z.string(),
                kind: z.string(),
                detail: z.record(z.string(), z.unknown()),
                firstSeenAt: z.string(),
                lastSeenAt: z.string(),
                resolvedAt: z.string().nullable(),
              }),
            ),
          }),
          400: ErrorBody,
        },
      },
    },
    async (req) => {
      const rows = await root.db.settlementAnomaly.findMany({
        where: req.query.all ? {} : { resolvedAt: null },
        orderBy: { firstSeenAt: "desc" },
        take: req.query.limit,
      });
      return {
        anomalies: rows.map((a) => ({
          inferenceId: a.inferenceId,
          kind: a.kind,
          detail: a.detail as Record<string, unknown>,
          firstSeenAt: a.firstSeenAt.toISOString(),
          lastSeenAt: a.lastSeenAt.toISOString(),
          resolvedAt: a.resolvedAt?.toISOString() ?? null,
        })),
      };
    },
  );

  app.get(
    "/v1/reconciliation",
    {
      schema: ReconciliationRoute,
    },
    async () => reconcile(root.db, await chainOr503()),
  );
};
