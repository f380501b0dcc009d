import type { AttributionConfig } from "@openledger/config";
import { AppError } from "@openledger/errors";
import type { FastifyPluginAsync } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import type { Hex } from "viem";
import { z } from "zod";
import type { ChainContext } from "../lib/context.ts";
import { recoverSigner, resultHashOf } from "../lib/validator.ts";
import { ContributorWeight, ErrorBody, Uuid } from "./schemas.ts";

export const InferenceAttributionRoute = {
  tags: ["attribution"],
  summary: "The validators' signed attribution of an inference, with evidence",
  description:
    "Every stored validator result: the canonical JSON (parsed, as evidence: spans and credited rows, or " +
    "influential training rows), its keccak256 hash, the validator's EIP-712 signature (checked here), and " +
    "the contributor weights. `agree` is true when at least one result exists and all hashes are equal. " +
    "404 NOT_FOUND: no such inference.",
  params: z.object({ id: Uuid.describe("Inference id") }),
  response: {
    200: z.object({
      inferenceId: z.string(),
      modelId: z.string(),
      agree: z.boolean().describe("All validators produced byte-identical results (and there is one)"),
      consensusHash: z.string().nullable().describe("The result hash signed by the most validators"),
      consensusCount: z.number().int().describe("How many validators signed consensusHash"),
      results: z.array(
        z.object({
          validatorAddress: z.string(),
          method: z.enum(["span", "influence"]),
          resultHash: z.string().describe("keccak256 of the canonical JSON (UTF-8)"),
          signature: z.string().describe("EIP-712 AttributionResult{inferenceId, resultHash} signature"),
          signatureValid: z
            .boolean()
            .nullable()
            .describe("The signature recovers to validatorAddress (null: chain config unavailable)"),
          hashValid: z.boolean().describe("resultHash is the hash of the stored canonical JSON"),
          weights: z.array(ContributorWeight),
          canonicalJson: z.string().describe("Exactly the bytes that were hashed"),
          evidence: z.record(z.string(), z.unknown()).describe("The canonical JSON, parsed"),
          createdAt: z.string(),
        }),
      ),
    }),
    400: ErrorBody,
    404: ErrorBody,
  },
};

export const inferenceRoutes: FastifyPluginAsync<{ config: AttributionConfig }> = async (root) => {
  const app = root.withTypeProvider<ZodTypeProvider>();
  const ctx = root.attribution;

  app.get(
    "/v1/inferences/:id/attribution",
    {
      schema: InferenceAttributionRoute,
    },
    async (req) => {
      const { id } = req.params;
      const inference = await root.db.inference.findUnique({
        where: { id },
        select: { id: true, modelId: true },
      });
      if (!inference) throw new AppError("NOT_FOUND", `inference ${id} does not exist`);
      const results = await root.db.attributionResult.findMany({
        where: { inferenceId: id },
        include: { weights: { orderBy: { contributorAddress: "asc" } } },
        orderBy: { validatorAddress: "asc" },
      });
      let chain: ChainContext | null = null;
      try {
        chain = results.length > 0 ? await ctx.chain() : null;
      } catch (err) {
        req.log.warn({ err: (err as Error).message }, "chain unavailable: signatures not checked");
      }
      const views = await Promise.all(
        results.map(async (r) => {
          let signatureValid: boolean | null = null;
          if (chain) {
            try {
              signatureValid =
                (await recoverSigner(chain, id, r.resultHash as Hex, r.signature as Hex)) ===
                r.validatorAddress;
            } catch {
              signatureValid = false;
            }
          }
          return {
            validatorAddress: r.validatorAddress,
            method: r.method,
            resultHash: r.resultHash,
            signature: r.signature,
            signatureValid,
            hashValid: resultHashOf(r.canonicalJson) === r.resultHash,
            weights: r.weights.map((w) => ({ contributorAddress: w.contributorAddress, ppm: w.weightPpm })),
            canonicalJson: r.canonicalJson,
            evidence: JSON.parse(r.canonicalJson) as Record<string, unknown>,
            createdAt: r.createdAt.toISOString(),
          };
        }),
      );
      const counts = new Map<string, number>();
      for (const v of views) counts.set(v.resultHash, (counts.get(v.resultHash) ?? 0) + 1);
      const best = [...counts].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))[0];
      return {
        inferenceId: id,
        modelId: inference.modelId,
        agree: views.length > 0 && counts.size === 1,
        consensusHash: best?.[0] ?? null,
        consensusCount: best?.[1] ?? 0,
        results: views,
      };
    },
  );
};
