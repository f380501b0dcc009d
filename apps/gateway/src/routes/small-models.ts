import { toWei } from "@openledger/db";
import { AppError } from "@openledger/errors";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { z } from "zod";
import type { ServableModel } from "../plugins/catalog.ts";
import type {} from "../plugins/keys.ts"; // its `declare module "fastify"` (apiKeys): in every program with this file
import { ModelList, Retired, SmallModelCreated, SmallModelDetail, SmallModelSummary } from "./schemas.ts";

const MAX_UINT128 = (1n << 128n) - 1n;
const Wei = z
  .string()
  .regex(/^\d{1,39}$/, "a decimal string of wei")
  .refine((v) => BigInt(v) <= MAX_UINT128, "at most 2^128 - 1 (uint128, as ModelRegistry stores it)");

const SmallModelBody = z
  .object({
    id: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/, "letters, digits, '.', '_', '-' (max 128)")
      .describe("Model id clients pass as `model`"),
    datanet_version_id: z.uuid().describe("The labelled datanet version whose influence model is served"),
    price_in_per_1k_wei: Wei.describe("Price per 1,000 input tokens (words the classifier reads), wei"),
    price_out_per_1k_wei: Wei.describe("Price per 1,000 output tokens (1 per answer: the label), wei"),
    datanet_owner_approval: z
      .object({
        deadline: z.string().regex(/^\d{1,20}$/, "unix seconds, as a decimal string"),
        signature: z.string().regex(/^0x[0-9a-fA-F]{130}$/, "a 65-byte hex signature"),
      })
      .strict()
      .optional()
      .describe(
        "When the caller is not the datanet's owner nor a builder the owner approved on chain: the owner's EIP-712 " +
          "BuilderApproval {datanetId, builder: the caller, approved: true, nonce: DatanetRegistry.nonces(owner), " +
          "deadline} (domain 'OpenLedger DatanetRegistry' v1), which the gateway relays on chain",
      ),
  })
  .strict();

function describe(m: ServableModel): z.input<typeof SmallModelSummary> {
  return {
    id: m.id,
    object: "small_model",
    owner: m.ownerAddress,
    contentHash: m.contentHash,
    datanetVersionId: m.datanetVersionId ?? null,
    pricePer1kInputWei: m.priceInPer1kWei.toString(),
    pricePer1kOutputWei: m.priceOutPer1kWei.toString(),
    createdAt: m.createdAt.toISOString(),
  };
}

/**
 * Small models: a builder registers the influence model that the attribution service trained on
 * one labelled datanet version (multinomial logistic regression over hashed n-grams) and the
 * gateway serves its ONNX export through the OpenAI routes. Errors use the platform shape.
 */
export const RegisterSmallModelRoute = {
  tags: ["small-models"],
  summary: "Register a small model: the influence model of one labelled datanet version",
  description:
    "The model is the multinomial logistic regression the attribution service trained on the version's " +
    "labelled rows (hashed word 1-2-grams); the gateway serves its ONNX export and answers the predicted " +
    "label. Owner = the API key's account. Usage: prompt tokens = words the classifier reads, completion " +
    "tokens = 1. Recorded in Postgres (kind small_model) and in ModelRegistry (kind Model). Errors: 400 " +
    "VALIDATION_FAILED (body, id, prices); 404 DATANET_VERSION_NOT_FOUND; 422 DATANET_VERSION_NOT_LABELLED " +
    "(fewer than two label classes); 409 INFLUENCE_MODEL_NOT_READY (being built: retry, see Retry-After); " +
    "409 INFLUENCE_MODEL_FAILED (its build failed: rebuild with the attribution service's POST /v1/indexes); " +
    "409 CONFLICT (id taken, the version's model already registered, datanet not on chain); 403 " +
    "BUILDER_NOT_APPROVED (the caller is neither the datanet's owner nor a builder it approved, and no valid " +
    "datanet_owner_approval was given); 503 " +
    "ATTRIBUTION_UNAVAILABLE (the ONNX graph could not be fetched: retry).",
  body: SmallModelBody,
  response: { 201: SmallModelCreated },
};

export const ListSmallModelsRoute = {
  tags: ["small-models"],
  summary: "The caller's active small models",
  response: { 200: ModelList(SmallModelSummary) },
};

const Params = z.object({ id: z.string().min(1).max(128) });

export const GetSmallModelRoute = {
  tags: ["small-models"],
  summary: "Inspect one of the caller's small models",
  params: Params,
  response: { 200: SmallModelDetail },
};

export const RetireSmallModelRoute = {
  tags: ["small-models"],
  summary: "Retire one of the caller's small models (no new requests)",
  params: Params,
  response: { 200: Retired },
};

export async function smallModelRoutes(app: FastifyInstance) {
  app.addHook("onRequest", async (request) => {
    request.account = await app.apiKeys.authenticate(request);
  });

  app.post(
    "/v1/small-models",
    {
      schema: RegisterSmallModelRoute,
    },
    async (request, reply) => {
      const body = request.body as z.infer<typeof SmallModelBody>;
      if (body.id === app.catalog.baseModelId) {
        throw new AppError("VALIDATION_FAILED", "id: the base model's id is reserved");
      }
      const versionId = body.datanet_version_id;
      const taken = await app.db.model.findUnique({ where: { id: body.id }, select: { id: true } });
      if (taken) throw new AppError("CONFLICT", `a model with id ${body.id} already exists`);
      const version = await app.db.datanetVersion.findUnique({ where: { id: versionId } });
      if (!version) {
        throw new AppError("DATANET_VERSION_NOT_FOUND", `datanet version ${versionId} does not exist`, {
          status: 404,
        });
      }
      const [labels] = await app.db.$queryRaw<{ classes: bigint }[]>`
        SELECT count(DISTINCT r.label) AS classes
        FROM datanet_version_rows vr JOIN datanet_rows r ON r.id = vr.row_id
        WHERE vr.version_id = ${versionId}::uuid AND r.label IS NOT NULL AND r.label <> ''`;
      if (Number(labels?.classes ?? 0) < 2) {
        throw new AppError(
          "DATANET_VERSION_NOT_LABELLED",
          `datanet version ${versionId} has ${Number(labels?.classes ?? 0)} label class(es); a classifier needs rows labelled with at least two`,
          { status: 422 },
        );
      }
      const index = await app.db.attributionIndex.findUnique({
        where: { datanetVersionId_kind: { datanetVersionId: versionId, kind: "influence" } },
      });
      if (index?.status === "failed") {
        throw new AppError(
          "INFLUENCE_MODEL_FAILED",
          `the influence model of datanet version ${versionId} failed to build (${index.error ?? "unknown error"}); rebuild it with the attribution service's POST /v1/indexes`,
          { status: 409 },
        );
      }
      if (index?.status !== "ready" || !index.blobHash || !index.onnxBlobHash) {
        throw new AppError(
          "INFLUENCE_MODEL_NOT_READY",
          `the influence model of datanet version ${versionId} is ${index ? "being built" : "not built yet"}; retry shortly`,
          { status: 409, headers: { "retry-after": "5" } },
        );
      }
      const existing = await app.db.model.findFirst({
        where: { kind: "small_model", contentHash: index.blobHash, status: "active" },
        select: { id: true },
      });
      if (existing) {
        throw new AppError(
          "CONFLICT",
          `the influence model of datanet version ${versionId} is already registered as ${existing.id}`,
        );
      }
      // Only the datanet's owner, or a builder it approved, registers the datanet's small model
      // (otherwise anyone could take it, set its price and collect the model owner's share).
      const datanet = await app.db.datanet.findUniqueOrThrow({ where: { id: version.datanetId } });
      if (datanet.chainDatanetId === null) {
        throw new AppError(
          "CONFLICT",
          `datanet ${datanet.id} of version ${versionId} is not registered on-chain yet`,
        );
      }
      const approval = body.datanet_owner_approval;
      await app.registration.assertBuilderApproved(
        BigInt(datanet.chainDatanetId.toFixed(0)),
        request.account!,
        approval
          ? { deadline: BigInt(approval.deadline), signature: approval.signature as `0x${string}` }
          : undefined,
      );
      // Fetch, hash-check and load the graph before anything is written: a model that cannot be
      // served is never registered.
      const loaded = await app.catalog.smallModels.load(versionId, index.onnxBlobHash);
      const { model, chain } = await app.registration.register({
        id: body.id,
        kind: "small_model",
        owner: request.account!,
        // The influence model file, not the ONNX export: it also binds the training rows and their
        // contributors, so two versions with equal texts and labels still differ on chain.
        contentHash: index.blobHash,
        priceIn: BigInt(body.price_in_per_1k_wei),
        priceOut: BigInt(body.price_out_per_1k_wei),
        datanetVersionIds: [versionId],
      });
      model.onnxHash = index.onnxBlobHash;
      return reply.status(201).send({
        ...describe(model),
        onnxSha256: index.onnxBlobHash,
        classes: loaded.descriptor.classNames,
        features: loaded.descriptor.features,
        chain,
      } satisfies z.input<typeof SmallModelCreated>);
    },
  );

  app.get(
    "/v1/small-models",
    { schema: ListSmallModelsRoute },
    // From Postgres, not this replica's memory: models registered through another replica count too.
    async (request) => {
      const rows = await app.db.model.findMany({
        where: { kind: "small_model", status: "active", ownerAddress: request.account! },
        include: { trainingVersions: { select: { datanetVersionId: true } } },
        orderBy: [{ createdAt: "asc" }, { id: "asc" }],
      });
      return {
        object: "list",
        data: rows.map((r) =>
          describe({
            id: r.id,
            kind: "small_model",
            ownerAddress: r.ownerAddress,
            contentHash: r.contentHash,
            priceInPer1kWei: toWei(r.priceInPer1kWei),
            priceOutPer1kWei: toWei(r.priceOutPer1kWei),
            createdAt: r.createdAt,
            ...(r.trainingVersions[0] ? { datanetVersionId: r.trainingVersions[0].datanetVersionId } : {}),
          }),
        ),
      };
    },
  );

  async function owned(request: FastifyRequest, id: string) {
    const row = await app.db.model.findUnique({ where: { id }, include: { trainingVersions: true } });
    if (row?.kind !== "small_model") throw new AppError("NOT_FOUND", `small model ${id} not found`);
    if (row.ownerAddress !== request.account)
      throw new AppError("FORBIDDEN", `small model ${id} belongs to another account`);
    return row;
  }

  app.get(
    "/v1/small-models/:id",
    { schema: GetSmallModelRoute },
    async (request): Promise<z.input<typeof SmallModelDetail>> => {
      const { id } = request.params as z.infer<typeof Params>;
      const row = await owned(request, id);
      const intent = await app.db.chainIntent.findUnique({
        where: { key: `model.register:${row.contentHash}` },
      });
      return {
        id: row.id,
        object: "small_model",
        owner: row.ownerAddress,
        status: row.status,
        contentHash: row.contentHash,
        pricePer1kInputWei: row.priceInPer1kWei.toFixed(0),
        pricePer1kOutputWei: row.priceOutPer1kWei.toFixed(0),
        chainModelId: row.chainModelId?.toFixed(0) ?? null,
        chain: intent
          ? { status: intent.status, txHash: intent.txHash, error: intent.error }
          : { status: "skipped" },
        datanetVersionId: row.trainingVersions[0]?.datanetVersionId ?? null,
        createdAt: row.createdAt.toISOString(),
      };
    },
  );

  app.delete(
    "/v1/small-models/:id",
    {
      schema: RetireSmallModelRoute,
    },
    async (request): Promise<z.input<typeof Retired>> => {
      const { id } = request.params as z.infer<typeof Params>;
      const row = await owned(request, id);
      if (row.status !== "retired") await app.catalog.retire(id);
      return { id, object: "small_model", status: "retired" as const };
    },
  );
}
