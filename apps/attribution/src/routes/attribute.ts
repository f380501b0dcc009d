import { attributeSpans } from "@openledger/attribution-core";
import { AppError } from "@openledger/errors";
import type { FastifyPluginAsync } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { z } from "zod";
import { ArtifactMismatchError } from "../lib/indexing.ts";
import { loadSpanShards, ScoringError, spanParams } from "../lib/scoring.ts";
import { ContributorWeight, ErrorBody, type GuardedRouteOptions, Uuid } from "./schemas.ts";

const EXCERPT_CHARS = 300;

export const attributeRoutes: FastifyPluginAsync<GuardedRouteOptions> = async (root, { requireCaller }) => {
  const app = root.withTypeProvider<ZodTypeProvider>();
  const ctx = root.attribution;

  app.post(
    "/v1/attribute",
    {
      preHandler: requireCaller,
      schema: {
        security: [{ bearer: [] }],
        tags: ["attribution"],
        summary: "Attribute a text against a datanet version (for humans)",
        description:
          "Tokenizes the text with the served model's tokenizer, finds its maximal spans that occur verbatim in " +
          "the version's rows (at least minSpanTokens long, at most maxSpanCount occurrences), and returns the " +
          "spans with the rows (documents) and contributors containing them, row scores and contributor weights " +
          "in ppm. Nothing is signed or stored. Needs a key (it costs CPU): an account's gateway API key or the " +
          "service token. 401 MISSING_API_KEY / INVALID_API_KEY; 404 NOT_FOUND: no such version; 409 CONFLICT: its index is not " +
          "built yet (POST /v1/indexes).",
        body: z.object({
          text: z.string().min(1).max(200_000).describe("The text to attribute, e.g. a model output"),
          datanetVersionId: Uuid.describe("Datanet version whose index is searched"),
          options: z
            .object({
              minSpanTokens: z
                .number()
                .int()
                .min(1)
                .max(4096)
                .optional()
                .describe("Minimum span length in tokens"),
              maxSpanCount: z
                .number()
                .int()
                .min(1)
                .max(1_000_000)
                .optional()
                .describe("Spans occurring more often than this are not evidence"),
              weighting: z
                .enum(["length", "rarity"])
                .optional()
                .describe("Span weight: its length, or its rarity (-sum log2 unigram probability)"),
              maxRowsPerSpan: z.number().int().min(1).max(100).optional().describe("Rows listed per span"),
            })
            .default({})
            .describe("Query options; defaults are the service's validator settings"),
        }),
        response: {
          200: z.object({
            datanetVersionId: z.string(),
            tokenizer: z.string().describe("Tokenizer id used for the text and the index"),
            textTokens: z.number().int(),
            spans: z.array(
              z.object({
                start: z.number().int().describe("First token of the span in the text"),
                end: z.number().int().describe("One past the last token"),
                text: z.string().describe("The span, decoded"),
                count: z.number().int().describe("Occurrences in the version's rows"),
                rows: z
                  .array(
                    z.object({
                      rowId: z.string(),
                      contributionId: z.string(),
                      contributorAddress: z.string(),
                      excerpt: z.string().describe(`First ${EXCERPT_CHARS} characters of the row`),
                    }),
                  )
                  .describe("Rows (documents) containing the span"),
                rowsTruncated: z.boolean().describe("More rows contain it than listed"),
              }),
            ),
            rows: z
              .array(
                z.object({
                  rowId: z.string(),
                  contributionId: z.string(),
                  contributorAddress: z.string(),
                  score: z.string().describe("Fixed-point score (decimal integer)"),
                }),
              )
              .describe("Credited rows, best first"),
            contributors: z.array(ContributorWeight).describe("Empty when no span matched"),
          }),
          400: ErrorBody,
          401: ErrorBody,
          404: ErrorBody,
          409: ErrorBody,
        },
      },
    },
    async (req) => {
      const { text, datanetVersionId, options } = req.body;
      const version = await root.db.datanetVersion.findUnique({
        where: { id: datanetVersionId },
        select: { id: true },
      });
      if (!version) throw new AppError("NOT_FOUND", `datanet version ${datanetVersionId} does not exist`);
      let shards: Awaited<ReturnType<typeof loadSpanShards>>["shards"];
      try {
        ({ shards } = await loadSpanShards(root.db, ctx, [datanetVersionId]));
      } catch (err) {
        if (err instanceof ScoringError && err.code === "INDEX_NOT_READY") {
          throw new AppError("CONFLICT", `${err.message}; build it with POST /v1/indexes`);
        }
        if (err instanceof ScoringError || err instanceof ArtifactMismatchError) {
          throw new AppError("UNPROCESSABLE", err.message);
        }
        throw err;
      }
      const tokenizer = await ctx.tokenizer();
      const tokens = Array.from(tokenizer.encode(text));
      const params = spanParams(ctx, {
        ...(options.minSpanTokens !== undefined && { minLen: options.minSpanTokens }),
        ...(options.maxSpanCount !== undefined && { maxCount: options.maxSpanCount }),
        ...(options.weighting !== undefined && { weighting: options.weighting }),
        ...(options.maxRowsPerSpan !== undefined && { maxRowsPerSpan: options.maxRowsPerSpan }),
      });
      const att = attributeSpans(shards, tokens, params);
      const rowIds = [...new Set(att.spans.flatMap((s) => s.rowIds))];
      const rows = await root.db.datanetRow.findMany({
        where: { id: { in: rowIds.map((id) => BigInt(id)) } },
        select: { id: true, contributionId: true, contributorAddress: true, text: true },
      });
      const byId = new Map(rows.map((r) => [r.id.toString(), r]));
      return {
        datanetVersionId,
        tokenizer: tokenizer.id,
        textTokens: tokens.length,
        spans: att.spans.map((s) => ({
          start: s.start,
          end: s.end,
          text: tokenizer.decode(tokens.slice(s.start, s.end)),
          count: s.count,
          rows: s.rowIds.map((id) => {
            const r = byId.get(id);
            return {
              rowId: id,
              contributionId: r?.contributionId ?? "",
              contributorAddress: r?.contributorAddress.toLowerCase() ?? "",
              excerpt: r ? r.text.slice(0, EXCERPT_CHARS) : "",
            };
          }),
          rowsTruncated: s.rowsTruncated,
        })),
        rows: att.rows.map((r) => ({
          rowId: r.rowId,
          contributionId: r.contributionId,
          contributorAddress: r.contributorId,
          score: r.score,
        })),
        contributors: att.weights.map((w) => ({ contributorAddress: w.contributorId, ppm: w.ppm })),
      };
    },
  );
};
