import { AppError } from "@openledger/errors";
import { ErrorBody } from "@openledger/service-kit";
import type { FastifyInstance } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { z } from "zod";

const Wei = z.string().describe("wei of OPEN per 1,000 tokens, decimal string");
const CatalogModel = z.object({
  id: z.string(),
  kind: z.enum(["base", "adapter", "small_model"]),
  owner: z.string().describe("The owner's address (lower case)"),
  status: z.enum(["active", "retired"]).describe("retired: no longer served"),
  baseModel: z.string().nullable().describe("The base model an adapter runs on"),
  contentHash: z.string().describe("SHA-256 of the model's files in the content-addressed store"),
  pricePer1kInputWei: Wei,
  pricePer1kOutputWei: Wei,
  chainModelId: z.string().nullable().describe("Id in ModelRegistry once registered"),
  chain: z
    .object({ status: z.string(), txHash: z.string().nullable() })
    .nullable()
    .describe("The on-chain registration intent (null: none was made)"),
  training: z
    .array(
      z.object({
        datanetVersionId: z.string(),
        datanetId: z.string(),
        datanetSlug: z.string(),
        datanetName: z.string(),
        version: z.number().int(),
        merkleRoot: z.string(),
        rowCount: z.number().int(),
      }),
    )
    .describe("The datanet versions it was trained on (its attribution sources)"),
  createdAt: z.string(),
});

const INCLUDE = {
  trainingVersions: {
    include: { datanetVersion: { include: { datanet: { select: { slug: true, name: true } } } } },
    orderBy: { datanetVersionId: "asc" as const },
  },
};

export const CatalogRoute = {
  tags: ["catalog"],
  summary: "Every model (base, adapters, small models): owner, prices, training data, registration",
  description: "Public, no API key. Newest first; `status=all` includes retired models.",
  querystring: z.object({
    status: z.enum(["active", "all"]).default("active"),
    limit: z.coerce.number().int().min(1).max(1000).default(200),
  }),
  response: { 200: z.object({ items: z.array(CatalogModel) }), 400: ErrorBody },
};

export const CatalogModelRoute = {
  tags: ["catalog"],
  summary: "One model, active or retired, with its lineage (base model, training datanet versions)",
  description: "Public, no API key. 404 NOT_FOUND: no such model.",
  params: z.object({ id: z.string().min(1).max(128) }),
  response: { 200: CatalogModel, 400: ErrorBody, 404: ErrorBody },
};

/**
 * The public model catalog: what every model is, whom it belongs to, what it costs, what it was
 * trained on and whether it is registered on chain. No API key: this is what a price list and an
 * explorer show (the caller-scoped /v1/adapters and /v1/small-models stay the owners' views).
 */
export async function catalogRoutes(root: FastifyInstance) {
  const app = root.withTypeProvider<ZodTypeProvider>();

  type Row = NonNullable<Awaited<ReturnType<typeof load>>>;
  const load = (id: string) => root.db.model.findUnique({ where: { id }, include: INCLUDE });
  async function view(rows: Row[]): Promise<z.infer<typeof CatalogModel>[]> {
    const intents = await root.db.chainIntent.findMany({
      where: { key: { in: rows.map((r) => `model.register:${r.contentHash}`) } },
      select: { key: true, status: true, txHash: true },
    });
    const byKey = new Map(intents.map((i) => [i.key, i]));
    return rows.map((r) => {
      const intent = byKey.get(`model.register:${r.contentHash}`);
      return {
        id: r.id,
        kind: r.kind,
        owner: r.ownerAddress,
        status: r.status,
        baseModel: r.baseModel,
        contentHash: r.contentHash,
        pricePer1kInputWei: r.priceInPer1kWei.toFixed(0),
        pricePer1kOutputWei: r.priceOutPer1kWei.toFixed(0),
        chainModelId: r.chainModelId?.toFixed(0) ?? null,
        chain: intent ? { status: intent.status, txHash: intent.txHash } : null,
        training: r.trainingVersions.map((t) => ({
          datanetVersionId: t.datanetVersionId,
          datanetId: t.datanetVersion.datanetId,
          datanetSlug: t.datanetVersion.datanet.slug,
          datanetName: t.datanetVersion.datanet.name,
          version: t.datanetVersion.version,
          merkleRoot: t.datanetVersion.merkleRoot,
          rowCount: t.datanetVersion.rowCount,
        })),
        createdAt: r.createdAt.toISOString(),
      };
    });
  }

  app.get("/v1/catalog", { schema: CatalogRoute }, async (request) => {
    const rows = await root.db.model.findMany({
      where: request.query.status === "all" ? {} : { status: "active" },
      include: INCLUDE,
      orderBy: [{ createdAt: "desc" }, { id: "asc" }],
      take: request.query.limit,
    });
    return { items: await view(rows) };
  });

  app.get("/v1/catalog/:id", { schema: CatalogModelRoute }, async (request) => {
    const row = await load(request.params.id);
    if (!row) throw new AppError("NOT_FOUND", `no model ${request.params.id}`);
    const [out] = await view([row]);
    return out!;
  });
}
