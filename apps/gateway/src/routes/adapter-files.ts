import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { join } from "node:path";
import {
  ADAPTER_FETCH_HEADER,
  ADAPTER_FETCH_SKEW_SECONDS,
  ADAPTER_FETCH_TTL_SECONDS,
  CachedValidatorQuorum,
  recoverAdapterFetchSigner,
} from "@openledger/chain";
import type { GatewayConfig } from "@openledger/config";
import { AppError } from "@openledger/errors";
import { ErrorBody } from "@openledger/service-kit";
import type { FastifyInstance } from "fastify";
import type { Hex } from "viem";
import { z } from "zod";
import { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE } from "../lib/adapter-store.ts";

export const AdapterFileParams = z.object({
  contentHash: z
    .string()
    .regex(/^[0-9a-f]{64}$/, "the adapter's content hash: 64 lower-case hex digits")
    .describe("The adapter's content hash (models.content_hash, `contentHash` of GET /v1/adapters/{id})"),
  file: z.enum([ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE]).describe("Which of the adapter's two PEFT files"),
});

const H = ADAPTER_FETCH_HEADER;
/** The signed request's headers (documented here; checked by the handler, which answers 401/403, not 400). */
export const AdapterFileHeaders = z.looseObject({
  [H.validator]: z.string().optional().describe("The validator's address"),
  [H.timestamp]: z.string().optional().describe("Unix seconds when the request was signed"),
  [H.origin]: z
    .string()
    .optional()
    .describe("The gateway origin signed for (scheme://host[:port]); its host must be this request's Host"),
  [H.signature]: z
    .string()
    .optional()
    .describe(
      "The validator's EIP-191 signature (personal_sign) of `adapterFetchMessage` (@openledger/chain): " +
        "the lines 'OpenLedger: a validator fetches an adapter's files', 'Adapter: <contentHash>', " +
        "'Gateway: <origin>', 'Timestamp: <unix seconds>'",
    ),
});

export const GetAdapterFileRoute = {
  tags: ["adapters"],
  summary: "A registered adapter's file, by content hash, for active validators (LoRA influence)",
  description:
    "Validators recompute an adapter answer's LoRA influence from the adapter's weights, which are the " +
    "builder's asset: only the RewardDistributor's active validators (admitted and holding the minimum " +
    "Validator stake) get them. Sign with the validator key (EIP-191) the adapter's content hash, this " +
    `gateway's origin and the time, and send the four x-openledger-* headers; a signature is accepted for ` +
    `${ADAPTER_FETCH_TTL_SECONDS} s (and up to ${ADAPTER_FETCH_SKEW_SECONDS} s early). The body is the file ` +
    "as stored, streamed with Content-Length; `x-content-sha256` and the ETag are its SHA-256 (If-None-Match " +
    "answers 304). The content hash is SHA-256(SHA-256(adapter_config.json) || SHA-256(adapter_model." +
    "safetensors)): check the files against it before use. No Range requests (the files are fetched once " +
    "per validator and cached). Errors: 401 SIGNATURE_REQUIRED (headers missing), 401 INVALID_SIGNATURE " +
    "(not signed by the named validator, or malformed), 401 SIGNATURE_EXPIRED (timestamp outside the " +
    "window), 401 WRONG_GATEWAY (signed for another origin), 403 NOT_A_VALIDATOR (the signer is not an " +
    "active validator; the set is re-read at most every GATEWAY_VALIDATOR_SET_CACHE_MS), 404 NOT_FOUND (no adapter registered with this hash, or its files are not on this " +
    "gateway), 503 CHAIN_UNAVAILABLE.",
  params: AdapterFileParams,
  headers: AdapterFileHeaders,
  response: {
    200: z.any().describe("The file's bytes (application/json or application/octet-stream)"),
    304: z.null().describe("Not modified (If-None-Match matched the ETag)"),
    400: ErrorBody,
    401: ErrorBody,
    403: ErrorBody,
    404: ErrorBody,
    503: ErrorBody,
  },
};

/** The SHA-256 of a stored file, computed once per (path, size, mtime): the files are immutable. */
class FileDigests {
  readonly #byPath = new Map<string, { key: string; digest: Promise<string> }>();
  constructor(readonly capacity = 1024) {}

  get(path: string, size: number, mtimeMs: number): Promise<string> {
    const key = `${size}:${mtimeMs}`;
    const hit = this.#byPath.get(path);
    if (hit?.key === key) return hit.digest;
    const digest = new Promise<string>((resolve, reject) => {
      const sha = createHash("sha256");
      createReadStream(path)
        .on("data", (c) => sha.update(c))
        .on("error", reject)
        .on("end", () => resolve(sha.digest("hex")));
    });
    digest.catch(() => this.#byPath.delete(path));
    this.#byPath.delete(path);
    this.#byPath.set(path, { key, digest });
    while (this.#byPath.size > this.capacity) this.#byPath.delete(this.#byPath.keys().next().value!);
    return digest;
  }
}

/** Who signed the request, checked: an active validator, fresh, for this gateway and this adapter. */
async function authorizeValidator(
  app: FastifyInstance,
  validators: CachedValidatorQuorum,
  headers: Record<string, string | string[] | undefined>,
  host: string,
  contentHash: string,
): Promise<string> {
  const one = (name: string) => {
    const v = headers[name];
    return Array.isArray(v) ? undefined : v;
  };
  const validator = one(H.validator);
  const timestamp = one(H.timestamp);
  const origin = one(H.origin);
  const signature = one(H.signature);
  if (!validator || !timestamp || !origin || !signature) {
    throw new AppError(
      "SIGNATURE_REQUIRED",
      `adapter files are served to active validators only: sign the request (${Object.values(H).join(", ")})`,
      { status: 401 },
    );
  }
  if (
    !/^0x[0-9a-fA-F]{40}$/.test(validator) ||
    !/^\d{1,12}$/.test(timestamp) ||
    !/^0x[0-9a-fA-F]+$/.test(signature)
  ) {
    throw new AppError("INVALID_SIGNATURE", "malformed x-openledger-validator, -timestamp or -signature", {
      status: 401,
    });
  }
  const now = Math.floor(Date.now() / 1000);
  const at = Number(timestamp);
  if (at < now - ADAPTER_FETCH_TTL_SECONDS || at > now + ADAPTER_FETCH_SKEW_SECONDS) {
    throw new AppError(
      "SIGNATURE_EXPIRED",
      `the request was signed at ${at} (now ${now}); a signature is accepted for ${ADAPTER_FETCH_TTL_SECONDS} s: sign a new one`,
      { status: 401 },
    );
  }
  let signedHost: string;
  try {
    signedHost = new URL(origin).host;
  } catch {
    signedHost = "";
  }
  if (signedHost !== host) {
    throw new AppError("WRONG_GATEWAY", `the request was signed for ${origin}, not this gateway (${host})`, {
      status: 401,
    });
  }
  let signer: string;
  try {
    signer = (
      await recoverAdapterFetchSigner({ contentHash, origin, timestamp: at }, signature as Hex)
    ).toLowerCase();
  } catch {
    signer = "";
  }
  if (signer !== validator.toLowerCase()) {
    throw new AppError("INVALID_SIGNATURE", `the request is not signed by ${validator.toLowerCase()}`, {
      status: 401,
    });
  }
  // The validator set as every service reads it, reused GATEWAY_VALIDATOR_SET_CACHE_MS (bounded by
  // CHAIN_REQUEST_TIMEOUT_MS: 503 when the chain is away and the set is due a read).
  const quorum = await app.chain.read((c) =>
    validators.get(c.publicClient, c.addresses.contracts.RewardDistributor),
  );
  if (!quorum.active.has(signer)) {
    throw new AppError(
      "NOT_A_VALIDATOR",
      `${signer} is not an active validator (RewardDistributor.activeValidators: admitted, with the minimum Validator stake)`,
      { status: 403 },
    );
  }
  return signer;
}

/**
 * GET /v1/adapter-files/{contentHash}/{file}: the files of a registered adapter (retired ones included:
 * their past answers are still attributed) for the active validators, who cannot share this gateway's
 * disk (issue #14: each validator is its own operator). Signature and validator set first, so a caller
 * who is not a validator learns nothing, not even whether a hash is registered.
 */
export async function adapterFileRoutes(app: FastifyInstance, opts: { config: GatewayConfig }) {
  const digests = new FileDigests();
  const validators = new CachedValidatorQuorum(opts.config.GATEWAY_VALIDATOR_SET_CACHE_MS);
  app.get("/v1/adapter-files/:contentHash/:file", { schema: GetAdapterFileRoute }, async (request, reply) => {
    const { contentHash, file } = request.params as z.infer<typeof AdapterFileParams>;
    const validator = await authorizeValidator(app, validators, request.headers, request.host, contentHash);
    const registered = await app.db.model.findFirst({
      where: { contentHash, kind: "adapter" },
      select: { id: true },
    });
    const path = join(app.catalog.store.dirOf(contentHash), file);
    const st = registered ? await stat(path).catch(() => null) : null;
    if (!registered || !st?.isFile()) {
      throw new AppError(
        "NOT_FOUND",
        `no adapter with content hash ${contentHash} is stored on this gateway`,
      );
    }
    const sha256 = await digests.get(path, st.size, st.mtimeMs);
    const etag = `"${sha256}"`;
    reply
      .header("etag", etag)
      .header("x-content-sha256", sha256)
      // Signed per validator: no shared cache may keep it.
      .header("cache-control", "private, no-store");
    request.log.info({ validator, contentHash, file, bytes: st.size }, "adapter file served to a validator");
    if (request.headers["if-none-match"] === etag) return reply.status(304).send();
    return reply
      .type(file === ADAPTER_CONFIG_FILE ? "application/json" : "application/octet-stream")
      .header("content-length", String(st.size))
      .send(createReadStream(path));
  });
}
