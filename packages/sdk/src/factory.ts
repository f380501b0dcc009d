import type * as api from "@openledger/factory/api";
import type { BodyOf, QueryOf, ReplyOf } from "./contract.ts";
import { enc } from "./datanets.ts";
import { OpenLedgerError } from "./errors.ts";
import { apiKeyAuth, type OnProgress, poll, type ServiceHttp } from "./http.ts";

export type FineTuneInput = BodyOf<typeof api.CreateJobRoute>;
export type FineTuneJob = ReplyOf<typeof api.GetJobRoute>;
export type FineTuneJobList = ReplyOf<typeof api.ListJobsRoute>;
export type FineTuneListQuery = QueryOf<typeof api.ListJobsRoute>;
export type FineTuneEvent = ReplyOf<typeof api.JobEventsRoute>["data"][number];
export type FineTuneEventList = ReplyOf<typeof api.JobEventsRoute>;
export type FineTuneStatus = FineTuneJob["status"];

/** Statuses a job does not leave. */
export const FINE_TUNE_FINISHED: readonly FineTuneStatus[] = ["succeeded", "failed", "cancelled"];

export interface FollowOptions {
  /** Steps trained of the planned total (`stage: "fine-tune"`, unit "steps"). */
  onProgress?: OnProgress;
  /** The whole job at each poll (loss, tokens/s, estimated finish for a bar's labels). */
  onJob?: (job: FineTuneJob) => void;
  /** Each new event (messages and per-step metrics), oldest first. */
  onEvent?: (event: FineTuneEvent) => void;
  timeoutMs?: number;
  intervalMs?: number;
}

/**
 * ModelFactory: fine-tuning jobs in OpenAI's API shape on published datanet versions, authenticated
 * by the account's gateway API key (the official `openai` client's `fineTuning.jobs` works too). The
 * result is a LoRA adapter the gateway serves at once (`job.fine_tuned_model`).
 */
export class FactoryClient {
  constructor(
    private readonly http: ServiceHttp,
    private readonly apiKey: () => string | undefined,
  ) {}

  private auth(): Record<string, string> {
    return apiKeyAuth(this.apiKey, "fine-tuning");
  }

  /** Creates a job: the fee's upper bound is held in your escrow at once (402 without enough). */
  async create(input: FineTuneInput): Promise<FineTuneJob> {
    return this.http.json("POST", "/v1/fine_tuning/jobs", { body: input, headers: this.auth() });
  }
  async list(query: Partial<FineTuneListQuery> = {}): Promise<FineTuneJobList> {
    return this.http.json("GET", "/v1/fine_tuning/jobs", {
      query: query as Record<string, string | number>,
      headers: this.auth(),
    });
  }
  async get(id: string): Promise<FineTuneJob> {
    return this.http.json("GET", `/v1/fine_tuning/jobs/${enc(id)}`, { headers: this.auth() });
  }
  /** Events, newest first (OpenAI's order); `after` = an event id to page back from. */
  async events(id: string, query: Partial<FineTuneListQuery> = {}): Promise<FineTuneEventList> {
    return this.http.json("GET", `/v1/fine_tuning/jobs/${enc(id)}/events`, {
      query: query as Record<string, string | number>,
      headers: this.auth(),
    });
  }
  /** Cancels (idempotent); 409 `job_not_cancellable` once it finished or is registering its adapter. */
  async cancel(id: string): Promise<FineTuneJob> {
    return this.http.json("POST", `/v1/fine_tuning/jobs/${enc(id)}/cancel`, { headers: this.auth() });
  }

  /**
   * Follows a job until it finishes: resolves with the succeeded job (its adapter is served under
   * `fine_tuned_model`); a failed job rejects with FINE_TUNE_FAILED (the job's own error code and
   * message in `details`), a cancelled one with FINE_TUNE_CANCELLED.
   */
  async follow(id: string, opts: FollowOptions = {}): Promise<FineTuneJob> {
    let lastEvent: string | undefined;
    const newEvents = async () => {
      if (!opts.onEvent) return;
      // Newest first: page back (`after` = the oldest of the page) until the last one seen, or the
      // first event, so a burst of more than a page between two polls is delivered whole.
      const fresh: FineTuneEvent[] = [];
      let after: string | undefined;
      for (;;) {
        const page = await this.events(id, { limit: 100, ...(after ? { after } : {}) });
        const seenAt = page.data.findIndex((e) => e.id === lastEvent);
        fresh.push(...(seenAt < 0 ? page.data : page.data.slice(0, seenAt)));
        const oldest = page.data.at(-1);
        if (seenAt >= 0 || !page.has_more || !oldest) break;
        after = oldest.id;
      }
      if (fresh[0]) lastEvent = fresh[0].id;
      for (const e of fresh.reverse()) opts.onEvent(e);
    };
    const job = await poll(
      `fine-tuning job ${id} to finish`,
      async () => {
        const j = await this.get(id);
        await newEvents();
        opts.onJob?.(j);
        const total = j.progress.total_steps;
        opts.onProgress?.({
          stage: `fine-tune:${j.status}`,
          done: j.status === "succeeded" && total !== null ? total : j.progress.step,
          total,
          unit: "steps",
        });
        return FINE_TUNE_FINISHED.includes(j.status) ? j : undefined;
      },
      { timeoutMs: opts.timeoutMs ?? 1_800_000, intervalMs: opts.intervalMs ?? 1000 },
    );
    if (job.status === "failed")
      throw new OpenLedgerError(
        "FINE_TUNE_FAILED",
        `fine-tuning job ${id} failed: ${job.error?.message ?? "no reason given"}`,
        { details: { job: job.id, error: job.error }, source: "factory" },
      );
    if (job.status === "cancelled")
      throw new OpenLedgerError("FINE_TUNE_CANCELLED", `fine-tuning job ${id} was cancelled`, {
        details: { job: job.id },
        source: "factory",
      });
    return job;
  }
}
