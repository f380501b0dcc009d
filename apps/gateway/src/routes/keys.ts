import { apiKeyRequestTypedData, isChainUnavailable } from "@openledger/chain";
import { AppError } from "@openledger/errors";
import type { FastifyInstance } from "fastify";
import { type Address, getAddress, type Hex, recoverTypedDataAddress } from "viem";
import { z } from "zod";
import type {} from "../plugins/keys.ts"; // its `declare module "fastify"` (apiKeys): in every program with this file

/** How old (or how far in the future: clock skew) a signed key request may be. */
const REQUEST_TTL_SECONDS = 300;
const CLOCK_SKEW_SECONDS = 60;

export const CreateKeyBody = z
  .object({
    account: z
      .string()
      .regex(/^0x[0-9a-fA-F]{40}$/, "a 0x address")
      .describe("The account that will pay"),
    name: z.string().max(100).default("").describe("A label for the key"),
    issued_at: z.number().int().nonnegative().describe("Unix seconds when the request was signed"),
    nonce: z
      .string()
      .regex(/^0x[0-9a-fA-F]{64}$/, "32 random bytes, 0x hex")
      .describe("Single use"),
    signature: z
      .string()
      .regex(/^0x[0-9a-fA-F]+$/, "0x hex")
      .max(2 + 2 * 4096)
      .describe("The account's EIP-712 signature of CreateApiKey {account, name, issuedAt, nonce}"),
  })
  .strict();

/**
 * API keys belong to the account that pays for them: the account signs an EIP-712 `CreateApiKey`
 * {account, name, issuedAt, nonce} (domain "OpenLedger Gateway" v1, the platform's chain id; helper
 * `signApiKeyRequest` in @openledger/chain) and the gateway issues the key to that account only. There is
 * no admin route that mints keys for an arbitrary address. A request lives REQUEST_TTL_SECONDS and its nonce
 * works once (`api_keys.request_nonce` is unique), so a captured request cannot mint a second key.
 * Contract accounts (multisigs) sign through ERC-1271, checked on chain.
 */
export const CreateApiKeyRoute = {
  tags: ["keys"],
  summary: "Create an API key for your own account, by signature (the key is shown once)",
  description:
    "Body: {account, name?, issued_at, nonce, signature}: the account's EIP-712 signature of CreateApiKey " +
    "{account, name, issuedAt: issued_at, nonce} under the domain {name: 'OpenLedger Gateway', version: '1', " +
    `chainId}. Errors: 400 VALIDATION_FAILED; 401 INVALID_SIGNATURE (not signed by the account); 401 ` +
    `REQUEST_EXPIRED (issued more than ${REQUEST_TTL_SECONDS} s ago, or in the future); 409 NONCE_USED (a ` +
    "request is used once); 503 when the chain cannot be reached (contract accounts).",
  body: CreateKeyBody,
  response: {
    201: z.object({ id: z.string(), key: z.string(), prefix: z.string(), account: z.string() }),
  },
};

export async function keyRoutes(app: FastifyInstance) {
  app.post(
    "/v1/api-keys",
    {
      schema: CreateApiKeyRoute,
    },
    async (request, reply) => {
      const body = request.body as z.infer<typeof CreateKeyBody>;
      const now = Math.floor(Date.now() / 1000);
      if (body.issued_at < now - REQUEST_TTL_SECONDS || body.issued_at > now + CLOCK_SKEW_SECONDS) {
        throw new AppError(
          "REQUEST_EXPIRED",
          `the request was issued at ${body.issued_at}; sign a new one (valid ${REQUEST_TTL_SECONDS} s)`,
          { status: 401 },
        );
      }
      const account = getAddress(body.account);
      // Bounded (CHAIN_REQUEST_TIMEOUT_MS): a chain that does not answer is a 503, never a hang.
      const ctx = await app.chain.require();
      const typed = apiKeyRequestTypedData(ctx.chainId, {
        account,
        name: body.name,
        issuedAt: BigInt(body.issued_at),
        nonce: body.nonce as Hex,
      });
      let signer: Address | undefined;
      try {
        signer = await recoverTypedDataAddress({ ...typed, signature: body.signature as Hex });
      } catch {
        signer = undefined;
      }
      // An EOA's signature recovers to it; a contract account (a multisig) is asked on chain (ERC-1271).
      const valid =
        signer === account ||
        (await app.chain.read(async (c) => {
          if ((await c.publicClient.getCode({ address: account })) === undefined) return false;
          return c.publicClient
            .verifyTypedData({ address: account, ...typed, signature: body.signature as Hex } as never)
            .catch((err: unknown) => {
              if (isChainUnavailable(err)) throw err;
              return false; // the contract refused the signature (or is no ERC-1271 account)
            });
        }));
      if (!valid) {
        throw new AppError("INVALID_SIGNATURE", `the request is not signed by ${account}`, { status: 401 });
      }
      const created = await app.apiKeys.create(account, body.name, body.nonce.toLowerCase());
      return reply.status(201).send({ ...created, account: account.toLowerCase() });
    },
  );
}
