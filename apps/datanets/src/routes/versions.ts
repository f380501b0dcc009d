import type { DatanetsConfig } from "@openledger/config";
import type { DatanetVersion } from "@openledger/db";
import { AppError } from "@openledger/errors";
import type { FastifyPluginAsync } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { z } from "zod";
import { requireAuth } from "../auth.ts";
import type { DatanetsContext } from "../context.ts";
import { intentView } from "../intents.ts";
import { ChainIntentView, ErrorBody, IdParams, VersionView } from "../schemas.ts";
import { exportVersion, publishVersion, registerVersion } from "../versions.ts";
import { loadDatanet } from "./datanets.ts";

const VersionParams = IdParams.extend({
  v: z.coerce.number().int().min(1).describe("Version number (1, 2, ...)"),
});
const VersionWithIntent = VersionView.extend({ registration: ChainIntentView.nullable() });

async function versionView(ctx: DatanetsContext, v: DatanetVersion) {
  const intent = await ctx.db.chainIntent.findUnique({ where: { key: `datanet.publish:${v.id}` } });
  return {
    id: v.id,
    datanetId: v.datanetId,
    version: v.version,
    merkleRoot: v.merkleRoot,
    rowCount: v.rowCount,
    contributorCount: v.contributorCount,
    status: v.status,
    chainTxHash: v.chainTxHash,
    createdAt: v.createdAt.toISOString(),
    registration: intentView(intent),
  };
}

export const PublishVersionRoute = {
  tags: ["versions"],
  summary: "Publish the next version (owner)",
  description:
    "Freezes every row accepted since genesis (ordered by row id) into an immutable version, computes its " +
    "merkle root (StandardMerkleTree leaves: uint32 position, uint256 rowId, address contributor, bytes32 " +
    "sha256(text)), registers it with DatanetRegistry.publishVersion through a chain intent, and queues " +
    "`attribution.index`. 409 NO_NEW_ROWS / NO_ACCEPTED_ROWS / VERSION_PENDING / DATANET_NOT_REGISTERED.",
  params: IdParams,
  response: { 201: VersionWithIntent, 401: ErrorBody, 403: ErrorBody, 404: ErrorBody, 409: ErrorBody },
};

export const RegisterVersionRoute = {
  tags: ["versions"],
  summary: "Retry a version's on-chain registration (owner)",
  params: VersionParams,
  response: { 200: VersionWithIntent, 401: ErrorBody, 403: ErrorBody, 404: ErrorBody },
};

export const ListVersionsRoute = {
  tags: ["versions"],
  summary: "List versions (newest first)",
  params: IdParams,
  response: { 200: z.object({ items: z.array(VersionWithIntent) }), 404: ErrorBody },
};

export const GetVersionRoute = {
  tags: ["versions"],
  summary: "Get a version",
  params: VersionParams,
  response: { 200: VersionWithIntent, 404: ErrorBody },
};

export const versionRoutes: FastifyPluginAsync<{ config: DatanetsConfig }> = async (root) => {
  const app = root.withTypeProvider<ZodTypeProvider>();
  const ctx = root.datanets;
  const enqueueIndex = (datanetVersionId: string) =>
    root.producer.enqueue("attribution.index", { datanetVersionId });

  async function loadVersion(datanetId: string, v: number) {
    const version = await ctx.db.datanetVersion.findUnique({
      where: { datanetId_version: { datanetId, version: v } },
    });
    if (!version) throw new AppError("NOT_FOUND", `version ${v} of datanet ${datanetId} not found`);
    return version;
  }

  app.post(
    "/v1/datanets/:id/versions",
    {
      schema: PublishVersionRoute,
    },
    async (request, reply) => {
      const caller = await requireAuth(ctx, root.redis, request);
      const datanet = await loadDatanet(ctx, request.params.id);
      if (datanet.ownerAddress !== caller)
        throw new AppError("NOT_DATANET_OWNER", "only the datanet owner can publish", { status: 403 });
      const versionId = await publishVersion(ctx, datanet);
      await registerVersion(ctx, versionId, enqueueIndex, request.log);
      const v = await ctx.db.datanetVersion.findUniqueOrThrow({ where: { id: versionId } });
      return reply.code(201).send(await versionView(ctx, v));
    },
  );

  app.post(
    "/v1/datanets/:id/versions/:v/register",
    {
      schema: RegisterVersionRoute,
    },
    async (request) => {
      const caller = await requireAuth(ctx, root.redis, request);
      const datanet = await loadDatanet(ctx, request.params.id);
      if (datanet.ownerAddress !== caller)
        throw new AppError("NOT_DATANET_OWNER", "only the datanet owner can do this", { status: 403 });
      const v = await loadVersion(datanet.id, request.params.v);
      await registerVersion(ctx, v.id, enqueueIndex, request.log);
      return versionView(ctx, await loadVersion(datanet.id, request.params.v));
    },
  );

  app.get(
    "/v1/datanets/:id/versions",
    {
      schema: ListVersionsRoute,
    },
    async (request) => {
      const datanet = await loadDatanet(ctx, request.params.id);
      const versions = await ctx.db.datanetVersion.findMany({
        where: { datanetId: datanet.id },
        orderBy: { version: "desc" },
      });
      return { items: await Promise.all(versions.map((v) => versionView(ctx, v))) };
    },
  );

  app.get(
    "/v1/datanets/:id/versions/:v",
    {
      schema: GetVersionRoute,
    },
    async (request) => versionView(ctx, await loadVersion(request.params.id, request.params.v)),
  );

  app.get(
    "/v1/datanets/:id/versions/:v/export",
    {
      schema: {
        tags: ["versions"],
        summary: "Download a version as JSONL (streamed)",
        description:
          "One JSON object per line, in position order: { position, rowId, contributor, text, label?, metadata?, " +
          "contentHash }. The `x-merkle-root` header is the registered root; recompute it from the lines.",
        params: VersionParams,
        response: { 200: z.any().describe("application/x-ndjson stream"), 404: ErrorBody },
      },
    },
    async (request, reply) => {
      const v = await loadVersion(request.params.id, request.params.v);
      reply
        .type("application/x-ndjson; charset=utf-8")
        .header("x-merkle-root", v.merkleRoot)
        .header("content-disposition", `attachment; filename="datanet-${v.datanetId}-v${v.version}.jsonl"`);
      return reply.send(exportVersion(ctx, v.id));
    },
  );
};
