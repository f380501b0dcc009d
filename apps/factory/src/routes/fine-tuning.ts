import type { FactoryConfig } from "@openledger/config";
import { ApiKeys, toOpenAIError } from "@openledger/service-kit";
import type { FastifyInstance } from "fastify";
import { z } from "zod";
import {
  CreateJobBody,
  type CreateJobInput,
  EventList,
  eventView,
  JobList,
  JobObject,
  jobView,
  ListQuery,
} from "../lib/jobs.ts";
import type {} from "../plugins/factory.ts"; // its `declare module "fastify"` (factory): in every program with this file

const JobParams = z.object({ id: z.string().min(1).max(64) });

/*
 * The routes' schemas, exported (apps/factory/src/api.ts) so @openledger/sdk reads its request and
 * response types from them: a change here breaks the SDK's typecheck, not its users at run time.
 */
export const CreateJobRoute = {
  tags: ["fine-tuning"],
  summary: "Create a fine-tuning job on published datanet versions",
  description:
    "OpenAI's request. `training_file` = one published datanet version id, or several separated by commas; " +
    "`model` = the gateway's base model. The fee (wei per 1,000 trained tokens) is held in the caller's " +
    "InferenceEscrow deposit at once (its upper bound; 402 without enough) and billed on the tokens trained " +
    "when the adapter is registered. Errors: 400 invalid_value, 401, 402 payment_required, 404 " +
    "model_not_found / datanet_version_not_found, 409 datanet_version_not_published / base_model_mismatch / " +
    "duplicate_job (an identical job — same base, datanet versions, hyperparameters and seed — is queued, running or succeeded).",
  body: CreateJobBody,
  response: { 200: JobObject },
  security: [{ bearer: [] }],
};
export const ListJobsRoute = {
  tags: ["fine-tuning"],
  summary: "The caller's fine-tuning jobs, newest first",
  querystring: ListQuery,
  response: { 200: JobList },
  security: [{ bearer: [] }],
};
export const GetJobRoute = {
  tags: ["fine-tuning"],
  summary: "One fine-tuning job, with its progress (step, loss, tokens/s, estimated finish)",
  params: JobParams,
  response: { 200: JobObject },
  security: [{ bearer: [] }],
};
export const JobEventsRoute = {
  tags: ["fine-tuning"],
  summary: "A job's events (messages and per-step metrics), newest first",
  params: JobParams,
  querystring: ListQuery,
  response: { 200: EventList },
  security: [{ bearer: [] }],
};
export const CancelJobRoute = {
  tags: ["fine-tuning"],
  summary: "Cancel a job (its training stops, its escrow hold is released); 409 once it is registering",
  params: JobParams,
  response: { 200: JobObject },
  security: [{ bearer: [] }],
};

/**
 * OpenAI's fine-tuning API (`/v1/fine_tuning/jobs`: create, list, retrieve, events, cancel), so the
 * official `openai` client drives it unchanged; `training_file` names published datanet versions.
 * Authenticated by the builder's own API key (the gateway's keys: an account creates its own by
 * signature); errors in OpenAI's shape (`{error: {message, type, param, code}}`).
 */
export async function fineTuningRoutes(app: FastifyInstance, _opts: { config: FactoryConfig }) {
  const keys = new ApiKeys(app.db);
  app.setErrorHandler((err, request, reply) => {
    const e = toOpenAIError(err);
    if (e.status >= 500) request.log.error({ err }, "request failed");
    return reply.status(e.status).headers(e.headers).type("application/json").send(e.body);
  });
  app.addHook("onRequest", async (request) => {
    request.account = await keys.authenticate(request);
  });

  app.post(
    "/v1/fine_tuning/jobs",
    {
      schema: CreateJobRoute,
    },
    async (request, reply) => {
      const job = await app.factory.jobs.create(
        request.account!,
        request.headers.authorization!,
        request.body as CreateJobInput,
      );
      return reply.status(200).send(jobView(job));
    },
  );

  app.get(
    "/v1/fine_tuning/jobs",
    {
      schema: ListJobsRoute,
    },
    async (request) => {
      const q = request.query as z.infer<typeof ListQuery>;
      const page = await app.factory.jobs.list(request.account!, q.after, q.limit);
      return { object: "list", data: page.data.map(jobView), has_more: page.hasMore };
    },
  );

  app.get(
    "/v1/fine_tuning/jobs/:id",
    {
      schema: GetJobRoute,
    },
    async (request) => {
      const { id } = request.params as z.infer<typeof JobParams>;
      return jobView(await app.factory.jobs.get(request.account!, id));
    },
  );

  app.get(
    "/v1/fine_tuning/jobs/:id/events",
    {
      schema: JobEventsRoute,
    },
    async (request) => {
      const { id } = request.params as z.infer<typeof JobParams>;
      const q = request.query as z.infer<typeof ListQuery>;
      const page = await app.factory.jobs.events(request.account!, id, q.after, q.limit);
      return { object: "list", data: page.data.map(eventView), has_more: page.hasMore };
    },
  );

  app.post(
    "/v1/fine_tuning/jobs/:id/cancel",
    {
      schema: CancelJobRoute,
    },
    async (request) => {
      const { id } = request.params as z.infer<typeof JobParams>;
      return jobView(await app.factory.jobs.cancel(request.account!, id));
    },
  );
}
