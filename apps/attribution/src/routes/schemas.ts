import type { AttributionConfig } from "@openledger/config";
import type { FastifyRequest } from "fastify";
import { z } from "zod";

export { ErrorBody, Uuid } from "@openledger/service-kit";

export const ContributorWeight = z.object({
  contributorAddress: z.string().describe("Contributor wallet (lower-case 0x address)"),
  ppm: z
    .number()
    .int()
    .describe("Share in parts per million; the weights of one result sum to exactly 1,000,000"),
});

export const ArtifactView = z.object({
  kind: z
    .enum(["span", "influence"])
    .describe("span: suffix-array index; influence: logistic model + ONNX export"),
  status: z.enum(["building", "ready", "failed"]),
  blobHash: z.string().nullable().describe("SHA-256 of the artifact in the content-addressed blob store"),
  onnxBlobHash: z.string().nullable().describe("SHA-256 of the ONNX export (influence only)"),
  tokenizer: z.string().describe("Tokenizer (span) or feature settings (influence) it was built with"),
  tokenCount: z.string().describe("Tokens indexed (decimal string)"),
  rowCount: z.number().int(),
  stats: z.record(z.string(), z.unknown()).describe("Build statistics (bytes, contributors, classes...)"),
  error: z.string().nullable().describe("Why the last build failed"),
  updatedAt: z.string(),
});

/** Options of the routes that only the platform's services and accounts with an API key may call. */
export interface GuardedRouteOptions {
  config: AttributionConfig;
  /** preHandler: 401 unless `Bearer ATTRIBUTION_SERVICE_TOKEN` or an account's API key. */
  requireCaller: (request: FastifyRequest) => Promise<void>;
  /** preHandler: 401 unless `Bearer ATTRIBUTION_SERVICE_TOKEN` (the platform's own services only). */
  requireService: (request: FastifyRequest) => Promise<void>;
}
