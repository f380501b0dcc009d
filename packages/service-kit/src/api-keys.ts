import { createHash, randomBytes } from "node:crypto";
import type { Db } from "@openledger/db";
import { AppError } from "@openledger/errors";
import type { FastifyRequest } from "fastify";
import { RenewingCache } from "./renewing-cache.ts";

// API keys are the gateway's (an account creates its own, POST /v1/api-keys on the gateway, by its
// EIP-712 signature); every service that serves builders (the gateway, the factory) authenticates
// them with this one class over the shared `api_keys` table.

export function hashApiKey(key: string): string {
  return createHash("sha256").update(key).digest("hex");
}

const ADDRESS = /^0x[0-9a-fA-F]{40}$/;
/** How long a key lookup is reused: a revocation (`revoked_at`) takes effect within it. */
const KEY_CACHE_MS = 10_000;

/** API keys: random 24 bytes shown once, stored as SHA-256 (`api_keys.key_hash`). */
export class ApiKeys {
  /** Key hash -> account; an unknown or revoked key is not cached. */
  readonly #accounts = new RenewingCache<string | undefined>({
    ttlMs: () => KEY_CACHE_MS,
    load: async (hash) => {
      const row = await this.db.apiKey.findUnique({ where: { keyHash: hash } });
      return !row || row.revokedAt ? undefined : row.accountAddress;
    },
    keep: (account) => account !== undefined,
  });

  constructor(readonly db: Db) {}

  /**
   * A new key for `account`. Callers must have established that the account asked for it (POST /v1/api-keys
   * checks its signature and passes the request's nonce, which works once).
   */
  async create(
    account: string,
    name: string,
    requestNonce?: string,
  ): Promise<{ id: string; key: string; prefix: string }> {
    if (!ADDRESS.test(account)) throw new AppError("VALIDATION_FAILED", "account must be a 0x address");
    const key = `sk-${randomBytes(24).toString("base64url")}`;
    const prefix = key.slice(0, 10);
    try {
      const row = await this.db.apiKey.create({
        data: {
          keyHash: hashApiKey(key),
          prefix,
          accountAddress: account.toLowerCase(),
          name,
          ...(requestNonce ? { requestNonce } : {}),
        },
      });
      return { id: row.id, key, prefix };
    } catch (err) {
      if ((err as { code?: string }).code === "P2002") {
        throw new AppError("NONCE_USED", "this signed request was already used: sign a new one", {
          status: 409,
        });
      }
      throw err;
    }
  }

  /**
   * The account of a bearer key, or undefined (cached: revocation takes effect within KEY_CACHE_MS).
   * One lookup per key at a time (requests that find no fresh entry join the one in flight), and an
   * entry past half its life is renewed in the background while it still serves (`RenewingCache`): when a busy key's
   * entry expired, each of its requests used to query Postgres at once (bench:gateway's `auth`
   * phase, up to 75 ms at p99).
   */
  accountOf(key: string): Promise<string | undefined> {
    return this.#accounts.get(hashApiKey(key));
  }

  /** `Authorization: Bearer sk-...` -> the key's account, or 401 (MISSING_API_KEY / INVALID_API_KEY). */
  async authenticate(request: FastifyRequest): Promise<string> {
    const header = request.headers.authorization;
    const m = header ? /^Bearer\s+(\S+)$/i.exec(header) : null;
    if (!m) {
      throw new AppError("MISSING_API_KEY", "missing API key: send Authorization: Bearer sk-...", {
        status: 401,
      });
    }
    const account = await this.accountOf(m[1]!);
    if (!account) throw new AppError("INVALID_API_KEY", "invalid API key", { status: 401 });
    return account;
  }
}

declare module "fastify" {
  interface FastifyRequest {
    /** The API key's account (set by the routes that authenticate). */
    account?: string;
  }
}
