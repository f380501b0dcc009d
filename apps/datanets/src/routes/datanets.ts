import { randomUUID } from "node:crypto";
import type { DatanetsConfig } from "@openledger/config";
import { type Datanet, Prisma } from "@openledger/db";
import { AppError } from "@openledger/errors";
import { safeText } from "@openledger/service-kit";
import type { FastifyPluginAsync } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import type { Address } from "viem";
import { z } from "zod";
import { requireAuth } from "../auth.ts";
import type { DatanetsContext } from "../context.ts";
import { driveIntent, intentKey, intentView, newIntent } from "../intents.ts";
import { DatanetView, ErrorBody, IdParams, Page, PageQuery, Wei } from "../schemas.ts";

const Slug = z
  .string()
  .regex(
    /^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$/,
    "lower-case letters, digits and inner dashes, 1-64 characters",
  )
  .describe("URL-safe unique name");
const Tags = z
  .array(safeText().trim().toLowerCase().min(1).max(40))
  .max(20)
  .transform((t) => [...new Set(t)])
  .describe("Up to 20 tags (stored lower case, deduplicated)");

const DatanetFields = {
  name: safeText().trim().min(1).max(200).describe("Display name"),
  description: safeText().max(10_000).describe("What the data is and what belongs in it"),
  tags: Tags,
  type: safeText().trim().min(1).max(32).describe("Kind of data, e.g. text, qa, classification"),
  license: safeText().trim().min(1).max(64).describe("SPDX id or license name, e.g. CC-BY-4.0"),
  dailyRowLimitPerContributor: z
    .number()
    .int()
    .min(1)
    .max(10_000_000)
    .describe("Rows one contributor may submit per UTC day"),
  dailyRowLimit: z
    .number()
    .int()
    .min(1)
    .max(100_000_000)
    .describe("Rows all contributors together may submit per UTC day"),
  minStakeWei: Wei.describe(
    "Active contributor stake (Staking, role Contributor, subject = chain datanet id) required to contribute",
  ),
};

const CreateBody = z.object({
  slug: Slug,
  name: DatanetFields.name,
  description: DatanetFields.description.default(""),
  tags: DatanetFields.tags.default([]),
  type: DatanetFields.type,
  license: DatanetFields.license,
  dailyRowLimitPerContributor: DatanetFields.dailyRowLimitPerContributor.default(10_000),
  dailyRowLimit: DatanetFields.dailyRowLimit.default(1_000_000),
  minStakeWei: DatanetFields.minStakeWei.default("0"),
});

const UpdateBody = z
  .object({
    name: DatanetFields.name.optional(),
    description: DatanetFields.description.optional(),
    tags: DatanetFields.tags.optional(),
    type: DatanetFields.type.optional(),
    license: DatanetFields.license.optional(),
    dailyRowLimitPerContributor: DatanetFields.dailyRowLimitPerContributor.optional(),
    dailyRowLimit: DatanetFields.dailyRowLimit.optional(),
    minStakeWei: DatanetFields.minStakeWei.optional(),
  })
  .refine((b) => Object.keys(b).length > 0, "send at least one field");

export async function datanetView(ctx: DatanetsContext, d: Datanet) {
  const intent = await ctx.db.chainIntent.findUnique({ where: { key: intentKey.register(d.id) } });
  return {
    id: d.id,
    slug: d.slug,
    name: d.name,
    description: d.description,
    tags: d.tags,
    type: d.type,
    license: d.license,
    ownerAddress: d.ownerAddress,
    minStakeWei: d.minStakeWei.toFixed(),
    dailyRowLimitPerContributor: d.dailyRowLimitPerContributor,
    dailyRowLimit: d.dailyRowLimit,
    chainDatanetId: d.chainDatanetId?.toFixed() ?? null,
    registration: intentView(intent),
    createdAt: d.createdAt.toISOString(),
    updatedAt: d.updatedAt.toISOString(),
  };
}

export async function loadDatanet(ctx: DatanetsContext, id: string): Promise<Datanet> {
  const d = await ctx.db.datanet.findUnique({ where: { id } });
  if (!d) throw new AppError("NOT_FOUND", `datanet ${id} not found`);
  return d;
}

/** Registers (or resumes registering) a datanet on-chain; failures are left for a retry (the sweeper). */
export async function registerOnChain(
  ctx: DatanetsContext,
  datanetId: string,
  log: { warn(o: object, m: string): void },
) {
  const d = await ctx.db.datanet.findUnique({ where: { id: datanetId }, select: { chainDatanetId: true } });
  if (!d || d.chainDatanetId !== null) return;
  try {
    await driveIntent(ctx, intentKey.register(datanetId));
  } catch (err) {
    log.warn(
      { err: (err as Error).message, datanetId },
      "datanet registration not confirmed yet; will retry",
    );
  }
}

function encodeCursor(d: { createdAt: Date; id: string }) {
  return Buffer.from(`${d.createdAt.toISOString()}|${d.id}`).toString("base64url");
}
function decodeCursor(c: string): { createdAt: Date; id: string } {
  const [at, id] = Buffer.from(c, "base64url").toString().split("|");
  const createdAt = new Date(at ?? "");
  if (!id || Number.isNaN(createdAt.getTime()))
    throw new AppError("BAD_CURSOR", "invalid cursor", { status: 400 });
  return { createdAt, id };
}

export const CreateDatanetRoute = {
  tags: ["datanets"],
  summary: "Create a datanet (signed-in owner)",
  description:
    "Stores the datanet and an on-chain registration intent in one transaction, then registers it in " +
    "DatanetRegistry (createDatanetFor(owner, uri)) with the operator key. `registration.status` is " +
    "`confirmed` when `chainDatanetId` is set; otherwise retry with POST /v1/datanets/{id}/register.",
  body: CreateBody,
  response: { 201: DatanetView, 401: ErrorBody, 409: ErrorBody, 503: ErrorBody },
};

export const RegisterDatanetRoute = {
  tags: ["datanets"],
  summary: "Retry the on-chain registration (owner)",
  description: "Resumes the recorded intent: re-broadcasts the same signed transaction, never a second one.",
  params: IdParams,
  response: { 200: DatanetView, 401: ErrorBody, 403: ErrorBody, 404: ErrorBody },
};

export const ListDatanetsRoute = {
  tags: ["datanets"],
  summary: "List and search datanets",
  description: "Newest first. `q` matches name or slug (case-insensitive substring) or a tag exactly.",
  querystring: PageQuery.extend({
    q: safeText().trim().min(1).max(200).optional().describe("Search text"),
    tag: safeText().trim().toLowerCase().min(1).optional().describe("Only datanets with this tag"),
    owner: z
      .string()
      .regex(/^0x[0-9a-fA-F]{40}$/)
      .optional()
      .describe("Only datanets of this owner"),
  }),
  response: { 200: Page(DatanetView), 400: ErrorBody },
};

export const GetDatanetRoute = {
  tags: ["datanets"],
  summary: "Get a datanet",
  params: IdParams,
  response: { 200: DatanetView, 404: ErrorBody },
};

export const UpdateDatanetRoute = {
  tags: ["datanets"],
  summary: "Update metadata (owner only)",
  description: "403 NOT_DATANET_OWNER for anyone but the owner. The slug and owner never change.",
  params: IdParams,
  body: UpdateBody,
  response: { 200: DatanetView, 401: ErrorBody, 403: ErrorBody, 404: ErrorBody },
};

export const DatanetStatsRoute = {
  tags: ["datanets"],
  summary: "Totals: datanets, contributors, contributions, rows by status, versions, slashing proposals",
  response: {
    200: z.object({
      datanets: z.number().int(),
      contributors: z.number().int().describe("Addresses that submitted at least one contribution"),
      contributions: z.number().int(),
      rowsAccepted: z.number().int(),
      rowsRejected: z.number().int(),
      rowsPending: z.number().int(),
      versions: z.number().int(),
      slashingProposals: z.number().int(),
    }),
  },
};

export const datanetRoutes: FastifyPluginAsync<{ config: DatanetsConfig }> = async (root) => {
  const app = root.withTypeProvider<ZodTypeProvider>();
  const ctx = root.datanets;

  app.post(
    "/v1/datanets",
    {
      schema: CreateDatanetRoute,
    },
    async (request, reply) => {
      const owner = await requireAuth(ctx, root.redis, request);
      const chain = await ctx.chain.require();
      const body = request.body;
      const id = randomUUID();
      const metadataUri = `openledger:datanet:${id}`;
      const intent = await newIntent(chain, {
        kind: "datanet.register",
        datanetId: id,
        owner: owner as Address,
        metadataUri,
      });
      try {
        await ctx.db.$transaction(async (tx) => {
          await tx.contributor.upsert({ where: { address: owner }, create: { address: owner }, update: {} });
          await tx.datanet.create({
            data: {
              id,
              slug: body.slug,
              name: body.name,
              description: body.description,
              tags: body.tags,
              type: body.type,
              license: body.license,
              ownerAddress: owner,
              metadataUri,
              minStakeWei: new Prisma.Decimal(body.minStakeWei),
              dailyRowLimitPerContributor: body.dailyRowLimitPerContributor,
              dailyRowLimit: body.dailyRowLimit,
            },
          });
          await tx.chainIntent.create({ data: intent });
        });
      } catch (err) {
        if (err instanceof Prisma.PrismaClientKnownRequestError && err.code === "P2002") {
          throw new AppError("SLUG_TAKEN", `slug "${body.slug}" is already used by another datanet`, {
            status: 409,
          });
        }
        throw err;
      }
      await registerOnChain(ctx, id, request.log);
      return reply.code(201).send(await datanetView(ctx, await loadDatanet(ctx, id)));
    },
  );

  app.post(
    "/v1/datanets/:id/register",
    {
      schema: RegisterDatanetRoute,
    },
    async (request) => {
      const caller = await requireAuth(ctx, root.redis, request);
      const d = await loadDatanet(ctx, request.params.id);
      if (d.ownerAddress !== caller)
        throw new AppError("NOT_DATANET_OWNER", "only the datanet owner can do this", { status: 403 });
      await registerOnChain(ctx, d.id, request.log);
      return datanetView(ctx, await loadDatanet(ctx, d.id));
    },
  );

  app.get(
    "/v1/datanets",
    {
      schema: ListDatanetsRoute,
    },
    async (request) => {
      const { limit, cursor, q, tag, owner } = request.query;
      const and: Prisma.DatanetWhereInput[] = [];
      if (q) {
        and.push({
          OR: [
            { name: { contains: q, mode: "insensitive" } },
            { slug: { contains: q.toLowerCase() } },
            { tags: { has: q.toLowerCase() } },
          ],
        });
      }
      if (tag) and.push({ tags: { has: tag } });
      if (owner) and.push({ ownerAddress: owner.toLowerCase() });
      if (cursor) {
        const c = decodeCursor(cursor);
        and.push({ OR: [{ createdAt: { lt: c.createdAt } }, { createdAt: c.createdAt, id: { lt: c.id } }] });
      }
      const rows = await ctx.db.datanet.findMany({
        where: { AND: and },
        orderBy: [{ createdAt: "desc" }, { id: "desc" }],
        take: limit + 1,
      });
      const page = rows.slice(0, limit);
      return {
        items: await Promise.all(page.map((d) => datanetView(ctx, d))),
        nextCursor: rows.length > limit ? encodeCursor(page[page.length - 1]!) : null,
      };
    },
  );

  app.get("/v1/stats", { schema: DatanetStatsRoute }, async () => {
    // One statement: the totals are of one snapshot (they add up with each other).
    const [t] = await ctx.db.$queryRaw<Record<string, bigint>[]>`
        SELECT (SELECT count(*) FROM datanets)::bigint AS datanets,
               (SELECT count(DISTINCT contributor_address) FROM contributions)::bigint AS contributors,
               (SELECT count(*) FROM contributions)::bigint AS contributions,
               (SELECT coalesce(sum(accepted_count), 0) FROM contributions)::bigint AS accepted,
               (SELECT coalesce(sum(rejected_count), 0) FROM contributions)::bigint AS rejected,
               (SELECT coalesce(sum(row_count), 0) FROM contributions)::bigint AS submitted,
               (SELECT count(*) FROM datanet_versions)::bigint AS versions,
               (SELECT count(*) FROM slashing_proposals)::bigint AS proposals`;
    const n = (k: string) => Number(t?.[k] ?? 0n);
    return {
      datanets: n("datanets"),
      contributors: n("contributors"),
      contributions: n("contributions"),
      rowsAccepted: n("accepted"),
      rowsRejected: n("rejected"),
      rowsPending: n("submitted") - n("accepted") - n("rejected"),
      versions: n("versions"),
      slashingProposals: n("proposals"),
    };
  });

  app.get(
    "/v1/datanets/:id",
    {
      schema: GetDatanetRoute,
    },
    async (request) => datanetView(ctx, await loadDatanet(ctx, request.params.id)),
  );

  app.patch(
    "/v1/datanets/:id",
    {
      schema: UpdateDatanetRoute,
    },
    async (request) => {
      const caller = await requireAuth(ctx, root.redis, request);
      const d = await loadDatanet(ctx, request.params.id);
      if (d.ownerAddress !== caller)
        throw new AppError("NOT_DATANET_OWNER", "only the datanet owner can update it", { status: 403 });
      const { minStakeWei, ...rest } = request.body;
      const updated = await ctx.db.datanet.update({
        where: { id: d.id },
        data: {
          ...rest,
          ...(minStakeWei !== undefined ? { minStakeWei: new Prisma.Decimal(minStakeWei) } : {}),
        },
      });
      return datanetView(ctx, updated);
    },
  );
};
