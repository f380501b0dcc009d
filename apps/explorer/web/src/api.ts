// The one module through which the pages read the services: their public APIs, reached through the
// explorer's own server (/api/<service>/v1/...), so the pages and the APIs share one origin.
// The types mirror the services' zod response schemas (see each service's /docs). When the typed SDK
// (@openledger/sdk) is available in the browser bundle, these functions become thin calls into it.

export type Service = "datanets" | "attribution" | "gateway" | "settlement";

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

async function request<T>(service: Service, path: string, init?: RequestInit): Promise<T> {
  const res = await fetch(`/api/${service}${path}`, {
    ...init,
    headers: {
      accept: "application/json",
      ...(init?.body ? { "content-type": "application/json" } : {}),
      ...(init?.headers as Record<string, string> | undefined),
    },
  });
  const text = await res.text();
  let body: unknown = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (!res.ok) {
    const err = (body as { error?: { code?: string; message?: string } } | null)?.error;
    throw new ApiError(
      res.status,
      err?.code ?? `HTTP_${res.status}`,
      err?.message ?? `${service} answered ${res.status}`,
    );
  }
  return body as T;
}

const get = <T>(service: Service, path: string) => request<T>(service, path);
const q = (params: Record<string, string | number | undefined>) => {
  const s = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined) s.set(k, String(v));
  const out = s.toString();
  return out ? `?${out}` : "";
};

/** Wei amounts travel as decimal strings (exact); the pages turn them into bigint. */
export type Wei = string;

// ---- explorer ---------------------------------------------------------------------------------

export interface ExplorerInfo {
  services: Service[];
  chain: { chainId: number; contracts: Record<string, string> } | null;
}
export const explorerInfo = async (): Promise<ExplorerInfo> => {
  const res = await fetch("/api/config");
  if (!res.ok) throw new ApiError(res.status, "CONFIG", "the explorer's configuration could not be read");
  return (await res.json()) as ExplorerInfo;
};

// ---- datanets -----------------------------------------------------------------------------------

export interface DatanetStats {
  datanets: number;
  contributors: number;
  contributions: number;
  rowsAccepted: number;
  rowsRejected: number;
  rowsPending: number;
  versions: number;
  slashingProposals: number;
}
export interface Datanet {
  id: string;
  slug: string;
  name: string;
  description: string;
  tags: string[];
  type: string;
  license: string;
  ownerAddress: string;
  minStakeWei: Wei;
  chainDatanetId: string | null;
  registration: { status: string; txHash: string | null } | null;
  createdAt: string;
}
export interface Page<T> {
  items: T[];
  nextCursor: string | null;
}
export interface DatanetVersion {
  id: string;
  datanetId: string;
  version: number;
  merkleRoot: string;
  rowCount: number;
  contributorCount: number;
  status: "pending" | "registered" | "indexed";
  chainTxHash: string | null;
  createdAt: string;
}
export interface Contribution {
  id: string;
  datanetId: string;
  contributorAddress: string;
  source: "rows" | "file";
  fileName: string | null;
  status: "pending" | "validating" | "validated" | "failed";
  rowCount: number;
  acceptedCount: number;
  rejectedCount: number;
  createdAt: string;
  validatedAt: string | null;
}
export interface ContributionRow {
  id: string;
  ordinal: number;
  text: string;
  label: string | null;
  status: "pending" | "accepted" | "rejected";
  rejectReason: string | null;
  duplicateOfRowId: string | null;
  similarityPpm: number | null;
  qualityScore: number | null;
}
export interface SlashingProposal {
  id: string;
  datanetId: string;
  contributorAddress: string;
  contributionId: string | null;
  reason: string;
  evidenceHash: string;
  amountWei: Wei;
  status: "proposed" | "disputed" | "upheld" | "dismissed" | "executed";
  disputeDeadline: string;
  disputeReason: string | null;
  executedTxHash: string | null;
  createdAt: string;
}
export interface SlashingProposalDetail extends SlashingProposal {
  evidence: unknown;
  events: {
    fromStatus: string | null;
    toStatus: string;
    actor: string;
    note: string | null;
    txHash: string | null;
    at: string;
  }[];
}
export interface LeaderboardEntry {
  rank: number;
  address: string;
  rowsAccepted: number;
  rowsSubmitted: number;
  acceptanceRatePpm: number | null;
}
export interface ContributorSummary {
  address: string;
  contributions: number;
  rowsSubmitted: number;
  rowsAccepted: number;
  rowsRejected: number;
  rowsPending: number;
  acceptanceRatePpm: number | null;
  stakes: { datanetId: string; chainDatanetId: string; activeStakeWei: Wei | null }[];
  slashes: SlashingProposal[];
}

export const datanets = {
  stats: () => get<DatanetStats>("datanets", "/v1/stats"),
  list: (limit = 50) => get<Page<Datanet>>("datanets", `/v1/datanets${q({ limit })}`),
  one: (id: string) => get<Datanet>("datanets", `/v1/datanets/${id}`),
  versions: (id: string) => get<{ items: DatanetVersion[] }>("datanets", `/v1/datanets/${id}/versions`),
  contributions: (id: string, limit = 200) =>
    get<Page<Contribution>>("datanets", `/v1/datanets/${id}/contributions${q({ limit })}`),
  rows: (contributionId: string, status?: ContributionRow["status"]) =>
    get<Page<ContributionRow>>(
      "datanets",
      `/v1/contributions/${contributionId}/rows${q({ limit: 200, status })}`,
    ),
  slashing: (id: string) =>
    get<{ items: SlashingProposal[] }>("datanets", `/v1/datanets/${id}/slashing-proposals`),
  proposal: (id: string) => get<SlashingProposalDetail>("datanets", `/v1/slashing-proposals/${id}`),
  leaderboard: (id: string) =>
    get<{ items: LeaderboardEntry[] }>("datanets", `/v1/datanets/${id}/leaderboard`),
  contributor: (address: string) => get<ContributorSummary>("datanets", `/v1/contributors/${address}`),
};

// ---- attribution -------------------------------------------------------------------------------

export interface TraceRow {
  rowId: string;
  contributorAddress: string;
  /** The row's text (its first 1,000 characters). */
  text: string;
  label: string | null;
}
export interface TraceSpan {
  /** Character offsets into `output` (UTF-16 code units, as JavaScript strings index). */
  start: number;
  end: number;
  /** The signed token offsets. */
  tokenStart: number;
  tokenEnd: number;
  text: string;
  count: number;
  rows: TraceRow[];
  rowsTruncated: boolean;
  contributors: string[];
}
export interface InfluenceRow extends TraceRow {
  /** Influence on the answered class, fixed point (as in the signed result). */
  influence: string;
}
export interface InferenceTrace {
  inferenceId: string;
  modelId: string;
  method: "span" | "influence" | null;
  prompt: string;
  output: string;
  consensusHash: string | null;
  consensusCount: number;
  validators: string[];
  weights: { contributorAddress: string; ppm: number }[];
  unattributed: string | null;
  spans: TraceSpan[];
  influence: {
    labelName: string;
    probabilitiesPpm: number[];
    classNames: string[];
    topHelpful: InfluenceRow[];
    topHarmful: InfluenceRow[];
  } | null;
  /** Answers of a factory-trained adapter: the rows whose LoRA gradients explain the unquoted tokens. */
  loraInfluence?: {
    estimator: string | null;
    coveredTokens: number;
    uncoveredTokens: number;
    unattributed: string | null;
    weights: { contributorAddress: string; ppm: number }[];
    topHelpful: InfluenceRow[];
    topHarmful: InfluenceRow[];
  } | null;
}
export interface AttributeResult {
  datanetVersionId: string;
  tokenizer: string;
  textTokens: number;
  spans: {
    start: number;
    end: number;
    text: string;
    count: number;
    rows: { rowId: string; contributionId: string; contributorAddress: string; excerpt: string }[];
    rowsTruncated: boolean;
  }[];
  contributors: { contributorAddress: string; ppm: number }[];
}

export const attribution = {
  trace: (inferenceId: string) => get<InferenceTrace>("attribution", `/v1/inferences/${inferenceId}/trace`),
  /** Costs CPU, so the attribution service wants the user's own gateway API key (`sk-…`). */
  attribute: (text: string, datanetVersionId: string, apiKey: string) =>
    request<AttributeResult>("attribution", "/v1/attribute", {
      method: "POST",
      body: JSON.stringify({ text, datanetVersionId }),
      headers: { authorization: `Bearer ${apiKey}` },
    }),
};

// ---- gateway -------------------------------------------------------------------------------------

export interface CatalogModel {
  id: string;
  kind: "base" | "adapter" | "small_model";
  owner: string;
  status: string;
  baseModel: string | null;
  contentHash: string;
  pricePer1kInputWei: Wei;
  pricePer1kOutputWei: Wei;
  chainModelId: string | null;
  chain: { status: string; txHash: string | null } | null;
  training: {
    datanetVersionId: string;
    datanetId: string;
    datanetSlug: string;
    datanetName: string;
    version: number;
    merkleRoot: string;
    rowCount: number;
  }[];
  /** The fine-tuning job that produced it, when the factory service records one. */
  fineTune?: { jobId: string; status: string; createdAt: string } | null;
  createdAt: string;
}
export const gateway = {
  catalog: () => get<{ items: CatalogModel[] }>("gateway", "/v1/catalog"),
  model: (id: string) => get<CatalogModel>("gateway", `/v1/catalog/${encodeURIComponent(id)}`),
};

// ---- settlement ----------------------------------------------------------------------------------

export interface SettlementStats {
  settlements: number;
  feesWei: Wei;
  epochs: number;
  confirmedEpochs: number;
  accounts: number;
}
export interface Epoch {
  id: number;
  status: string;
  merkleRoot: string | null;
  totalWei: Wei;
  cumulativeTotalWei: Wei;
  settlementCount: number;
  recipientCount: number;
  postTxHash: string | null;
  closedAt: string | null;
  confirmedAt: string | null;
  activatesAt: string | null;
  finalAt: string | null;
  revokedAt: string | null;
}
export interface SettlementListItem {
  inferenceId: string;
  modelId: string;
  consumer: string;
  feeWei: Wei;
  epochId: number | null;
  createdAt: string;
}
export interface InferenceSettlement {
  inferenceId: string;
  feeWei: Wei;
  splitBps: Record<string, unknown>;
  epochId: number | null;
  entries: { account: string; amountWei: Wei }[];
}
export type Role = "treasury" | "validator" | "model_owner" | "contributor";
export interface EpochFlows {
  epochId: number;
  feesWei: Wei;
  settlementCount: number;
  roles: Record<Role, Wei>;
  recipients: {
    address: string;
    roles: Partial<Record<Role, Wei>>;
    earnedWei: Wei;
    cumulativeWei: Wei | null;
    claimedWei: Wei | null;
    pendingWei: Wei | null;
  }[];
}
export interface Earnings {
  address: string;
  totalWei: Wei;
  byRole: { role: Role; amountWei: Wei; inferences: number }[];
  bySource: { role: Role; modelId: string; amountWei: Wei; inferences: number }[];
}
export interface ModelUsage {
  modelId: string;
  inferences: number;
  inputTokens: number;
  outputTokens: number;
  feesWei: Wei;
  roles: Record<Role, Wei>;
  lastAt: string | null;
}
export interface ClaimInfo {
  address: string;
  epoch: number | null;
  cumulativeAmount: Wei;
  claimed: Wei;
  claimable: Wei;
  active: boolean;
  proof: string[];
  distributor: string;
  chainId: number;
  next: { epoch: number; activatesAt: string; cumulativeAmount: Wei } | null;
}

export const settlement = {
  stats: () => get<SettlementStats>("settlement", "/v1/stats"),
  recent: (params: { limit?: number; modelId?: string } = {}) =>
    get<{ items: SettlementListItem[] }>(
      "settlement",
      `/v1/settlements${q({ limit: params.limit ?? 20, modelId: params.modelId })}`,
    ),
  epochs: () => get<{ epochs: Epoch[] }>("settlement", "/v1/epochs"),
  epoch: (id: number) => get<Epoch>("settlement", `/v1/epochs/${id}`),
  flows: (id: number) => get<EpochFlows>("settlement", `/v1/epochs/${id}/flows`),
  ofInference: (id: string) => get<InferenceSettlement>("settlement", `/v1/inferences/${id}/settlement`),
  earnings: (address: string) => get<Earnings>("settlement", `/v1/accounts/${address}/earnings`),
  claim: (address: string) => get<ClaimInfo>("settlement", `/v1/accounts/${address}/claim`),
  modelUsage: (id: string) => get<ModelUsage>("settlement", `/v1/models/${encodeURIComponent(id)}/usage`),
  datanetEarnings: (id: string) =>
    get<{ datanetId: string; items: { address: string; earnedWei: Wei; inferences: number }[] }>(
      "settlement",
      `/v1/datanets/${id}/earnings`,
    ),
};
