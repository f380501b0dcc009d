import { openAsBlob } from "node:fs";
import { stat } from "node:fs/promises";
import { basename } from "node:path";
import type * as api from "@openledger/datanets/api";
import type { BodyOf, QueryOf, ReplyOf } from "./contract.ts";
import { OpenLedgerError } from "./errors.ts";
import { type OnProgress, poll, progressBody, type ServiceHttp } from "./http.ts";

export type Datanet = ReplyOf<typeof api.GetDatanetRoute>;
export type DatanetInput = BodyOf<typeof api.CreateDatanetRoute>;
export type DatanetUpdate = BodyOf<typeof api.UpdateDatanetRoute>;
export type DatanetPage = ReplyOf<typeof api.ListDatanetsRoute>;
export type DatanetQuery = QueryOf<typeof api.ListDatanetsRoute>;
export type Submission = ReplyOf<typeof api.ContributeRowsRoute, 202>;
export type ContributionRowInput = { text: string; label?: string; metadata?: Record<string, unknown> };
export type ContributionStatus = ReplyOf<typeof api.GetContributionRoute>;
export type ContributionRowsPage = ReplyOf<typeof api.ContributionRowsRoute>;
export type ContributionRowsQuery = QueryOf<typeof api.ContributionRowsRoute>;
export type Version = ReplyOf<typeof api.GetVersionRoute>;
export type SlashingProposal = ReplyOf<typeof api.GetSlashingProposalRoute>;
export type ContributorSummary = ReplyOf<typeof api.ContributorRoute>;
export type SignInNonce = ReplyOf<typeof api.AuthNonceRoute>;
export type SignInSession = ReplyOf<typeof api.AuthVerifyRoute>;

/** A file to contribute: a path on disk (streamed from it), or bytes with a name (the name's extension is the format). */
export type ContributionFile = string | { name: string; data: Blob | Uint8Array | string };

/** The datanets service: sign-in, datanets, contributions (rows or streamed files), versions, slashing. */
export class DatanetsClient {
  constructor(private readonly http: ServiceHttp) {}

  // ---- Sign-In with Ethereum (the SDK's `signIn` signs; these are the two HTTP steps)
  nonce(): Promise<SignInNonce> {
    return this.http.json("POST", "/v1/auth/nonce");
  }
  verify(body: BodyOf<typeof api.AuthVerifyRoute>): Promise<SignInSession> {
    return this.http.json("POST", "/v1/auth/verify", { body });
  }
  session(): Promise<ReplyOf<typeof api.AuthSessionRoute>> {
    return this.http.json("GET", "/v1/auth/session");
  }
  async logout(): Promise<void> {
    await this.http.request("POST", "/v1/auth/logout", { expect: [204] });
  }

  // ---- datanets
  create(input: DatanetInput): Promise<Datanet> {
    return this.http.json("POST", "/v1/datanets", { body: input, expect: [201] });
  }
  get(id: string): Promise<Datanet> {
    return this.http.json("GET", `/v1/datanets/${enc(id)}`);
  }
  list(query: Partial<DatanetQuery> = {}): Promise<DatanetPage> {
    return this.http.json("GET", "/v1/datanets", { query: query as Record<string, string | number> });
  }
  update(id: string, patch: DatanetUpdate): Promise<Datanet> {
    return this.http.json("PATCH", `/v1/datanets/${enc(id)}`, { body: patch });
  }
  /** Resumes the on-chain registration (owner); the same signed transaction, never a second one. */
  retryRegistration(id: string): Promise<Datanet> {
    return this.http.json("POST", `/v1/datanets/${enc(id)}/register`);
  }
  /** Waits until the datanet has its DatanetRegistry id (retrying the registration as the owner when `retry`). */
  waitRegistered(
    id: string,
    opts: { retry?: boolean; timeoutMs?: number } = {},
  ): Promise<Datanet & { chainDatanetId: string }> {
    return poll(
      `datanet ${id} to be registered on-chain`,
      async () => {
        const d = opts.retry ? await this.retryRegistration(id) : await this.get(id);
        return d.chainDatanetId !== null ? (d as Datanet & { chainDatanetId: string }) : undefined;
      },
      { timeoutMs: opts.timeoutMs ?? 60_000, intervalMs: 500 },
    );
  }

  // ---- contributions
  contributeRows(datanetId: string, rows: readonly ContributionRowInput[]): Promise<Submission> {
    return this.http.json("POST", `/v1/datanets/${enc(datanetId)}/contributions`, {
      body: { rows },
      expect: [202],
    });
  }

  /**
   * Contributes a file (.txt, .md, .jsonl, .csv), streamed: a path is read from disk as it is sent,
   * never loaded whole; `onProgress` gets the bytes sent.
   */
  async contributeFile(
    datanetId: string,
    file: ContributionFile,
    opts: { onProgress?: OnProgress; signal?: AbortSignal } = {},
  ): Promise<Submission> {
    let blob: Blob;
    let name: string;
    if (typeof file === "string") {
      const s = await stat(file).catch(() => null);
      if (!s?.isFile()) throw new OpenLedgerError("FILE_NOT_FOUND", `no file at ${file}`);
      blob = await openAsBlob(file);
      name = basename(file);
    } else {
      name = file.name;
      blob =
        file.data instanceof Blob
          ? file.data
          : new Blob([typeof file.data === "string" ? file.data : Buffer.from(file.data)]);
    }
    const form = new FormData();
    form.append("file", blob, name);
    const { body, contentType } = progressBody(form, blob.size, opts.onProgress);
    return this.http.json("POST", `/v1/datanets/${enc(datanetId)}/contributions/file`, {
      body,
      headers: { "content-type": contentType },
      expect: [202],
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
  }

  contribution(id: string): Promise<ContributionStatus> {
    return this.http.json("GET", `/v1/contributions/${enc(id)}`);
  }
  rows(contributionId: string, query: Partial<ContributionRowsQuery> = {}): Promise<ContributionRowsPage> {
    return this.http.json("GET", `/v1/contributions/${enc(contributionId)}/rows`, {
      query: query as Record<string, string | number>,
    });
  }
  /** Every row outcome of a contribution (all pages). */
  async allRows(contributionId: string): Promise<ContributionRowsPage["items"]> {
    const out: ContributionRowsPage["items"] = [];
    let cursor: string | undefined;
    do {
      const page = await this.rows(contributionId, { limit: 200, ...(cursor ? { cursor } : {}) });
      out.push(...page.items);
      cursor = page.nextCursor ?? undefined;
    } while (cursor);
    return out;
  }

  /** Waits until the validator worker has judged every row; `onProgress` gets rows processed. */
  waitValidated(
    contributionId: string,
    opts: { onProgress?: OnProgress; timeoutMs?: number } = {},
  ): Promise<ContributionStatus> {
    return poll(
      `contribution ${contributionId} to be validated`,
      async () => {
        const s = await this.contribution(contributionId);
        const p = s.job?.progress as { processed?: number; total?: number } | null | undefined;
        const total = p?.total ?? s.contribution.rowCount;
        if (s.contribution.status === "failed")
          throw new OpenLedgerError(
            "VALIDATION_JOB_FAILED",
            `contribution ${contributionId} could not be validated: ${s.job?.failedReason ?? "unknown reason"}`,
          );
        const done = s.contribution.status === "validated" ? total : (p?.processed ?? 0);
        opts.onProgress?.({ stage: "validate", done, total, unit: "rows" });
        return s.contribution.status === "validated" ? s : undefined;
      },
      { timeoutMs: opts.timeoutMs ?? 300_000 },
    );
  }

  // ---- versions
  publish(datanetId: string): Promise<Version> {
    return this.http.json("POST", `/v1/datanets/${enc(datanetId)}/versions`, { expect: [201] });
  }
  versions(datanetId: string): Promise<ReplyOf<typeof api.ListVersionsRoute>> {
    return this.http.json("GET", `/v1/datanets/${enc(datanetId)}/versions`);
  }
  version(datanetId: string, v: number): Promise<Version> {
    return this.http.json("GET", `/v1/datanets/${enc(datanetId)}/versions/${v}`);
  }
  /** Waits until a published version's root is registered on chain (status registered or indexed). */
  waitVersionRegistered(datanetId: string, v: number, opts: { timeoutMs?: number } = {}): Promise<Version> {
    return poll(
      `version ${v} of datanet ${datanetId} to be registered on-chain`,
      async () => {
        const version = await this.version(datanetId, v);
        return version.status === "pending" ? undefined : version;
      },
      { timeoutMs: opts.timeoutMs ?? 60_000 },
    );
  }

  // ---- contributors and slashing
  me(): Promise<ContributorSummary> {
    return this.http.json("GET", "/v1/me");
  }
  contributor(address: string): Promise<ContributorSummary> {
    return this.http.json("GET", `/v1/contributors/${enc(address)}`);
  }
  slashingProposals(datanetId: string): Promise<ReplyOf<typeof api.ListSlashingProposalsRoute>> {
    return this.http.json("GET", `/v1/datanets/${enc(datanetId)}/slashing-proposals`);
  }
  slashingProposal(id: string): Promise<SlashingProposal> {
    return this.http.json("GET", `/v1/slashing-proposals/${enc(id)}`);
  }
  dispute(id: string, reason: string): Promise<SlashingProposal> {
    return this.http.json("POST", `/v1/slashing-proposals/${enc(id)}/dispute`, { body: { reason } });
  }
}

export const enc = encodeURIComponent;
