import { rewardDistributorAbi } from "@openledger/chain";
import type { SettlementConfig } from "@openledger/config";
import { AppError } from "@openledger/errors";
import { Address, ErrorBody, Wei } from "@openledger/service-kit";
import type { FastifyPluginAsync } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import type { Address as ChainAddress } from "viem";
import { z } from "zod";
import { readEpoch } from "../lib/epochs.ts";
import type {} from "../lib/runtime.ts"; // its `declare module "fastify"` (settlement): in every program with this file

// Public reads of the ledger for people (the explorer): totals, recent settlements, where an epoch's
// fees went, what an account earned and from what, a model's usage, a datanet's earners. Every amount
// is summed by Postgres over the settlement journals (numeric, exact) and sent as a decimal string.

const ROLES = ["treasury", "validator", "model_owner", "contributor"] as const;
const Role = z
  .enum(ROLES)
  .describe("The ledger account's role: treasury, validator, model_owner, contributor");
const RoleTotals = z.object({ treasury: Wei, validator: Wei, model_owner: Wei, contributor: Wei });
type RoleTotals = z.infer<typeof RoleTotals>;

/** Largest number of recipients whose on-chain `claimed` one request reads. */
const MAX_CLAIM_READS = 500;

function roleTotals(rows: { role: string; amount: string }[]): RoleTotals {
  const out: RoleTotals = { treasury: "0", validator: "0", model_owner: "0", contributor: "0" };
  for (const r of rows)
    if ((ROLES as readonly string[]).includes(r.role)) out[r.role as keyof RoleTotals] = r.amount;
  return out;
}

export const LedgerStatsRoute = {
  tags: ["ledger"],
  summary: "Totals: settled inferences and their fees, epochs, accounts paid",
  response: {
    200: z.object({
      settlements: z.number().int().describe("Settled inferences"),
      feesWei: Wei.describe("Their fees"),
      epochs: z.number().int().describe("Epochs closed (any status but open)"),
      confirmedEpochs: z.number().int().describe("Epochs whose root is confirmed on chain"),
      accounts: z.number().int().describe("Addresses credited by a settlement (any role)"),
    }),
  },
};

export const ListSettlementsRoute = {
  tags: ["ledger"],
  summary: "Recent settlements, newest first (inference, model, consumer, fee, epoch)",
  querystring: z.object({
    limit: z.coerce.number().int().min(1).max(200).default(20),
    modelId: z.string().min(1).max(128).optional().describe("Only this model's inferences"),
  }),
  response: {
    200: z.object({
      items: z.array(
        z.object({
          inferenceId: z.string(),
          modelId: z.string(),
          consumer: z.string(),
          feeWei: Wei,
          epochId: z.number().int().nullable(),
          createdAt: z.string(),
        }),
      ),
    }),
    400: ErrorBody,
  },
};

export const EpochFlowsRoute = {
  tags: ["epochs"],
  summary: "Where an epoch's fees went: totals per role, and per recipient with its claims",
  description:
    "From the journals of the settlements in the epoch: the fees, what each role was credited (treasury, " +
    "validators, model owners, contributors; they sum to the fees exactly), and each recipient's credits by " +
    `role, its cumulative amount in the epoch's root, what it has claimed on chain so far and what is left to ` +
    `claim of this root (claims read on chain for the first ${MAX_CLAIM_READS} recipients; null when the ` +
    "chain is unreachable). 404 NOT_FOUND: no such epoch.",
  params: z.object({ id: z.coerce.number().int().min(1) }),
  response: {
    200: z.object({
      epochId: z.number().int(),
      feesWei: Wei,
      settlementCount: z.number().int(),
      roles: RoleTotals,
      recipients: z.array(
        z.object({
          address: z.string(),
          roles: z
            .partialRecord(Role, Wei)
            .describe("Credits in this epoch by role (only roles it was paid in)"),
          earnedWei: Wei.describe("Credits in this epoch, all roles"),
          cumulativeWei: Wei.nullable().describe("Its leaf in the epoch's root (null: not in the tree)"),
          claimedWei: Wei.nullable().describe("Claimed on chain so far, all epochs"),
          pendingWei: Wei.nullable().describe("Left to claim of this root: cumulative - claimed, at least 0"),
        }),
      ),
    }),
    400: ErrorBody,
    404: ErrorBody,
  },
};

export const EarningsRoute = {
  tags: ["ledger"],
  summary: "What an address earned, by role and by model (its sources), from the settlement journals",
  description:
    "Credits of settled inferences to the address as treasury, validator, model owner or contributor, " +
    "grouped by role and by the inference's model. Settled earnings, whether or not an epoch holds them yet; " +
    "what can be claimed now is GET /v1/accounts/{address}/claim.",
  params: z.object({ address: Address }),
  response: {
    200: z.object({
      address: z.string(),
      totalWei: Wei,
      byRole: z.array(z.object({ role: Role, amountWei: Wei, inferences: z.number().int() })),
      bySource: z.array(
        z.object({ role: Role, modelId: z.string(), amountWei: Wei, inferences: z.number().int() }),
      ),
    }),
    400: ErrorBody,
  },
};

export const ModelUsageRoute = {
  tags: ["ledger"],
  summary: "A model's settled usage: inferences, tokens, fees and where they went by role",
  description: "404 NOT_FOUND: no such model.",
  params: z.object({ id: z.string().min(1).max(128) }),
  response: {
    200: z.object({
      modelId: z.string(),
      inferences: z.number().int(),
      inputTokens: z.number().int(),
      outputTokens: z.number().int(),
      feesWei: Wei,
      roles: RoleTotals,
      lastAt: z.string().nullable().describe("When its latest inference was settled"),
    }),
    400: ErrorBody,
    404: ErrorBody,
  },
};

export const DatanetEarningsRoute = {
  tags: ["ledger"],
  summary: "A datanet's contributors by earnings from the models trained on it",
  description:
    "Contributor credits of settled inferences of every model trained on a version of the datanet, for the " +
    "addresses that contributed to it, largest first. A contributor to several datanets behind one model " +
    "is credited once per inference (the ledger does not split a credit by datanet) and listed in each. " +
    "404 NOT_FOUND: no such datanet.",
  params: z.object({ id: z.uuid() }),
  querystring: z.object({ limit: z.coerce.number().int().min(1).max(500).default(100) }),
  response: {
    200: z.object({
      datanetId: z.string(),
      items: z.array(z.object({ address: z.string(), earnedWei: Wei, inferences: z.number().int() })),
    }),
    400: ErrorBody,
    404: ErrorBody,
  },
};

export const readRoutes: FastifyPluginAsync<{ config: SettlementConfig }> = async (root) => {
  const app = root.withTypeProvider<ZodTypeProvider>();
  const db = root.db;

  app.get("/v1/stats", { schema: LedgerStatsRoute }, async () => {
    const [t] = await db.$queryRawUnsafe<
      { settlements: number; fees: string; epochs: number; confirmed: number; accounts: number }[]
    >(
      `SELECT (SELECT count(*)::int FROM settlements) AS settlements,
                (SELECT COALESCE(sum(fee_wei), 0)::text FROM settlements) AS fees,
                (SELECT count(*)::int FROM epochs WHERE status <> 'open') AS epochs,
                (SELECT count(*)::int FROM epochs WHERE status = 'confirmed') AS confirmed,
                (SELECT count(DISTINCT split_part(e.account, ':', 2))::int
                   FROM ledger_entries e JOIN settlements s ON s.transaction_id = e.transaction_id
                  WHERE e.amount_wei > 0) AS accounts`,
    );
    return {
      settlements: t?.settlements ?? 0,
      feesWei: t?.fees ?? "0",
      epochs: t?.epochs ?? 0,
      confirmedEpochs: t?.confirmed ?? 0,
      accounts: t?.accounts ?? 0,
    };
  });

  app.get("/v1/settlements", { schema: ListSettlementsRoute }, async (req) => {
    const { limit, modelId } = req.query;
    const rows = await db.$queryRawUnsafe<
      {
        inference_id: string;
        model_id: string;
        consumer: string;
        fee: string;
        epoch_id: number | null;
        created_at: Date;
      }[]
    >(
      `SELECT s.inference_id::text, i.model_id, i.account_address AS consumer, s.fee_wei::text AS fee, s.epoch_id,
                s.created_at
           FROM settlements s JOIN inferences i ON i.id = s.inference_id
          WHERE ($2::text IS NULL OR i.model_id = $2)
          ORDER BY s.created_at DESC, s.inference_id DESC
          LIMIT $1`,
      limit,
      modelId ?? null,
    );
    return {
      items: rows.map((r) => ({
        inferenceId: r.inference_id,
        modelId: r.model_id,
        consumer: r.consumer,
        feeWei: r.fee,
        epochId: r.epoch_id,
        createdAt: r.created_at.toISOString(),
      })),
    };
  });

  app.get("/v1/epochs/:id/flows", { schema: EpochFlowsRoute }, async (req) => {
    const epoch = await readEpoch(db, req.params.id);
    if (!epoch) throw new AppError("NOT_FOUND", `no epoch ${req.params.id}`);
    const [fees] = await db.$queryRawUnsafe<{ fees: string; n: number }[]>(
      `SELECT COALESCE(sum(fee_wei), 0)::text AS fees, count(*)::int AS n FROM settlements WHERE epoch_id = $1`,
      epoch.id,
    );
    const credits = await db.$queryRawUnsafe<
      { role: string; address: string; amount: string; cumulative: string | null }[]
    >(
      `SELECT split_part(e.account, ':', 1) AS role, split_part(e.account, ':', 2) AS address,
                sum(e.amount_wei)::text AS amount, b.cumulative_wei::text AS cumulative
           FROM settlements s JOIN ledger_entries e ON e.transaction_id = s.transaction_id
           LEFT JOIN epoch_balances b ON b.epoch_id = s.epoch_id AND b.address = split_part(e.account, ':', 2)
          WHERE s.epoch_id = $1 AND e.amount_wei > 0
          GROUP BY 1, 2, b.cumulative_wei
          ORDER BY 2, 1`,
      epoch.id,
    );
    const totals = new Map<string, bigint>();
    const byAddress = new Map<
      string,
      { roles: Record<string, string>; earned: bigint; cumulative: string | null }
    >();
    for (const c of credits) {
      totals.set(c.role, (totals.get(c.role) ?? 0n) + BigInt(c.amount));
      const r = byAddress.get(c.address) ?? { roles: {}, earned: 0n, cumulative: c.cumulative };
      r.roles[c.role] = c.amount;
      r.earned += BigInt(c.amount);
      byAddress.set(c.address, r);
    }
    const addresses = [...byAddress.keys()].sort((a, b) => {
      const d = byAddress.get(b)!.earned - byAddress.get(a)!.earned;
      return d > 0n ? 1 : d < 0n ? -1 : a < b ? -1 : 1;
    });
    const chain = await root.settlement.chain().catch(() => null);
    const claimed = new Map<string, bigint>();
    if (chain) {
      try {
        await Promise.all(
          addresses.slice(0, MAX_CLAIM_READS).map(async (a) => {
            const v = await chain.publicClient.readContract({
              address: chain.distributor,
              abi: rewardDistributorAbi,
              functionName: "claimed",
              args: [a as ChainAddress],
            });
            claimed.set(a, v);
          }),
        );
      } catch (err) {
        req.log.warn({ err: (err as Error).message }, "claims not read: chain unavailable");
        claimed.clear();
      }
    }
    return {
      epochId: epoch.id,
      feesWei: fees?.fees ?? "0",
      settlementCount: fees?.n ?? 0,
      roles: roleTotals([...totals].map(([role, amount]) => ({ role, amount: amount.toString() }))),
      recipients: addresses.map((address) => {
        const r = byAddress.get(address)!;
        const got = claimed.get(address);
        const cumulative = r.cumulative === null ? null : BigInt(r.cumulative);
        return {
          address,
          roles: r.roles,
          earnedWei: r.earned.toString(),
          cumulativeWei: r.cumulative,
          claimedWei: got === undefined ? null : got.toString(),
          pendingWei:
            got === undefined || cumulative === null
              ? null
              : (cumulative > got ? cumulative - got : 0n).toString(),
        };
      }),
    };
  });

  app.get("/v1/accounts/:address/earnings", { schema: EarningsRoute }, async (req) => {
    const a = req.params.address;
    const rows = await db.$queryRawUnsafe<{ role: string; model_id: string; amount: string; n: number }[]>(
      `SELECT split_part(e.account, ':', 1) AS role, i.model_id, sum(e.amount_wei)::text AS amount,
                count(DISTINCT s.inference_id)::int AS n
           FROM ledger_entries e
           JOIN settlements s ON s.transaction_id = e.transaction_id
           JOIN inferences i ON i.id = s.inference_id
          WHERE e.account IN ('treasury:' || $1, 'validator:' || $1, 'model_owner:' || $1, 'contributor:' || $1)
          GROUP BY 1, 2
          ORDER BY sum(e.amount_wei) DESC, 1, 2`,
      a,
    );
    const byRole = new Map<string, { amount: bigint; n: number }>();
    let total = 0n;
    for (const r of rows) {
      const x = byRole.get(r.role) ?? { amount: 0n, n: 0 };
      x.amount += BigInt(r.amount);
      x.n += r.n;
      byRole.set(r.role, x);
      total += BigInt(r.amount);
    }
    return {
      address: a,
      totalWei: total.toString(),
      byRole: ROLES.filter((r) => byRole.has(r)).map((role) => ({
        role,
        amountWei: byRole.get(role)!.amount.toString(),
        inferences: byRole.get(role)!.n,
      })),
      bySource: rows.map((r) => ({
        role: r.role as (typeof ROLES)[number],
        modelId: r.model_id,
        amountWei: r.amount,
        inferences: r.n,
      })),
    };
  });

  app.get("/v1/models/:id/usage", { schema: ModelUsageRoute }, async (req) => {
    const model = await db.model.findUnique({ where: { id: req.params.id }, select: { id: true } });
    if (!model) throw new AppError("NOT_FOUND", `no model ${req.params.id}`);
    const [u] = await db.$queryRawUnsafe<
      { n: number; input: string; output: string; fees: string; last: Date | null }[]
    >(
      `SELECT count(*)::int AS n, COALESCE(sum(i.input_tokens), 0)::text AS input,
                COALESCE(sum(i.output_tokens), 0)::text AS output, COALESCE(sum(s.fee_wei), 0)::text AS fees,
                max(s.created_at) AS last
           FROM settlements s JOIN inferences i ON i.id = s.inference_id WHERE i.model_id = $1`,
      model.id,
    );
    const roles = await db.$queryRawUnsafe<{ role: string; amount: string }[]>(
      `SELECT split_part(e.account, ':', 1) AS role, sum(e.amount_wei)::text AS amount
           FROM settlements s JOIN inferences i ON i.id = s.inference_id
           JOIN ledger_entries e ON e.transaction_id = s.transaction_id
          WHERE i.model_id = $1 AND e.amount_wei > 0
          GROUP BY 1`,
      model.id,
    );
    return {
      modelId: model.id,
      inferences: u?.n ?? 0,
      inputTokens: Number(u?.input ?? 0),
      outputTokens: Number(u?.output ?? 0),
      feesWei: u?.fees ?? "0",
      roles: roleTotals(roles),
      lastAt: u?.last?.toISOString() ?? null,
    };
  });

  app.get("/v1/datanets/:id/earnings", { schema: DatanetEarningsRoute }, async (req) => {
    const datanet = await db.datanet.findUnique({ where: { id: req.params.id }, select: { id: true } });
    if (!datanet) throw new AppError("NOT_FOUND", `no datanet ${req.params.id}`);
    const rows = await db.$queryRawUnsafe<{ address: string; amount: string; n: number }[]>(
      `SELECT split_part(e.account, ':', 2) AS address, sum(e.amount_wei)::text AS amount,
                count(DISTINCT s.inference_id)::int AS n
           FROM inferences i
           JOIN settlements s ON s.inference_id = i.id
           JOIN ledger_entries e ON e.transaction_id = s.transaction_id AND e.account LIKE 'contributor:%'
          WHERE i.model_id IN (SELECT t.model_id FROM model_training_versions t
                                 JOIN datanet_versions v ON v.id = t.datanet_version_id WHERE v.datanet_id = $1::uuid)
            AND split_part(e.account, ':', 2) IN (SELECT contributor_address FROM contributions WHERE datanet_id = $1::uuid)
          GROUP BY 1
          ORDER BY sum(e.amount_wei) DESC, 1
          LIMIT $2`,
      datanet.id,
      req.query.limit,
    );
    return {
      datanetId: datanet.id,
      items: rows.map((r) => ({ address: r.address, earnedWei: r.amount, inferences: r.n })),
    };
  });
};
