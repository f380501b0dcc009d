import type { DatanetsConfig } from "@openledger/config";
import { type Prisma, toWei } from "@openledger/db";
import { AppError } from "@openledger/errors";
import type { FastifyPluginAsync } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { z } from "zod";
import { requireAuth } from "../auth.ts";
import type { DatanetsContext } from "../context.ts";
import {
  Address,
  ContributionView,
  ErrorBody,
  IdParams,
  Page,
  PageQuery,
  SlashingProposalView,
  Wei,
} from "../schemas.ts";
import { activeContributorStake } from "../stake.ts";
import { contributionView } from "./contributions.ts";
import { loadDatanet } from "./datanets.ts";
import { proposalView } from "./slashing.ts";

const Summary = z.object({
  address: z.string(),
  contributions: z.number().int(),
  rowsSubmitted: z.number().int(),
  rowsAccepted: z.number().int(),
  rowsRejected: z.number().int(),
  rowsPending: z.number().int(),
  acceptanceRatePpm: z
    .number()
    .int()
    .nullable()
    .describe("accepted / (accepted + rejected) in parts per million; null before any validated row"),
  stakes: z
    .array(
      z.object({
        datanetId: z.string(),
        chainDatanetId: z.string(),
        activeStakeWei: Wei.nullable().describe("Read on-chain now (null when the chain is unreachable)"),
      }),
    )
    .describe("Contributor stake on every datanet the address contributed to"),
  slashes: z.array(SlashingProposalView),
});

const ratePpm = (accepted: number, rejected: number) =>
  accepted + rejected === 0 ? null : Math.floor((accepted * 1_000_000) / (accepted + rejected));

async function summary(ctx: DatanetsContext, address: string) {
  const [agg] = await ctx.db.$queryRaw<
    { contributions: bigint; submitted: bigint; accepted: bigint; rejected: bigint }[]
  >`SELECT count(*)::bigint AS contributions, coalesce(sum(row_count), 0)::bigint AS submitted,
           coalesce(sum(accepted_count), 0)::bigint AS accepted, coalesce(sum(rejected_count), 0)::bigint AS rejected
    FROM contributions WHERE contributor_address = ${address}`;
  const submitted = Number(agg?.submitted ?? 0n);
  const accepted = Number(agg?.accepted ?? 0n);
  const rejected = Number(agg?.rejected ?? 0n);
  const datanets = await ctx.db.datanet.findMany({
    where: { contributions: { some: { contributorAddress: address } }, chainDatanetId: { not: null } },
    orderBy: { createdAt: "asc" },
  });
  // Bounded (CHAIN_REQUEST_TIMEOUT_MS): without an answer the stakes are reported as unknown (null).
  const chain = await ctx.chain.require().catch(() => null);
  const stakes = await Promise.all(
    datanets.map(async (d) => ({
      datanetId: d.id,
      chainDatanetId: d.chainDatanetId!.toFixed(),
      activeStakeWei: chain
        ? await activeContributorStake(chain, address, toWei(d.chainDatanetId!))
            .then((s) => s.toString())
            .catch(() => null)
        : null,
    })),
  );
  const slashes = await ctx.db.slashingProposal.findMany({
    where: { contributorAddress: address },
    orderBy: [{ createdAt: "desc" }, { id: "desc" }],
  });
  return {
    address,
    contributions: Number(agg?.contributions ?? 0n),
    rowsSubmitted: submitted,
    rowsAccepted: accepted,
    rowsRejected: rejected,
    rowsPending: submitted - accepted - rejected,
    acceptanceRatePpm: ratePpm(accepted, rejected),
    stakes,
    slashes: slashes.map(proposalView),
  };
}

export const MeRoute = {
  tags: ["contributors"],
  summary: "My contributor view (signed in)",
  response: { 200: Summary, 401: ErrorBody },
};

export const ContributorRoute = {
  tags: ["contributors"],
  summary: "A contributor's record: counts, acceptance rate, on-chain stakes, slashes",
  params: z.object({ address: Address }),
  response: { 200: Summary, 400: ErrorBody },
};

export const ContributorContributionsRoute = {
  tags: ["contributors"],
  summary: "A contributor's contributions with their status (newest first)",
  params: z.object({ address: Address }),
  querystring: PageQuery.extend({
    datanetId: z.uuid().optional().describe("Only this datanet"),
    status: ContributionView.shape.status.optional(),
  }),
  response: { 200: Page(ContributionView), 400: ErrorBody },
};

export const LeaderboardRoute = {
  tags: ["contributors"],
  summary: "Top contributors of a datanet by accepted rows",
  description: "Ties broken by address (stable order).",
  params: IdParams,
  querystring: z.object({ limit: z.coerce.number().int().min(1).max(500).default(50) }),
  response: {
    200: z.object({
      items: z.array(
        z.object({
          rank: z.number().int(),
          address: z.string(),
          rowsAccepted: z.number().int(),
          rowsSubmitted: z.number().int(),
          acceptanceRatePpm: z.number().int().nullable(),
        }),
      ),
    }),
    404: ErrorBody,
  },
};

export const DatanetContributionsRoute = {
  tags: ["contributions"],
  summary: "A datanet's contributions with their status and row counts (newest first)",
  description: "Per-row outcomes, with the reason of each rejected row: GET /v1/contributions/{id}/rows.",
  params: IdParams,
  querystring: PageQuery.extend({
    status: ContributionView.shape.status.optional(),
    contributor: Address.optional().describe("Only this contributor's"),
  }),
  response: { 200: Page(ContributionView), 400: ErrorBody, 404: ErrorBody },
};

/** One page of contributions (newest first) matching `where`, with an opaque (createdAt, id) cursor. */
async function contributionPage(
  ctx: DatanetsContext,
  where: Prisma.ContributionWhereInput,
  limit: number,
  cursor: string | undefined,
) {
  let before: { createdAt: Date; id: string } | undefined;
  if (cursor) {
    const [at, id] = Buffer.from(cursor, "base64url").toString().split("|");
    if (!id || Number.isNaN(new Date(at ?? "").getTime()))
      throw new AppError("BAD_CURSOR", "invalid cursor", { status: 400 });
    before = { createdAt: new Date(at!), id };
  }
  const rows = await ctx.db.contribution.findMany({
    where: {
      ...where,
      ...(before
        ? {
            OR: [
              { createdAt: { lt: before.createdAt } },
              { createdAt: before.createdAt, id: { lt: before.id } },
            ],
          }
        : {}),
    },
    orderBy: [{ createdAt: "desc" }, { id: "desc" }],
    take: limit + 1,
  });
  const page = rows.slice(0, limit);
  const last = page[page.length - 1];
  return {
    items: page.map(contributionView),
    nextCursor:
      rows.length > limit && last
        ? Buffer.from(`${last.createdAt.toISOString()}|${last.id}`).toString("base64url")
        : null,
  };
}

export const contributorRoutes: FastifyPluginAsync<{ config: DatanetsConfig }> = async (root) => {
  const app = root.withTypeProvider<ZodTypeProvider>();
  const ctx = root.datanets;

  app.get(
    "/v1/me",
    {
      schema: MeRoute,
    },
    async (request) => summary(ctx, await requireAuth(ctx, root.redis, request)),
  );

  app.get(
    "/v1/contributors/:address",
    {
      schema: ContributorRoute,
    },
    async (request) => summary(ctx, request.params.address),
  );

  app.get(
    "/v1/contributors/:address/contributions",
    {
      schema: ContributorContributionsRoute,
    },
    async (request) => {
      const { limit, cursor, datanetId, status } = request.query;
      return contributionPage(
        ctx,
        {
          contributorAddress: request.params.address,
          ...(datanetId ? { datanetId } : {}),
          ...(status ? { status } : {}),
        },
        limit,
        cursor,
      );
    },
  );

  app.get("/v1/datanets/:id/contributions", { schema: DatanetContributionsRoute }, async (request) => {
    const datanet = await loadDatanet(ctx, request.params.id);
    const { limit, cursor, status, contributor } = request.query;
    return contributionPage(
      ctx,
      {
        datanetId: datanet.id,
        ...(contributor ? { contributorAddress: contributor } : {}),
        ...(status ? { status } : {}),
      },
      limit,
      cursor,
    );
  });

  app.get(
    "/v1/datanets/:id/leaderboard",
    {
      schema: LeaderboardRoute,
    },
    async (request) => {
      const datanet = await loadDatanet(ctx, request.params.id);
      const rows = await ctx.db.$queryRaw<
        { address: string; accepted: bigint; rejected: bigint; submitted: bigint }[]
      >`SELECT contributor_address AS address, sum(accepted_count)::bigint AS accepted,
               sum(rejected_count)::bigint AS rejected, sum(row_count)::bigint AS submitted
        FROM contributions WHERE datanet_id = ${datanet.id}::uuid
        GROUP BY contributor_address
        ORDER BY sum(accepted_count) DESC, contributor_address ASC
        LIMIT ${request.query.limit}`;
      return {
        items: rows.map((r, i) => ({
          rank: i + 1,
          address: r.address,
          rowsAccepted: Number(r.accepted),
          rowsSubmitted: Number(r.submitted),
          acceptanceRatePpm: ratePpm(Number(r.accepted), Number(r.rejected)),
        })),
      };
    },
  );
};
