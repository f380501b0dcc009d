import type { DatanetsConfig } from "@openledger/config";
import type { FastifyPluginAsync } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { z } from "zod";
import { issueNonce, requireAuth, revokeSession, verifySignIn } from "../auth.ts";
import { ErrorBody } from "../schemas.ts";

export const AuthNonceRoute = {
  tags: ["auth"],
  summary: "Get a sign-in nonce",
  description:
    "Step 1 of Sign-In with Ethereum (EIP-4361): a fresh, single-use nonce valid for a few minutes. " +
    "Put it in a SIWE message whose domain is this service's SIWE domain and whose chain id is the platform chain.",
  response: {
    200: z.object({
      nonce: z.string().describe("Put in the SIWE message's Nonce field"),
      expiresAt: z.string().describe("The nonce is refused after this time"),
      domain: z.string().describe("The domain the message must name"),
      chainId: z.number().int().describe("The chain id the message must name"),
    }),
    503: ErrorBody,
  },
};

export const AuthVerifyRoute = {
  tags: ["auth"],
  summary: "Sign in with a signed SIWE message",
  description:
    "Step 2: send the EIP-4361 message and its personal_sign signature. Answers a session token for " +
    "`Authorization: Bearer <token>`. 401 codes: SIWE_INVALID_MESSAGE, SIWE_NONCE_INVALID (unknown, expired " +
    "or replayed nonce), SIWE_DOMAIN_MISMATCH, SIWE_CHAIN_MISMATCH, SIWE_EXPIRED, SIWE_NOT_YET_VALID, SIWE_BAD_SIGNATURE.",
  body: z.object({
    message: z.string().min(1).max(4096).describe("The EIP-4361 message, exactly as signed"),
    signature: z
      .string()
      .regex(/^0x[0-9a-fA-F]+$/, "0x-prefixed hex")
      .describe("personal_sign signature of the message"),
  }),
  response: {
    200: z.object({
      token: z.string().describe("Session token (opaque; only its hash is stored server-side)"),
      address: z.string().describe("The signed-in address (lower case)"),
      expiresAt: z.string(),
    }),
    401: ErrorBody,
  },
};

export const AuthLogoutRoute = {
  tags: ["auth"],
  summary: "End the session",
  response: { 204: z.null(), 401: ErrorBody },
};

export const AuthSessionRoute = {
  tags: ["auth"],
  summary: "Who am I",
  response: { 200: z.object({ address: z.string() }), 401: ErrorBody },
};

export const authRoutes: FastifyPluginAsync<{ config: DatanetsConfig }> = async (root, { config }) => {
  const app = root.withTypeProvider<ZodTypeProvider>();
  const ctx = root.datanets;

  app.post(
    "/v1/auth/nonce",
    {
      schema: AuthNonceRoute,
    },
    async () => {
      const chain = await ctx.chain.require();
      const n = await issueNonce(ctx, root.redis);
      return { ...n, domain: config.DATANETS_SIWE_DOMAIN, chainId: chain.chainId };
    },
  );

  app.post(
    "/v1/auth/verify",
    {
      schema: AuthVerifyRoute,
    },
    async (request) =>
      verifySignIn(ctx, root.redis, request.body.message, request.body.signature as `0x${string}`),
  );

  app.post(
    "/v1/auth/logout",
    {
      schema: AuthLogoutRoute,
    },
    async (request, reply) => {
      await requireAuth(ctx, root.redis, request);
      await revokeSession(ctx, root.redis, request);
      return reply.code(204).send(null);
    },
  );

  app.get(
    "/v1/auth/session",
    {
      schema: AuthSessionRoute,
    },
    async (request) => ({ address: await requireAuth(ctx, root.redis, request) }),
  );
};
