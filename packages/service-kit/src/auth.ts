import { createHash, timingSafeEqual } from "node:crypto";
import type { FastifyRequest } from "fastify";
import type { ApiKeys } from "./api-keys.ts";

/**
 * Whether an Authorization header carries exactly `Bearer <token>`, compared in constant
 * time (hashing both sides first so lengths leak nothing either).
 */
export function bearerMatches(header: string | undefined, token: string): boolean {
  if (!header || !token) return false;
  const given = createHash("sha256").update(header).digest();
  const expected = createHash("sha256").update(`Bearer ${token}`).digest();
  return timingSafeEqual(given, expected);
}

/** Who called a route that the platform's own services and paying accounts may use. */
export type Caller = { kind: "service" } | { kind: "account"; account: string };

/**
 * The caller of a route open to the platform's own services (`Authorization: Bearer <serviceToken>`,
 * when the service has one) and to accounts (`Bearer sk-…`, their gateway API key, through the one
 * `ApiKeys` class). Anyone else gets the API-key 401 (MISSING_API_KEY / INVALID_API_KEY).
 */
export async function authenticateCaller(
  request: FastifyRequest,
  { serviceToken, apiKeys }: { serviceToken: string | undefined; apiKeys: ApiKeys },
): Promise<Caller> {
  if (serviceToken && bearerMatches(request.headers.authorization, serviceToken)) return { kind: "service" };
  const account = await apiKeys.authenticate(request);
  request.account = account;
  return { kind: "account", account };
}
