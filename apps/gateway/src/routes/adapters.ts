import { randomUUID } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import multipart from "@fastify/multipart";
import type { GatewayConfig } from "@openledger/config";
import type { Tx } from "@openledger/db";
import { AppError } from "@openledger/errors";
import { ModelRuntimeError } from "@openledger/model-runtime";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { z } from "zod";
import { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, contentHashOfDigests } from "../lib/adapter-store.ts";
import { AdapterUpload } from "../lib/upload.ts";
import type { ServableModel } from "../plugins/catalog.ts";
import { GRANT_TOKEN_PREFIX, type TrainingUsage } from "../plugins/grants.ts";
import type {} from "../plugins/host.ts"; // its `declare module "fastify"` (host): in every program with this file
import type {} from "../plugins/keys.ts"; // its `declare module "fastify"` (apiKeys, FastifyRequest.grant): in every program with this file
import { type AdapterQuota, adapterUsage, checkQuota } from "../plugins/registration.ts";
import { AdapterCreated, AdapterDetail, AdapterSummary, ModelList, Retired } from "./schemas.ts";

const MODEL_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const WEI = /^\d{1,38}$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const MAX_UINT128 = (1n << 128n) - 1n;

/** A 400 with the model runtime's own code (e.g. ADAPTER_SHAPE_MISMATCH) and its details. */
function adapterRejected(code: string, message: string, details: unknown): AppError {
  return new AppError(code, message, { status: 400, details });
}

function describe(m: ServableModel): z.input<typeof AdapterSummary> {
  return {
    id: m.id,
    object: "adapter",
    owner: m.ownerAddress,
    contentHash: m.contentHash,
    pricePer1kInputWei: m.priceInPer1kWei.toString(),
    pricePer1kOutputWei: m.priceOutPer1kWei.toString(),
    createdAt: m.createdAt.toISOString(),
  };
}

/**
 * Adapter registry for model builders (API key = the owner's address). Errors use the
 * platform shape `{ error: { code, message } }`; validation failures of the files carry
 * the runtime's code (ADAPTER_SHAPE_MISMATCH, ...) naming the tensor and shapes.
 */
export const UploadAdapterRoute = {
  tags: ["adapters"],
  summary:
    "Register a PEFT LoRA adapter (multipart: files adapter_config.json + adapter_model.safetensors, or one .tar/.tar.gz holding both; fields id, name, price_in_per_1k_wei, price_out_per_1k_wei, datanet_version_ids)",
  response: { 200: AdapterCreated, 201: AdapterCreated },
};

export const ListAdaptersRoute = {
  tags: ["adapters"],
  summary: "The caller's active adapters",
  response: { 200: ModelList(AdapterSummary) },
};

const Params = z.object({ id: z.string().min(1).max(128) });

export const GetAdapterRoute = {
  tags: ["adapters"],
  summary: "Inspect one of the caller's adapters",
  params: Params,
  response: { 200: AdapterDetail },
};

export const RetireAdapterRoute = {
  tags: ["adapters"],
  summary: "Retire one of the caller's adapters (no new requests)",
  params: Params,
  response: { 200: Retired },
};

export async function adapterRoutes(app: FastifyInstance, { config }: { config: GatewayConfig }) {
  await app.register(multipart, {
    // Per file as sent (compressed or not); the decompressed total is bounded by AdapterUpload.
    // (one byte more than the limit, so that AdapterUpload, which names the limit, sees it passed).
    limits: { fileSize: config.GATEWAY_ADAPTER_MAX_BYTES + 1, files: 2, fields: 16, fieldSize: 64 * 1024 },
  });
  app.addHook("onRequest", async (request) => {
    // A training grant's token (the factory, for the builder who created the grant) may register its
    // one adapter; every other adapter route takes the owner's API key.
    const bearer = /^Bearer\s+(\S+)$/i.exec(request.headers.authorization ?? "")?.[1];
    if (
      bearer?.startsWith(GRANT_TOKEN_PREFIX) &&
      request.method === "POST" &&
      request.url === "/v1/adapters"
    ) {
      const grant = await app.grants.byToken(bearer);
      request.grant = grant;
      request.account = grant.accountAddress;
      return;
    }
    request.account = await app.apiKeys.authenticate(request);
  });

  app.post(
    "/v1/adapters",
    {
      schema: UploadAdapterRoute,
    },
    async (request: FastifyRequest, reply) => {
      if (!request.isMultipart()) throw new AppError("UNSUPPORTED_MEDIA_TYPE", "send multipart/form-data");
      const owner = request.account!;
      const quota: AdapterQuota = {
        count: config.GATEWAY_ADAPTER_QUOTA_COUNT,
        bytes: config.GATEWAY_ADAPTER_QUOTA_BYTES,
      };
      // Refused before a byte is received when the account is at its quota; an upload may then use
      // what is left of it (or the per-adapter limit, whichever is smaller).
      const usage = await adapterUsage(app.db, owner);
      checkQuota(usage, quota, 0);
      const maxBytes = config.GATEWAY_ADAPTER_MAX_BYTES;
      const left = quota.bytes - usage.bytes;
      const upload = new AdapterUpload(app.catalog.store.incomingDir(randomUUID()), {
        bytes: Math.min(maxBytes, left),
        error: () =>
          left < maxBytes
            ? new AppError(
                "ADAPTER_QUOTA_EXCEEDED",
                `this upload would pass the account's adapter quota of ${quota.bytes} bytes (${usage.bytes} used)`,
                { status: 403, details: { usage, quota } },
              )
            : new AppError(
                "PAYLOAD_TOO_LARGE",
                `an adapter upload may hold at most ${maxBytes} bytes (decompressed)`,
              ),
      });
      await upload.open();
      try {
        const fields: Record<string, string[]> = {};
        for await (const part of request.parts()) {
          if (part.type === "file") {
            if (/\.(tar|tgz|tar\.gz)$/.test(part.filename) || part.fieldname === "adapter") {
              await upload.addArchive(part.file); // a tarball holding both files (at any depth)
              continue;
            }
            const name =
              part.filename === ADAPTER_CONFIG_FILE || part.fieldname === "adapter_config"
                ? ADAPTER_CONFIG_FILE
                : part.filename === ADAPTER_WEIGHTS_FILE || part.fieldname === "adapter_model"
                  ? ADAPTER_WEIGHTS_FILE
                  : undefined;
            if (!name) {
              throw new AppError(
                "VALIDATION_FAILED",
                `unexpected file ${part.filename} (field ${part.fieldname})`,
              );
            }
            await upload.addFile(name, part.file);
            if (part.file.truncated) throw upload.limit.error(); // multipart's own per-file cap
          } else {
            const list = fields[part.fieldname] ?? [];
            list.push(String(part.value));
            fields[part.fieldname] = list;
          }
        }
        const field = (k: string) => fields[k]?.[0];
        const cfgFile = upload.files.get(ADAPTER_CONFIG_FILE);
        const weightsFile = upload.files.get(ADAPTER_WEIGHTS_FILE);
        if (!cfgFile || !weightsFile) {
          throw new AppError(
            "VALIDATION_FAILED",
            `both ${ADAPTER_CONFIG_FILE} and ${ADAPTER_WEIGHTS_FILE} are required`,
          );
        }
        const priceIn = field("price_in_per_1k_wei") ?? "0";
        const priceOut = field("price_out_per_1k_wei") ?? "0";
        for (const [k, v] of [
          ["price_in_per_1k_wei", priceIn],
          ["price_out_per_1k_wei", priceOut],
        ] as const) {
          if (!WEI.test(v) || BigInt(v) > MAX_UINT128) {
            throw new AppError("VALIDATION_FAILED", `${k}: a decimal string of wei (uint128)`);
          }
        }
        const versionIds = (fields.datanet_version_ids ?? [])
          .flatMap((v) => (v.trim().startsWith("[") ? parseIdList(v) : v.split(",")))
          .map((v) => v.trim())
          .filter(Boolean);
        for (const v of versionIds) {
          if (!UUID.test(v))
            throw new AppError("VALIDATION_FAILED", `datanet_version_ids: ${v} is not a uuid`);
        }
        const hash = contentHashOfDigests(cfgFile.sha256, weightsFile.sha256);
        const grant = request.grant;
        let usage: TrainingUsage | undefined;
        if (grant) {
          // The factory's upload for a job: the same files under a used grant are the same
          // registration (its answer was lost), anything else under a closed grant is refused.
          if (grant.usedAt) {
            const row = grant.modelId
              ? await app.db.model.findUnique({ where: { id: grant.modelId } })
              : null;
            if (row?.contentHash !== hash) {
              throw new AppError("GRANT_CLOSED", "this training grant was already used for another adapter", {
                status: 409,
              });
            }
            const intent = await app.db.chainIntent.findUnique({ where: { key: `model.register:${hash}` } });
            const config = JSON.parse(await readFile(join(upload.dir, ADAPTER_CONFIG_FILE), "utf8")) as {
              r?: number;
            };
            return reply.status(200).send({
              id: row.id,
              object: "adapter",
              owner: row.ownerAddress,
              contentHash: row.contentHash,
              pricePer1kInputWei: row.priceInPer1kWei.toFixed(0),
              pricePer1kOutputWei: row.priceOutPer1kWei.toFixed(0),
              createdAt: row.createdAt.toISOString(),
              rank: Number(config.r ?? 0),
              sizeBytes: cfgFile.bytes + weightsFile.bytes,
              datanetVersionIds: grant.datanetVersionIds,
              chain: intent
                ? {
                    status: intent.status,
                    txHash: intent.txHash,
                    ...(row.chainModelId ? { chainModelId: row.chainModelId.toFixed(0) } : {}),
                  }
                : { status: "skipped" },
              training: { grantId: grant.id, usageInferenceId: grant.inferenceId },
            } satisfies z.input<typeof AdapterCreated>);
          }
          if (grant.releasedAt || grant.expiresAt.getTime() <= Date.now()) {
            throw new AppError("GRANT_CLOSED", "this training grant was released or has expired", {
              status: 409,
            });
          }
          if (grant.baseModelHash !== app.host.contentHash) {
            throw new AppError("BASE_MODEL_MISMATCH", "the grant was made for another base model", {
              status: 409,
            });
          }
          usage = parseTrainingUsage(fields);
          await app.grants.checkUsage(grant, versionIds.length ? versionIds : grant.datanetVersionIds, usage);
        }
        const id = field("id") ?? field("name") ?? `adapter-${hash.slice(0, 16)}`;
        if (!MODEL_ID.test(id) || id === app.catalog.baseModelId) {
          throw new AppError(
            "VALIDATION_FAILED",
            "id: letters, digits, '.', '_', '-' (max 128), not the base model id",
          );
        }
        // Validated against the base model and the slots (shapes, targets, rank) by the runtime's
        // adapter loader — on a worker thread for large files — before anything is registered.
        let rank: number;
        try {
          rank = (await app.host.loadPool.load(upload.dir)).rank;
        } catch (err) {
          if (err instanceof ModelRuntimeError) throw adapterRejected(err.code, err.message, err.details);
          throw err;
        }
        const sizeBytes = cfgFile.bytes + weightsFile.bytes;
        await app.catalog.store.adopt(upload.dir, hash);
        const trainedOn = grant && versionIds.length === 0 ? grant.datanetVersionIds : versionIds;
        let usageId: string | undefined;
        const { model, chain } = await app.registration.register({
          id,
          owner,
          contentHash: hash,
          priceIn: BigInt(priceIn),
          priceOut: BigInt(priceOut),
          datanetVersionIds: trainedOn,
          sizeBytes,
          quota,
          ...(grant && usage
            ? {
                lineage: { job: usage.job, training_config: usage.trainingConfigHash },
                inTransaction: async (tx: Tx) => {
                  usageId = await app.grants.use(tx, grant, id, usage!);
                },
              }
            : {}),
        });
        if (usageId) await app.grants.settle(usageId);
        return reply.status(201).send({
          ...describe(model),
          rank,
          sizeBytes,
          datanetVersionIds: trainedOn,
          chain,
          ...(grant ? { training: { grantId: grant.id, usageInferenceId: usageId ?? null } } : {}),
        } satisfies z.input<typeof AdapterCreated>);
      } catch (err) {
        // Refused mid-upload: the rest of the body is read and dropped (never kept), so the client,
        // still sending, gets this answer; the connection is not reused.
        reply.header("connection", "close");
        request.raw.resume();
        throw err;
      } finally {
        await upload.discard();
      }
    },
  );

  app.get("/v1/adapters", { schema: ListAdaptersRoute }, async (request) => ({
    object: "list",
    data: [...app.catalog.models.values()]
      .filter((m) => m.kind === "adapter" && m.ownerAddress === request.account)
      .map((m) => describe(m)),
  }));

  async function owned(request: FastifyRequest, id: string) {
    const row = await app.db.model.findUnique({ where: { id }, include: { trainingVersions: true } });
    if (row?.kind !== "adapter") throw new AppError("NOT_FOUND", `adapter ${id} not found`);
    if (row.ownerAddress !== request.account)
      throw new AppError("FORBIDDEN", `adapter ${id} belongs to another account`);
    return row;
  }

  app.get(
    "/v1/adapters/:id",
    { schema: GetAdapterRoute },
    async (request): Promise<z.input<typeof AdapterDetail>> => {
      const { id } = request.params as z.infer<typeof Params>;
      const row = await owned(request, id);
      const intent = await app.db.chainIntent.findUnique({
        where: { key: `model.register:${row.contentHash}` },
      });
      return {
        id: row.id,
        object: "adapter",
        owner: row.ownerAddress,
        status: row.status,
        contentHash: row.contentHash,
        baseModel: row.baseModel,
        pricePer1kInputWei: row.priceInPer1kWei.toFixed(0),
        pricePer1kOutputWei: row.priceOutPer1kWei.toFixed(0),
        chainModelId: row.chainModelId?.toFixed(0) ?? null,
        chain: intent
          ? { status: intent.status, txHash: intent.txHash, error: intent.error }
          : { status: "skipped" },
        datanetVersionIds: row.trainingVersions.map((t) => t.datanetVersionId),
        createdAt: row.createdAt.toISOString(),
      };
    },
  );

  app.delete(
    "/v1/adapters/:id",
    {
      schema: RetireAdapterRoute,
    },
    async (request): Promise<z.input<typeof Retired>> => {
      const { id } = request.params as z.infer<typeof Params>;
      const row = await owned(request, id);
      if (row.status !== "retired") await app.catalog.retire(id);
      return { id, object: "adapter", status: "retired" as const };
    },
  );
}

/** The training a grant's upload reports (fields trained_tokens, trained_tokens_by_contributor, training_config_hash, job). */
function parseTrainingUsage(fields: Record<string, string[]>): TrainingUsage {
  const one = (k: string) => {
    const v = fields[k]?.[0];
    if (v === undefined) throw new AppError("VALIDATION_FAILED", `${k} is required with a training grant`);
    return v;
  };
  const trainedTokens = Number(one("trained_tokens"));
  if (!Number.isSafeInteger(trainedTokens) || trainedTokens < 0) {
    throw new AppError("VALIDATION_FAILED", "trained_tokens: a non-negative integer");
  }
  let byContributor: unknown;
  try {
    byContributor = JSON.parse(one("trained_tokens_by_contributor"));
  } catch {
    throw new AppError("VALIDATION_FAILED", "trained_tokens_by_contributor: not valid JSON");
  }
  if (!byContributor || typeof byContributor !== "object" || Array.isArray(byContributor)) {
    throw new AppError("VALIDATION_FAILED", "trained_tokens_by_contributor: a JSON object {address: tokens}");
  }
  return {
    trainedTokens,
    tokensByContributor: new Map(
      Object.entries(byContributor as Record<string, unknown>).map(([a, n]) => [a.toLowerCase(), Number(n)]),
    ),
    trainingConfigHash: one("training_config_hash"),
    job: one("job"),
  };
}

/** A JSON array of strings, or a clear 400 (never a 500 from JSON.parse). */
function parseIdList(text: string): string[] {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new AppError("VALIDATION_FAILED", "datanet_version_ids: not valid JSON");
  }
  if (!Array.isArray(value) || !value.every((v) => typeof v === "string")) {
    throw new AppError("VALIDATION_FAILED", "datanet_version_ids: expected a JSON array of uuid strings");
  }
  return value;
}
