import { timingSafeEqual } from "node:crypto";
import type { GatewayConfig } from "@openledger/config";
import { AppError } from "@openledger/errors";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { z } from "zod";

const Body = z.object({
  account: z.string().regex(/^0x[0-9a-fA-F]{40}$/, "a 0x address"),
  name: z.string().max(100).default(""),
});

function tokenMatches(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * Operator endpoints. `Authorization: Bearer <GATEWAY_ADMIN_TOKEN>`; with no admin token
 * configured they are open only on a local chain (id 31337: the dev bootstrap) and
 * answer 403 anywhere else.
 */
export async function adminRoutes(app: FastifyInstance, { config }: { config: GatewayConfig }) {
  async function checkAdmin(request: FastifyRequest) {
    const expected = config.GATEWAY_ADMIN_TOKEN;
    if (expected) {
      const m = /^Bearer\s+(\S+)$/i.exec(request.headers.authorization ?? "");
      if (!m || !tokenMatches(m[1]!, expected)) throw new AppError("UNAUTHORIZED", "admin token required");
      return;
    }
    const ctx = await app.gatewayChain.get();
    if (ctx.chainId !== 31337) {
      throw new AppError("FORBIDDEN", "admin endpoints are disabled: set GATEWAY_ADMIN_TOKEN");
    }
  }

  app.post(
    "/admin/api-keys",
    {
      schema: {
        tags: ["admin"],
        summary: "Create an API key for an account (the key is shown once; only its SHA-256 is stored)",
        body: Body,
        response: {
          201: z.object({ id: z.string(), key: z.string(), prefix: z.string(), account: z.string() }),
        },
      },
    },
    async (request, reply) => {
      await checkAdmin(request);
      const { account, name } = request.body as z.infer<typeof Body>;
      const created = await app.apiKeys.create(account, name);
      return reply.status(201).send({ ...created, account: account.toLowerCase() });
    },
  );

  app.get(
    "/status",
    { schema: { tags: ["health"], summary: "Model readiness: base model, slots, adapters, engine queue" } },
    async () => {
      const host = app.host;
      const stats = host.scheduler.stats();
      return {
        status: "ready",
        baseModel: {
          id: config.GATEWAY_BASE_MODEL_ID,
          contentHash: host.contentHash,
          config: host.model.config,
        },
        adapters: app.catalog.models.size - 1,
        slots: config.GATEWAY_SLOTS,
        waiting: stats.waiting,
        running: stats.running,
      };
    },
  );
}
