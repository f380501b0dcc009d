import multipart from "@fastify/multipart";
import type { DatanetsConfig } from "@openledger/config";
import {
  type ContributionRow,
  contentHashHex,
  DatanetInputError,
  formatFromFilename,
  normalizeText,
  type ParseLimits,
  parseContributionFile,
  parseJsonRows,
} from "@openledger/datanet-core";
import { type Datanet, toWei } from "@openledger/db";
import { AppError } from "@openledger/errors";
import { jobId } from "@openledger/queue";
import { findUnstorableText, storableJson, textPath } from "@openledger/service-kit";
import type { FastifyBaseLogger, FastifyPluginAsync } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { z } from "zod";
import { requireAuth } from "../auth.ts";
import type { DatanetsContext } from "../context.ts";
import {
  ContributionView,
  ErrorBody,
  IdParams,
  JobView,
  Page,
  PageQuery,
  RowStatusView,
} from "../schemas.ts";
import { contributorPosition } from "../stake.ts";
import { loadDatanet } from "./datanets.ts";

const InsertChunk = 5000;

/** A datanet-core input error as an HTTP error naming the line/row/byte (nothing was stored). */
function inputError(e: DatanetInputError): AppError {
  const { code, message, ...where } = e.toJSON();
  return new AppError(code, message, {
    status: e.httpStatus,
    ...(Object.keys(where).length ? { details: where } : {}),
  });
}

/**
 * A file's rows as Postgres can store them: a NUL byte is valid UTF-8 but no `text` column takes it
 * (22021). Refused whole, naming the line, like every other file error. (JSON rows are checked by
 * the body schema.)
 */
function assertStorableRows(rows: ContributionRow[]): void {
  for (const r of rows) {
    const found = findUnstorableText({ text: r.text, label: r.label, metadata: r.metadata });
    if (found) {
      throw new AppError(
        "VALIDATION_FAILED",
        `file line ${r.line ?? r.index + 1}: ${textPath(found.path)} ${found.problem}`,
      );
    }
  }
}

export function contributionView(c: {
  id: string;
  datanetId: string;
  contributorAddress: string;
  source: "rows" | "file";
  fileName: string | null;
  status: "pending" | "validating" | "validated" | "failed";
  rowCount: number;
  acceptedCount: number;
  rejectedCount: number;
  createdAt: Date;
  validatedAt: Date | null;
}) {
  return {
    id: c.id,
    datanetId: c.datanetId,
    contributorAddress: c.contributorAddress,
    source: c.source,
    fileName: c.fileName,
    status: c.status,
    rowCount: c.rowCount,
    acceptedCount: c.acceptedCount,
    rejectedCount: c.rejectedCount,
    createdAt: c.createdAt.toISOString(),
    validatedAt: c.validatedAt?.toISOString() ?? null,
  };
}

/**
 * Only contributors holding the datanet's minimum stake (read on-chain) may contribute. Returns the
 * stake the submission is backed by (active + unbonding): a slashing proposal takes its share of that.
 */
async function checkStake(ctx: DatanetsContext, datanet: Datanet, address: string): Promise<bigint> {
  if (datanet.chainDatanetId === null) {
    throw new AppError(
      "DATANET_NOT_REGISTERED",
      "the datanet is not registered on-chain yet; its owner can retry with POST /v1/datanets/{id}/register",
      { status: 409 },
    );
  }
  const chain = await ctx.chain.require();
  const required = toWei(datanet.minStakeWei);
  const { active, unbonding } = await contributorPosition(chain, address, toWei(datanet.chainDatanetId));
  if (active < required || (required > 0n && active === 0n)) {
    throw new AppError(
      "INSUFFICIENT_STAKE",
      `contributing needs an active contributor stake of at least ${required} wei on datanet ${datanet.chainDatanetId}; you have ${active}`,
      { status: 403, details: { requiredWei: required.toString(), activeWei: active.toString() } },
    );
  }
  return active + unbonding;
}

/**
 * Stores a parsed submission: the daily limits are checked and the contribution and all its rows
 * inserted as pending in ONE transaction (serialized per datanet by an advisory lock, so two
 * concurrent submissions cannot both squeeze under a limit). Then `datanet.validate` is enqueued;
 * if that fails the contribution stays pending and the sweeper enqueues it later.
 */
async function storeSubmission(
  ctx: DatanetsContext,
  enqueue: (contributionId: string) => Promise<unknown>,
  log: FastifyBaseLogger,
  datanet: Datanet,
  address: string,
  rows: ContributionRow[],
  source: "rows" | "file",
  fileName: string | null,
  stakeWei: bigint,
) {
  const contribution = await ctx.db.$transaction(
    async (tx) => {
      await tx.$executeRaw`SELECT pg_advisory_xact_lock(hashtextextended(${`submit:${datanet.id}`}, 0))`;
      const [today] = await tx.$queryRaw<{ mine: bigint; all: bigint }[]>`
        SELECT coalesce(sum(row_count) FILTER (WHERE contributor_address = ${address}), 0)::bigint AS mine,
               coalesce(sum(row_count), 0)::bigint AS all
        FROM contributions
        WHERE datanet_id = ${datanet.id}::uuid
          AND created_at >= (date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')`;
      const mine = Number(today?.mine ?? 0n);
      const all = Number(today?.all ?? 0n);
      if (mine + rows.length > datanet.dailyRowLimitPerContributor) {
        throw new AppError(
          "DAILY_LIMIT_EXCEEDED",
          `your daily limit on this datanet is ${datanet.dailyRowLimitPerContributor} rows; ${mine} used today, this submission has ${rows.length}`,
          {
            status: 429,
            details: {
              limit: datanet.dailyRowLimitPerContributor,
              usedToday: mine,
              remaining: Math.max(0, datanet.dailyRowLimitPerContributor - mine),
            },
          },
        );
      }
      if (all + rows.length > datanet.dailyRowLimit) {
        throw new AppError(
          "DATANET_DAILY_LIMIT_EXCEEDED",
          `the datanet accepts ${datanet.dailyRowLimit} rows per day from all contributors; ${all} submitted today`,
          {
            status: 429,
            details: {
              limit: datanet.dailyRowLimit,
              usedToday: all,
              remaining: Math.max(0, datanet.dailyRowLimit - all),
            },
          },
        );
      }
      await tx.contributor.upsert({ where: { address }, create: { address }, update: {} });
      const c = await tx.contribution.create({
        data: {
          datanetId: datanet.id,
          contributorAddress: address,
          source,
          fileName,
          rowCount: rows.length,
          stakeAtSubmissionWei: stakeWei.toString(),
        },
      });
      // One multi-row INSERT per chunk from parallel arrays (unnest): far cheaper than per-row
      // parameter lists for submissions of thousands of rows.
      for (let i = 0; i < rows.length; i += InsertChunk) {
        const chunk = rows.slice(i, i + InsertChunk);
        await tx.$executeRawUnsafe(
          `INSERT INTO datanet_rows (datanet_id, contribution_id, contributor_address, ordinal, text, label, normalized_hash, metadata)
           SELECT $1::uuid, $2::uuid, $3, o, t, l, h, m::jsonb
           FROM unnest($4::int[], $5::text[], $6::text[], $7::text[], $8::text[]) AS v(o, t, l, h, m)`,
          datanet.id,
          c.id,
          address,
          chunk.map((r) => r.index),
          chunk.map((r) => r.text),
          chunk.map((r) => r.label ?? null),
          chunk.map((r) => contentHashHex(normalizeText(r.text))),
          chunk.map((r) => (r.metadata === undefined ? null : JSON.stringify(r.metadata))),
        );
      }
      return c;
    },
    { timeout: 120_000, maxWait: 10_000 },
  );
  let job: string | null = null;
  try {
    job = (await enqueue(contribution.id)) as string;
  } catch (err) {
    log.warn(
      { err: (err as Error).message, contributionId: contribution.id },
      "enqueue failed; the sweeper will retry",
    );
  }
  return { contribution: contributionView(contribution), jobId: job };
}

const SubmitResponse = z.object({
  contribution: ContributionView,
  jobId: z.string().nullable().describe("The validation job (null if it will be enqueued by the sweeper)"),
});

const RowsBody = z.object({
  rows: storableJson(z.array(z.unknown())).describe(
    "Rows: [{ text: string, label?: string, metadata?: object }]; the whole array is accepted or refused",
  ),
});

export const ContributeRowsRoute = {
  tags: ["contributions"],
  summary: "Contribute JSON rows",
  description:
    "Needs a session and the datanet's minimum contributor stake (403 INSUFFICIENT_STAKE). All rows are " +
    "checked first (400 naming the row: INVALID_ROW, INVALID_UTF8, ...); then daily limits (429 " +
    "DAILY_LIMIT_EXCEEDED / DATANET_DAILY_LIMIT_EXCEEDED); then every row is stored as pending in one " +
    "transaction and a `datanet.validate` job is queued. Answers 202.",
  params: IdParams,
  body: RowsBody,
  response: {
    202: SubmitResponse,
    400: ErrorBody,
    401: ErrorBody,
    403: ErrorBody,
    404: ErrorBody,
    409: ErrorBody,
    413: ErrorBody,
    429: ErrorBody,
  },
};

export const ContributeFileRoute = {
  tags: ["contributions"],
  summary: "Contribute a file (multipart field `file`: .txt, .md, .jsonl, .csv)",
  description:
    "Streamed and parsed as it arrives (strict UTF-8; txt/md: one row per paragraph; jsonl: one " +
    "{text,label?,metadata?} per line; csv: a `text` column). Any error refuses the whole file and names the " +
    "line (and byte for INVALID_UTF8): 400 MALFORMED_JSONL / MALFORMED_CSV / INVALID_UTF8 / ..., 413 " +
    "FILE_TOO_LARGE, 415 UNSUPPORTED_FORMAT. Nothing of a refused file is stored.",
  params: IdParams,
  consumes: ["multipart/form-data"],
  response: {
    202: SubmitResponse,
    400: ErrorBody,
    401: ErrorBody,
    403: ErrorBody,
    404: ErrorBody,
    409: ErrorBody,
    413: ErrorBody,
    415: ErrorBody,
    429: ErrorBody,
  },
};

export const GetContributionRoute = {
  tags: ["contributions"],
  summary: "A contribution: status, counts and validation job progress",
  params: z.object({ id: z.uuid().describe("Contribution id") }),
  response: {
    200: z.object({
      contribution: ContributionView,
      job: JobView.describe("The datanet.validate job (null once it is no longer kept)"),
      slashingProposalIds: z.array(z.string()),
    }),
    404: ErrorBody,
  },
};

export const ContributionRowsRoute = {
  tags: ["contributions"],
  summary: "Per-row outcomes of a contribution",
  description:
    "In submission order. Rejected rows carry the reason and, for duplicates, the row they duplicate.",
  params: z.object({ id: z.uuid().describe("Contribution id") }),
  querystring: PageQuery.extend({
    status: RowStatusView.optional().describe("Only rows with this status"),
  }),
  response: {
    200: Page(
      z.object({
        id: z.string(),
        ordinal: z.number().int(),
        text: z.string(),
        label: z.string().nullable(),
        status: RowStatusView,
        rejectReason: z
          .string()
          .nullable()
          .describe("too_short, exact_duplicate, near_duplicate, low_quality"),
        duplicateOfRowId: z.string().nullable(),
        similarityPpm: z.number().int().nullable(),
        qualityScore: z.number().int().nullable(),
        contentHash: z.string().describe("SHA-256 of the normalized text"),
      }),
    ),
    404: ErrorBody,
  },
};

export const contributionRoutes: FastifyPluginAsync<{ config: DatanetsConfig }> = async (
  root,
  { config },
) => {
  const app = root.withTypeProvider<ZodTypeProvider>();
  const ctx = root.datanets;
  const limits: Partial<ParseLimits> = { maxFileBytes: config.DATANETS_MAX_FILE_BYTES };
  // +1 byte: the parser must see the excess to answer FILE_TOO_LARGE (multipart would truncate silently).
  await root.register(multipart, {
    limits: { fileSize: config.DATANETS_MAX_FILE_BYTES + 1, files: 1, fields: 5 },
  });
  const enqueue = async (contributionId: string) =>
    (await root.producer.enqueue("datanet.validate", { contributionId })).id;

  app.post(
    "/v1/datanets/:id/contributions",
    {
      schema: ContributeRowsRoute,
    },
    async (request, reply) => {
      const address = await requireAuth(ctx, root.redis, request);
      const datanet = await loadDatanet(ctx, request.params.id);
      const stakeWei = await checkStake(ctx, datanet, address);
      let rows: ContributionRow[];
      try {
        rows = parseJsonRows(request.body.rows, { limits });
      } catch (e) {
        if (e instanceof DatanetInputError) throw inputError(e);
        throw e;
      }
      const out = await storeSubmission(
        ctx,
        enqueue,
        request.log,
        datanet,
        address,
        rows,
        "rows",
        null,
        stakeWei,
      );
      return reply.code(202).send(out);
    },
  );

  app.post(
    "/v1/datanets/:id/contributions/file",
    {
      schema: ContributeFileRoute,
    },
    async (request, reply) => {
      const address = await requireAuth(ctx, root.redis, request);
      const datanet = await loadDatanet(ctx, request.params.id);
      const stakeWei = await checkStake(ctx, datanet, address);
      if (!request.isMultipart()) {
        throw new AppError("MULTIPART_REQUIRED", "send the file as multipart/form-data, field `file`", {
          status: 415,
        });
      }
      const file = await request.file();
      if (!file)
        throw new AppError("FILE_REQUIRED", "no file in the request (field `file`)", { status: 400 });
      let rows: ContributionRow[];
      try {
        const format = formatFromFilename(file.filename);
        rows = await parseContributionFile(file.file, format, { limits });
        if (file.file.truncated) {
          throw new DatanetInputError(
            "FILE_TOO_LARGE",
            `the file is larger than ${config.DATANETS_MAX_FILE_BYTES} bytes`,
          );
        }
        assertStorableRows(rows);
      } catch (e) {
        file.file.resume(); // drain what is left so the connection can answer
        if (e instanceof DatanetInputError) throw inputError(e);
        throw e;
      }
      const out = await storeSubmission(
        ctx,
        enqueue,
        request.log,
        datanet,
        address,
        rows,
        "file",
        file.filename,
        stakeWei,
      );
      return reply.code(202).send(out);
    },
  );

  app.get(
    "/v1/contributions/:id",
    {
      schema: GetContributionRoute,
    },
    async (request) => {
      const c = await ctx.db.contribution.findUnique({
        where: { id: request.params.id },
        include: { slashingProposals: { select: { id: true } } },
      });
      if (!c) throw new AppError("NOT_FOUND", `contribution ${request.params.id} not found`);
      const id = jobId("datanet.validate", { contributionId: c.id });
      const job = await root.producer.queue("datanets").getJob(id);
      return {
        contribution: contributionView(c),
        job: job
          ? {
              id,
              state: await job.getState(),
              progress: job.progress ?? null,
              attemptsMade: job.attemptsMade,
              failedReason: job.failedReason ?? null,
            }
          : null,
        slashingProposalIds: c.slashingProposals.map((p) => p.id),
      };
    },
  );

  app.get(
    "/v1/contributions/:id/rows",
    {
      schema: ContributionRowsRoute,
    },
    async (request) => {
      const { limit, cursor, status } = request.query;
      const c = await ctx.db.contribution.findUnique({ where: { id: request.params.id } });
      if (!c) throw new AppError("NOT_FOUND", `contribution ${request.params.id} not found`);
      if (cursor !== undefined && !/^\d{1,9}$/.test(cursor)) {
        throw new AppError("BAD_CURSOR", "cursor: the `nextCursor` of the previous page (a row ordinal)", {
          status: 400,
        });
      }
      const after = cursor === undefined ? -1 : Number(cursor);
      const rows = await ctx.db.datanetRow.findMany({
        where: { contributionId: c.id, ordinal: { gt: after }, ...(status ? { status } : {}) },
        orderBy: { ordinal: "asc" },
        take: limit + 1,
      });
      const page = rows.slice(0, limit);
      return {
        items: page.map((r) => ({
          id: r.id.toString(),
          ordinal: r.ordinal,
          text: r.text,
          label: r.label,
          status: r.status,
          rejectReason: r.rejectReason,
          duplicateOfRowId: r.duplicateOfRowId?.toString() ?? null,
          similarityPpm: r.similarityPpm,
          qualityScore: r.qualityScore,
          contentHash: r.normalizedHash,
        })),
        nextCursor: rows.length > limit ? String(page[page.length - 1]!.ordinal) : null,
      };
    },
  );
};
