import type { GatewayConfig } from "@openledger/config";
import type { FastifyInstance } from "fastify";

/**
 * Operator views. (API keys are not minted here: an account creates its own by signature, POST
 * /v1/api-keys in routes/keys.ts.)
 */
export async function adminRoutes(app: FastifyInstance, { config }: { config: GatewayConfig }) {
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
