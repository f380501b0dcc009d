import { createHash, randomBytes } from "node:crypto";
import { isChainUnavailable } from "@openledger/chain";
import { AppError } from "@openledger/errors";
import type { FastifyRequest } from "fastify";
import type { Cluster, Redis } from "ioredis";
import { getAddress, type Hex } from "viem";
import { generateSiweNonce, parseSiweMessage, verifySiweMessage } from "viem/siwe";
import type { DatanetsContext } from "./context.ts";

/**
 * Sign-in with Ethereum (EIP-4361). Nonces are server-issued, stored in Redis with a TTL and
 * consumed atomically (GETDEL) by the first verify attempt, so a message can be used once.
 * Sessions are opaque random tokens; Redis stores only their SHA-256 (a Redis dump does not
 * leak usable tokens) with the address and a TTL.
 */
const TOKEN_PREFIX = "dns_";

const nonceKey = (ctx: DatanetsContext, nonce: string) => `${ctx.keyPrefix}:siwe-nonce:${nonce}`;
const sessionKey = (ctx: DatanetsContext, token: string) =>
  `${ctx.keyPrefix}:session:${createHash("sha256").update(token).digest("hex")}`;

export async function issueNonce(ctx: DatanetsContext, redis: Redis | Cluster) {
  const nonce = generateSiweNonce();
  const ttl = ctx.config.DATANETS_NONCE_TTL_SECONDS;
  await redis.set(nonceKey(ctx, nonce), "1", "EX", ttl);
  return { nonce, expiresAt: new Date(Date.now() + ttl * 1000).toISOString() };
}

export interface Session {
  token: string;
  address: string;
  expiresAt: string;
}

/** Verifies a signed SIWE message; every failure is a 401 with a precise code. */
export async function verifySignIn(
  ctx: DatanetsContext,
  redis: Redis | Cluster,
  message: string,
  signature: Hex,
): Promise<Session> {
  let fields: ReturnType<typeof parseSiweMessage>;
  try {
    fields = parseSiweMessage(message);
  } catch {
    throw new AppError("SIWE_INVALID_MESSAGE", "not an EIP-4361 message", { status: 401 });
  }
  if (!fields.address || !fields.nonce || !fields.domain || fields.chainId === undefined || !fields.uri) {
    throw new AppError("SIWE_INVALID_MESSAGE", "the message lacks address, domain, uri, chain id or nonce", {
      status: 401,
    });
  }
  // Consume the nonce first: whatever happens next, this message can never be tried again.
  const known = await redis.getdel(nonceKey(ctx, fields.nonce));
  if (known === null) {
    throw new AppError("SIWE_NONCE_INVALID", "unknown, expired or already used nonce: request a new one", {
      status: 401,
    });
  }
  if (fields.domain !== ctx.config.DATANETS_SIWE_DOMAIN) {
    throw new AppError(
      "SIWE_DOMAIN_MISMATCH",
      `the message is for domain "${fields.domain}", this service is "${ctx.config.DATANETS_SIWE_DOMAIN}"`,
      { status: 401 },
    );
  }
  const chain = await ctx.chain.require();
  if (fields.chainId !== chain.chainId) {
    throw new AppError(
      "SIWE_CHAIN_MISMATCH",
      `the message is for chain ${fields.chainId}, not ${chain.chainId}`,
      { status: 401 },
    );
  }
  const now = new Date();
  if (fields.expirationTime && fields.expirationTime.getTime() <= now.getTime()) {
    throw new AppError("SIWE_EXPIRED", "the message has expired", { status: 401 });
  }
  if (fields.notBefore && fields.notBefore.getTime() > now.getTime()) {
    throw new AppError("SIWE_NOT_YET_VALID", "the message is not valid yet (notBefore)", { status: 401 });
  }
  const ok = await verifySiweMessage(chain.publicClient, {
    message,
    signature,
    domain: ctx.config.DATANETS_SIWE_DOMAIN,
    nonce: fields.nonce,
    time: now,
  }).catch((err: unknown) => {
    // The check runs on chain (ERC-6492/1271 validator): no answer is a 503, not a bad signature.
    if (isChainUnavailable(err)) throw err;
    return false;
  });
  if (!ok)
    throw new AppError("SIWE_BAD_SIGNATURE", "the signature does not match the message's address", {
      status: 401,
    });

  const address = getAddress(fields.address).toLowerCase();
  const token = TOKEN_PREFIX + randomBytes(32).toString("base64url");
  let ttl = ctx.config.DATANETS_SESSION_TTL_SECONDS;
  // A session never outlives the signed message.
  if (fields.expirationTime)
    ttl = Math.min(ttl, Math.floor((fields.expirationTime.getTime() - now.getTime()) / 1000));
  ttl = Math.max(ttl, 1);
  await redis.set(sessionKey(ctx, token), address, "EX", ttl);
  await ctx.db.contributor.upsert({ where: { address }, create: { address }, update: {} });
  return { token, address, expiresAt: new Date(now.getTime() + ttl * 1000).toISOString() };
}

/** The signed-in address of a request (`Authorization: Bearer <token>`), or 401. */
export async function requireAuth(
  ctx: DatanetsContext,
  redis: Redis | Cluster,
  request: FastifyRequest,
): Promise<string> {
  const header = request.headers.authorization;
  const token = header?.startsWith("Bearer ") ? header.slice(7).trim() : undefined;
  if (!token)
    throw new AppError("AUTH_REQUIRED", "sign in: send Authorization: Bearer <session token>", {
      status: 401,
    });
  if (!token.startsWith(TOKEN_PREFIX))
    throw new AppError("SESSION_INVALID", "not a session token", { status: 401 });
  const address = await redis.get(sessionKey(ctx, token));
  if (!address)
    throw new AppError("SESSION_INVALID", "unknown or expired session: sign in again", { status: 401 });
  return address;
}

/** Ends a session (sign out). */
export async function revokeSession(
  ctx: DatanetsContext,
  redis: Redis | Cluster,
  request: FastifyRequest,
): Promise<void> {
  const header = request.headers.authorization;
  const token = header?.startsWith("Bearer ") ? header.slice(7).trim() : "";
  await redis.del(sessionKey(ctx, token));
}
