import { z } from "zod";

// A training grant request crosses one HTTP hop: the factory sends it (apps/factory's GatewayClient,
// with the builder's own credential) and the gateway receives it (POST /v1/training-grants). One
// definition of the request and of its wire body, so the two sides cannot drift apart.

/** What a builder asks a training grant for (the gateway holds the job's max fee in its escrow). */
export interface GrantRequest {
  /** The factory's job id. */
  job: string;
  datanetVersionIds: string[];
  /** SHA-256 of the base model's weights the job trains on (must be the gateway's). */
  baseModelHash: string;
  pricePer1kTokensWei: bigint;
  maxTokens: number;
  expiresInSeconds: number;
}

/** The wire body of POST /v1/training-grants (snake_case, the price as a decimal string). */
export const CreateGrantBody = z
  .object({
    job: z
      .string()
      .regex(/^[A-Za-z0-9._-]{1,64}$/)
      .describe("The factory's job id"),
    datanet_version_ids: z.array(z.uuid()).min(1).max(16),
    base_model_hash: z
      .string()
      .regex(/^[0-9a-f]{64}$/)
      .describe("SHA-256 of the base model's weights the job trains on (must be this gateway's)"),
    price_per_1k_tokens_wei: z
      .string()
      .regex(/^\d{1,38}$/)
      .describe("Price of training, wei per 1,000 trained tokens"),
    max_tokens: z.number().int().min(1).max(2_000_000_000),
    expires_in_seconds: z
      .number()
      .int()
      .min(60)
      .max(30 * 86400),
  })
  .strict();

/** A grant request as its wire body (the factory's side). */
export function grantRequestBody(req: GrantRequest): z.infer<typeof CreateGrantBody> {
  return {
    job: req.job,
    datanet_version_ids: req.datanetVersionIds,
    base_model_hash: req.baseModelHash,
    price_per_1k_tokens_wei: req.pricePer1kTokensWei.toString(),
    max_tokens: req.maxTokens,
    expires_in_seconds: req.expiresInSeconds,
  };
}

/** A validated wire body as the grant request (the gateway's side). */
export function grantRequestOf(body: z.infer<typeof CreateGrantBody>): GrantRequest {
  return {
    job: body.job,
    datanetVersionIds: body.datanet_version_ids,
    baseModelHash: body.base_model_hash,
    pricePer1kTokensWei: BigInt(body.price_per_1k_tokens_wei),
    maxTokens: body.max_tokens,
    expiresInSeconds: body.expires_in_seconds,
  };
}
