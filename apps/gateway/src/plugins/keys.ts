import type { TrainingGrant } from "@openledger/db";
import { ApiKeys } from "@openledger/service-kit";
import type { FastifyInstance } from "fastify";
import fp from "fastify-plugin";

export { ApiKeys, hashApiKey } from "@openledger/service-kit";

declare module "fastify" {
  interface FastifyInstance {
    apiKeys: ApiKeys;
  }
  interface FastifyRequest {
    /** The training grant a request is authenticated by (the factory's adapter upload). */
    grant?: TrainingGrant;
  }
}

export const keysPlugin = fp(
  async (app: FastifyInstance) => {
    app.decorate("apiKeys", new ApiKeys(app.db));
  },
  { name: "gateway-keys" },
);
