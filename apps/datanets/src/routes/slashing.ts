import type { DatanetsConfig } from "@openledger/config";
import type { SlashingProposal } from "@openledger/db";
import { AppError } from "@openledger/errors";
import { safeText } from "@openledger/service-kit";
import type { FastifyPluginAsync } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import { z } from "zod";
import { requireAuth } from "../auth.ts";
import { ErrorBody, IdParams, SlashingProposalView, SlashingStatusView } from "../schemas.ts";
import { executeProposal } from "../slashing.ts";
import { loadDatanet } from "./datanets.ts";

export function proposalView(p: SlashingProposal) {
  return {
    id: p.id,
    datanetId: p.datanetId,
    contributorAddress: p.contributorAddress,
    contributionId: p.contributionId,
    reason: p.reason,
    evidenceHash: p.evidenceHash,
    amountWei: p.amountWei.toFixed(),
    status: p.status,
    disputeDeadline: p.disputeDeadline.toISOString(),
    disputeReason: p.disputeReason,
    executedTxHash: p.executedTxHash,
    createdAt: p.createdAt.toISOString(),
    updatedAt: p.updatedAt.toISOString(),
  };
}

const ProposalParams = z.object({ id: z.uuid().describe("Slashing proposal id") });
const ProposalDetail = SlashingProposalView.extend({
  evidence: z
    .unknown()
    .describe("openledger.datanet.slashing-evidence.v1; evidenceHash = 0x + SHA-256 of its canonical JSON"),
  events: z.array(
    z.object({
      fromStatus: SlashingStatusView.nullable(),
      toStatus: SlashingStatusView,
      actor: z.string(),
      note: z.string().nullable(),
      txHash: z.string().nullable(),
      at: z.string(),
    }),
  ),
});

export const ListSlashingProposalsRoute = {
  tags: ["slashing"],
  summary: "Slashing proposals of a datanet (newest first)",
  params: IdParams,
  querystring: z.object({ status: SlashingStatusView.optional() }),
  response: { 200: z.object({ items: z.array(SlashingProposalView) }), 404: ErrorBody },
};

export const GetSlashingProposalRoute = {
  tags: ["slashing"],
  summary: "A proposal with its evidence and state history",
  params: ProposalParams,
  response: { 200: ProposalDetail, 404: ErrorBody },
};

export const DisputeSlashingProposalRoute = {
  tags: ["slashing"],
  summary: "Dispute a proposal (the accused contributor, before the deadline)",
  params: ProposalParams,
  body: z.object({ reason: safeText().trim().min(1).max(4000).describe("Why the evidence is wrong") }),
  response: { 200: ProposalDetail, 401: ErrorBody, 403: ErrorBody, 404: ErrorBody, 409: ErrorBody },
};

export const ExecuteSlashingProposalRoute = {
  tags: ["slashing"],
  summary: "Execute a proposal on-chain (Staking.slash by the operator key)",
  description:
    "Allowed for an undisputed proposal after its deadline, or an upheld one (409 NOT_EXECUTABLE otherwise). " +
    "Any signed-in user may trigger it; the service's sweeper also does it by itself.",
  params: ProposalParams,
  response: { 200: ProposalDetail, 401: ErrorBody, 404: ErrorBody, 409: ErrorBody, 503: ErrorBody },
};

export const slashingRoutes: FastifyPluginAsync<{ config: DatanetsConfig }> = async (root) => {
  const app = root.withTypeProvider<ZodTypeProvider>();
  const ctx = root.datanets;

  async function detail(id: string) {
    const p = await ctx.db.slashingProposal.findUnique({
      where: { id },
      include: { events: { orderBy: { id: "asc" } } },
    });
    if (!p) throw new AppError("NOT_FOUND", `slashing proposal ${id} not found`);
    return {
      ...proposalView(p),
      evidence: p.evidence,
      events: p.events.map((e) => ({
        fromStatus: e.fromStatus,
        toStatus: e.toStatus,
        actor: e.actor,
        note: e.note,
        txHash: e.txHash,
        at: e.createdAt.toISOString(),
      })),
    };
  }

  /** Moves a proposal from one status to another, recording the event, only if it is still `from`. */
  async function transition(
    p: SlashingProposal,
    to: "disputed" | "upheld" | "dismissed",
    actor: string,
    note: string,
    extra = {},
  ) {
    await ctx.db.$transaction(async (tx) => {
      const moved = await tx.slashingProposal.updateMany({
        where: { id: p.id, status: p.status },
        data: { status: to, ...extra },
      });
      if (moved.count !== 1)
        throw new AppError("STATE_CHANGED", "the proposal changed meanwhile; reload it", { status: 409 });
      await tx.slashingEvent.create({
        data: { proposalId: p.id, fromStatus: p.status, toStatus: to, actor, note },
      });
    });
  }

  async function load(id: string) {
    const p = await ctx.db.slashingProposal.findUnique({ where: { id }, include: { datanet: true } });
    if (!p) throw new AppError("NOT_FOUND", `slashing proposal ${id} not found`);
    return p;
  }

  app.get(
    "/v1/datanets/:id/slashing-proposals",
    {
      schema: ListSlashingProposalsRoute,
    },
    async (request) => {
      const datanet = await loadDatanet(ctx, request.params.id);
      const items = await ctx.db.slashingProposal.findMany({
        where: { datanetId: datanet.id, ...(request.query.status ? { status: request.query.status } : {}) },
        orderBy: [{ createdAt: "desc" }, { id: "desc" }],
        take: 500,
      });
      return { items: items.map(proposalView) };
    },
  );

  app.get(
    "/v1/slashing-proposals/:id",
    {
      schema: GetSlashingProposalRoute,
    },
    async (request) => detail(request.params.id),
  );

  app.post(
    "/v1/slashing-proposals/:id/dispute",
    {
      schema: DisputeSlashingProposalRoute,
    },
    async (request) => {
      const caller = await requireAuth(ctx, root.redis, request);
      const p = await load(request.params.id);
      if (p.contributorAddress !== caller)
        throw new AppError("NOT_ACCUSED", "only the accused contributor can dispute", { status: 403 });
      if (p.status !== "proposed")
        throw new AppError("NOT_DISPUTABLE", `a ${p.status} proposal cannot be disputed`, { status: 409 });
      if (p.disputeDeadline.getTime() <= Date.now()) {
        throw new AppError(
          "DISPUTE_WINDOW_CLOSED",
          `the dispute window closed at ${p.disputeDeadline.toISOString()}`,
          { status: 409 },
        );
      }
      await transition(p, "disputed", caller, request.body.reason, { disputeReason: request.body.reason });
      return detail(p.id);
    },
  );

  app.post(
    "/v1/slashing-proposals/:id/resolve",
    {
      schema: {
        tags: ["slashing"],
        summary: "Resolve a disputed proposal (the datanet owner)",
        description: "`uphold` makes it executable at once; `dismiss` closes it without slashing.",
        params: ProposalParams,
        body: z.object({
          decision: z.enum(["uphold", "dismiss"]),
          note: safeText().trim().max(4000).default(""),
        }),
        response: { 200: ProposalDetail, 401: ErrorBody, 403: ErrorBody, 404: ErrorBody, 409: ErrorBody },
      },
    },
    async (request) => {
      const caller = await requireAuth(ctx, root.redis, request);
      const p = await load(request.params.id);
      if (p.datanet.ownerAddress !== caller)
        throw new AppError("NOT_DATANET_OWNER", "only the datanet owner resolves disputes", { status: 403 });
      if (p.status !== "disputed")
        throw new AppError("NOT_DISPUTED", `a ${p.status} proposal needs no resolution`, { status: 409 });
      await transition(
        p,
        request.body.decision === "uphold" ? "upheld" : "dismissed",
        caller,
        request.body.note,
      );
      return detail(p.id);
    },
  );

  app.post(
    "/v1/slashing-proposals/:id/execute",
    {
      schema: ExecuteSlashingProposalRoute,
    },
    async (request) => {
      const caller = await requireAuth(ctx, root.redis, request);
      await load(request.params.id);
      await executeProposal(ctx, request.params.id, caller);
      return detail(request.params.id);
    },
  );
};
