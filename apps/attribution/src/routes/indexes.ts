import { ONNX_INPUT, ONNX_OUTPUT } from "@openledger/attribution-core";
import type { Db } from "@openledger/db";
import { AppError } from "@openledger/errors";
import { jobId } from "@openledger/queue";
import type { FastifyPluginAsync } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { z } from "zod";
import type { AttributionContext } from "../lib/context.ts";
import {
  ArtifactMismatchError,
  buildInfluenceArtifact,
  ensureLocalArtifact,
  loadVersionRows,
} from "../lib/indexing.ts";
import { ArtifactView, ErrorBody, type GuardedRouteOptions, Uuid } from "./schemas.ts";

/** The version's ready influence artifact row, or a 404 / 409 saying why there is none. */
async function readyInfluence(db: Db, versionId: string) {
  const version = await db.datanetVersion.findUnique({ where: { id: versionId }, select: { id: true } });
  if (!version) throw new AppError("NOT_FOUND", `datanet version ${versionId} does not exist`);
  const row = await db.attributionIndex.findUnique({
    where: { datanetVersionId_kind: { datanetVersionId: versionId, kind: "influence" } },
  });
  if (row?.status !== "ready" || !row.blobHash || !row.onnxBlobHash) {
    throw new AppError(
      "CONFLICT",
      row
        ? `the influence model of datanet version ${versionId} is ${row.status}${row.error ? ` (${row.error})` : ""}`
        : `datanet version ${versionId} has no influence model (not indexed yet, or fewer than two label classes)`,
    );
  }
  return { ...row, blobHash: row.blobHash, onnxBlobHash: row.onnxBlobHash };
}

/** Makes sure the ONNX export is in this node's store (rebuilt from Postgres rows and hash-checked if not). */
async function ensureLocalOnnx(db: Db, ctx: AttributionContext, versionId: string, expected: string) {
  if (await ctx.store.has(expected)) return;
  const built = await buildInfluenceArtifact(ctx, versionId, await loadVersionRows(db, versionId));
  if (built.onnxBlobHash !== expected) {
    throw new ArtifactMismatchError(versionId, "influence ONNX", expected, built.onnxBlobHash);
  }
}

export const BuildIndexRoute = {
  tags: ["indexes"],
  security: [{ bearer: [] }],
  summary: "Build the attribution index of a datanet version",
  description:
    "Enqueues `attribution.index` for the version: its suffix-array span index and, when the version has " +
    "labelled rows of at least two classes, its influence model and ONNX export. Idempotent: the job id is " +
    "derived from the version, and a ready index is kept; a failed build is retried. Follow progress with GET /v1/indexes/{versionId}. " +
    "Answers 200 `ready` when the span index is already built. Needs a key (a build costs CPU): an account's gateway " +
    "API key or the service token; publishing a version already queues its build. 401 MISSING_API_KEY / INVALID_API_KEY; 404 NOT_FOUND: no such version; 422 UNPROCESSABLE: the version has no rows.",
  body: z.object({ datanetVersionId: Uuid.describe("The published datanet version to index") }),
  response: {
    200: z
      .object({
        jobId: z.string().describe("Queue job id (stable per version)"),
        datanetVersionId: z.string(),
        status: z.literal("ready"),
      })
      .describe("The span index is already built (and its blob present): nothing to do"),
    202: z.object({
      jobId: z.string().describe("Queue job id (stable per version)"),
      datanetVersionId: z.string(),
      status: z.literal("queued"),
    }),
    400: ErrorBody,
    401: ErrorBody,
    404: ErrorBody,
    422: ErrorBody,
  },
};

export const GetIndexRoute = {
  tags: ["indexes"],
  summary: "Inspect the attribution index of a datanet version",
  description:
    "The version's artifacts (status, blob hashes, token count, stats) and its build job (state and " +
    "progress) while it is queued or running. 404 NOT_FOUND: no such version.",
  params: z.object({ versionId: Uuid }),
  response: {
    200: z.object({
      datanetVersionId: z.string(),
      versionStatus: z.enum(["pending", "registered", "indexed"]).describe("Status of the datanet version"),
      rowCount: z.number().int(),
      artifacts: z.array(ArtifactView),
      job: z
        .object({
          id: z.string(),
          state: z.string().describe("waiting, active, completed, failed, delayed..."),
          progress: z.unknown().describe("{ phase, percent } while building"),
          failedReason: z.string().nullable(),
        })
        .nullable()
        .describe("The build job while the queue still keeps it"),
    }),
    400: ErrorBody,
    404: ErrorBody,
  },
};

export const indexRoutes: FastifyPluginAsync<GuardedRouteOptions> = async (
  root,
  { requireCaller, requireService },
) => {
  const app = root.withTypeProvider<ZodTypeProvider>();

  app.post(
    "/v1/indexes",
    {
      preHandler: requireCaller,
      schema: BuildIndexRoute,
    },
    async (req, reply) => {
      const { datanetVersionId } = req.body;
      const version = await root.db.datanetVersion.findUnique({
        where: { id: datanetVersionId },
        select: { id: true, _count: { select: { rows: true } } },
      });
      if (!version) throw new AppError("NOT_FOUND", `datanet version ${datanetVersionId} does not exist`);
      if (version._count.rows === 0) {
        throw new AppError("UNPROCESSABLE", `datanet version ${datanetVersionId} has no rows to index`);
      }
      const id = jobId("attribution.index", { datanetVersionId });
      const span = await root.db.attributionIndex.findUnique({
        where: { datanetVersionId_kind: { datanetVersionId, kind: "span" } },
      });
      if (span?.status === "ready" && span.blobHash && (await root.attribution.store.has(span.blobHash))) {
        return reply.code(200).send({ jobId: id, datanetVersionId, status: "ready" as const });
      }
      // The job id is derived from the version, so BullMQ ignores a new add while it keeps an
      // old job: re-drive a failed build, and replace a completed one whose index is gone.
      const existing = await root.producer.queue("attribution").getJob(id);
      const state = existing ? await existing.getState() : null;
      if (existing && state === "failed") {
        await existing.retry("failed");
        return reply.code(202).send({ jobId: existing.id!, datanetVersionId, status: "queued" as const });
      }
      // Completed, yet the index is not ready here (row failed, blob gone): replace the job.
      if (existing && state === "completed") await existing.remove();
      const job = await root.producer.enqueue("attribution.index", { datanetVersionId });
      return reply.code(202).send({ jobId: job.id, datanetVersionId, status: "queued" as const });
    },
  );

  app.get(
    "/v1/indexes/:versionId",
    {
      schema: GetIndexRoute,
    },
    async (req) => {
      const { versionId } = req.params;
      const version = await root.db.datanetVersion.findUnique({ where: { id: versionId } });
      if (!version) throw new AppError("NOT_FOUND", `datanet version ${versionId} does not exist`);
      const artifacts = await root.db.attributionIndex.findMany({
        where: { datanetVersionId: versionId },
        orderBy: { kind: "asc" },
      });
      const id = jobId("attribution.index", { datanetVersionId: versionId });
      const job = await root.producer.queue("attribution").getJob(id);
      return {
        datanetVersionId: versionId,
        versionStatus: version.status,
        rowCount: version.rowCount,
        artifacts: artifacts.map((a) => ({
          kind: a.kind,
          status: a.status,
          blobHash: a.blobHash,
          onnxBlobHash: a.onnxBlobHash,
          tokenizer: a.tokenizer,
          tokenCount: a.tokenCount.toString(),
          rowCount: a.rowCount,
          stats: a.stats as Record<string, unknown>,
          error: a.error,
          updatedAt: a.updatedAt.toISOString(),
        })),
        job: job
          ? {
              id,
              state: await job.getState(),
              progress: job.progress,
              failedReason: job.failedReason ?? null,
            }
          : null,
      };
    },
  );

  app.get(
    "/v1/indexes/:versionId/influence",
    {
      schema: {
        tags: ["indexes"],
        summary: "Describe the influence model of a labelled datanet version (for serving it)",
        description:
          "What a server of the version's small model needs besides the ONNX graph: the hashed n-gram feature " +
          "settings (features must be computed exactly like this, with attribution-core's `hashFeatures`, or " +
          "predictions differ from the attributed ones), the class names (class i = `classNames[i]`) and the ONNX " +
          "input/output names. 404 NOT_FOUND: no such version; 409 CONFLICT: no ready influence model (not built " +
          "yet, failed, or the version has fewer than two label classes).",
        params: z.object({ versionId: Uuid }),
        response: {
          200: z.object({
            datanetVersionId: z.string(),
            blobHash: z.string().describe("SHA-256 of the influence model file"),
            onnxBlobHash: z.string().describe("SHA-256 of the ONNX export (GET …/influence/onnx)"),
            features: z
              .object({
                dim: z.number().int(),
                maxNgram: z.number().int().optional(),
                seed: z.number().int().optional(),
                maxChars: z.number().int().optional(),
              })
              .describe("attribution-core FeatureOptions"),
            classNames: z.array(z.string()),
            rowCount: z.number().int(),
            onnx: z.object({ input: z.string(), output: z.string() }),
          }),
          400: ErrorBody,
          404: ErrorBody,
          409: ErrorBody,
        },
      },
    },
    async (req) => {
      const { versionId } = req.params;
      const row = await readyInfluence(root.db, versionId);
      const ctx = root.attribution;
      await ensureLocalArtifact(root.db, ctx, versionId, "influence", row.blobHash);
      const model = await ctx.influenceModel(row.blobHash);
      return {
        datanetVersionId: versionId,
        blobHash: row.blobHash,
        onnxBlobHash: row.onnxBlobHash,
        features: model.features,
        classNames: (model.meta.classNames as string[] | undefined) ?? [],
        rowCount: row.rowCount,
        onnx: { input: ONNX_INPUT, output: ONNX_OUTPUT },
      };
    },
  );

  app.get(
    "/v1/indexes/:versionId/influence/onnx",
    {
      preHandler: requireService,
      schema: {
        security: [{ bearer: [] }],
        tags: ["indexes"],
        summary: "The ONNX export of a version's influence model (application/octet-stream)",
        description:
          "Graph: features float32 [N, D] -> MatMul -> Add -> Softmax -> probabilities float32 [N, C]. The body's " +
          "SHA-256 is `onnxBlobHash` (also in the `x-content-sha256` header): check it. The graph is the paid small " +
          "model itself: only the service token's holders get it (the gateway, which serves and bills it; 401 " +
          "UNAUTHORIZED otherwise, an API key included). Otherwise the same errors as …/influence.",
        params: z.object({ versionId: Uuid }),
      },
    },
    async (req, reply) => {
      const { versionId } = req.params;
      const row = await readyInfluence(root.db, versionId);
      const ctx = root.attribution;
      await ensureLocalOnnx(root.db, ctx, versionId, row.onnxBlobHash);
      const bytes = await ctx.store.get(row.onnxBlobHash);
      return reply.type("application/octet-stream").header("x-content-sha256", row.onnxBlobHash).send(bytes);
    },
  );
};
