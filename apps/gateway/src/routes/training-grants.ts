import type { TrainingGrant } from "@openledger/db";
import { AppError } from "@openledger/errors";
import { CreateGrantBody, grantRequestOf } from "@openledger/service-kit";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { z } from "zod";
import { GRANT_TOKEN_PREFIX } from "../plugins/grants.ts";

const GrantParams = z.object({ id: z.uuid() });

function view(g: TrainingGrant) {
  return {
    id: g.id,
    object: "training_grant",
    account: g.accountAddress,
    job: g.jobRef,
    datanet_version_ids: g.datanetVersionIds,
    price_per_1k_tokens_wei: g.pricePer1kTokensWei.toFixed(0),
    max_tokens: Number(g.maxTokens),
    max_fee_wei: g.maxFeeWei.toFixed(0),
    expires_at: g.expiresAt.toISOString(),
    used_at: g.usedAt?.toISOString() ?? null,
    released_at: g.releasedAt?.toISOString() ?? null,
    model: g.modelId,
    usage_inference_id: g.inferenceId,
  };
}

/**
 * Training grants (see `plugins/grants.ts`): a builder, with its own API key, lets the factory
 * register one adapter for it and bill the training from an escrow hold. The factory creates the
 * grant by passing the builder's own request credential through; it never holds a key of its own.
 */
export async function trainingGrantRoutes(app: FastifyInstance) {
  app.post(
    "/v1/training-grants",
    {
      schema: {
        tags: ["training"],
        summary:
          "Hold a fine-tuning job's maximum fee in your escrow and let the factory register its adapter for you",
        description:
          "Returns a single-use grant token (shown once). 402 when the escrow cannot hold the maximum fee; 404/409 " +
          "for an unknown or unpublished datanet version; 409 BASE_MODEL_MISMATCH.",
        body: CreateGrantBody,
        security: [{ bearer: [] }],
      },
    },
    async (request, reply) => {
      const account = await app.apiKeys.authenticate(request);
      const body = request.body as z.infer<typeof CreateGrantBody>;
      const { grant, token } = await app.grants.create(account, grantRequestOf(body));
      return reply.status(201).send({ ...view(grant), token });
    },
  );

  /** The grant a request may act on: by its own token, or by its owner's API key. */
  async function grantOf(request: FastifyRequest, id: string): Promise<TrainingGrant> {
    const m = /^Bearer\s+(\S+)$/i.exec(request.headers.authorization ?? "");
    if (m?.[1]?.startsWith(GRANT_TOKEN_PREFIX)) {
      const grant = await app.grants.byToken(m[1]);
      if (grant.id !== id) throw new AppError("FORBIDDEN", "this token is another grant's", { status: 403 });
      return grant;
    }
    const account = await app.apiKeys.authenticate(request);
    const grant = await app.db.trainingGrant.findUnique({ where: { id } });
    if (!grant || grant.accountAddress !== account) {
      throw new AppError("NOT_FOUND", `training grant ${id} not found`, { status: 404 });
    }
    return grant;
  }

  app.get(
    "/v1/training-grants/:id",
    {
      schema: {
        tags: ["training"],
        summary: "A training grant (its token or its owner)",
        params: GrantParams,
      },
    },
    async (request) => view(await grantOf(request, (request.params as z.infer<typeof GrantParams>).id)),
  );

  app.delete(
    "/v1/training-grants/:id",
    {
      schema: {
        tags: ["training"],
        summary: "Release an unused grant: its escrow hold is dropped (a no-op once used or released)",
        params: GrantParams,
      },
    },
    async (request) => {
      const grant = await grantOf(request, (request.params as z.infer<typeof GrantParams>).id);
      return view(await app.grants.release(grant));
    },
  );
}
