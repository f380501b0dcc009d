import type * as api from "@openledger/settlement/api";
import type { ReplyOf } from "./contract.ts";
import { enc } from "./datanets.ts";
import { OpenLedgerError } from "./errors.ts";
import { poll, type ServiceHttp } from "./http.ts";

export type ClaimInfo = ReplyOf<typeof api.ClaimRoute>;
export type Ledger = ReplyOf<typeof api.LedgerRoute>;
export type InferenceSettlement = ReplyOf<typeof api.InferenceSettlementRoute>;
export type Epoch = ReplyOf<typeof api.GetEpochRoute>;
export type Reconciliation = ReplyOf<typeof api.ReconciliationRoute>;
export type SettlementList = ReplyOf<typeof api.ListSettlementsRoute>;

/** Earnings of an address by role, from the ledger (wei, as bigint). */
export interface Earnings {
  address: string;
  /** Per ledger account (e.g. contributor:0x…, model_owner:0x…, validator:0x…). */
  accounts: { account: string; role: string; balanceWei: bigint }[];
  /** Sum over every role but `consumer` (what the address earned). */
  totalWei: bigint;
}

/** The settlement service: claims with proofs, the ledger, inference settlements, epochs. */
export class SettlementClient {
  constructor(
    private readonly http: ServiceHttp,
    private readonly adminToken?: () => string | undefined,
  ) {}

  claim(address: string): Promise<ClaimInfo> {
    return this.http.json("GET", `/v1/accounts/${enc(address)}/claim`);
  }
  ledger(address: string): Promise<Ledger> {
    return this.http.json("GET", `/v1/accounts/${enc(address)}/ledger`);
  }
  async earnings(address: string): Promise<Earnings> {
    const l = await this.ledger(address);
    const accounts = l.accounts.map((a) => ({
      account: a.account,
      role: a.account.split(":")[0] ?? a.account,
      balanceWei: BigInt(a.balanceWei),
    }));
    return {
      address: l.address,
      accounts,
      totalWei: accounts.filter((a) => a.role !== "consumer").reduce((t, a) => t + a.balanceWei, 0n),
    };
  }
  /** Recent settlements, newest first (optionally of one model). */
  settlements(query: { limit?: number; modelId?: string } = {}): Promise<SettlementList> {
    return this.http.json("GET", "/v1/settlements", { query });
  }
  inference(inferenceId: string): Promise<InferenceSettlement> {
    return this.http.json("GET", `/v1/inferences/${enc(inferenceId)}/settlement`);
  }
  waitSettled(inferenceId: string, opts: { timeoutMs?: number } = {}): Promise<InferenceSettlement> {
    return poll(
      `the settlement of ${inferenceId}`,
      () =>
        this.inference(inferenceId).catch((err: unknown) => {
          if (err instanceof OpenLedgerError && err.status === 404) return undefined;
          throw err;
        }),
      { timeoutMs: opts.timeoutMs ?? 120_000 },
    );
  }
  epochs(): Promise<ReplyOf<typeof api.ListEpochsRoute>> {
    return this.http.json("GET", "/v1/epochs");
  }
  epoch(id: number): Promise<Epoch> {
    return this.http.json("GET", `/v1/epochs/${id}`);
  }
  reconciliation(): Promise<Reconciliation> {
    return this.http.json("GET", "/v1/reconciliation");
  }
  /** Closes the current epoch now (operators: needs SETTLEMENT_ADMIN_TOKEN). */
  closeEpoch(): Promise<ReplyOf<typeof api.CloseEpochRoute>> {
    const token = this.adminToken?.();
    if (!token)
      throw new OpenLedgerError("ADMIN_TOKEN_REQUIRED", "closing an epoch needs the settlement admin token");
    return this.http.json("POST", "/v1/epochs/close", { headers: { authorization: `Bearer ${token}` } });
  }

  /**
   * Waits until every given inference is in a confirmed epoch and returns that epoch (the newest of
   * them). With an admin token it closes epochs itself; otherwise it waits for the schedule.
   */
  async waitEpochConfirmed(
    inferenceIds: readonly string[],
    opts: { timeoutMs?: number } = {},
  ): Promise<Epoch> {
    return poll(
      "the epoch holding the inferences to be confirmed",
      async () => {
        const ids = await Promise.all(inferenceIds.map(async (i) => (await this.inference(i)).epochId));
        if (ids.every((e) => e !== null)) {
          const e = await this.epoch(Math.max(...(ids as number[])));
          if (e.status === "confirmed") return e;
        }
        if (this.adminToken?.()) {
          await this.closeEpoch().catch((err: unknown) => {
            if (!(err instanceof OpenLedgerError && err.status === 409)) throw err;
          });
        }
        return undefined;
      },
      { timeoutMs: opts.timeoutMs ?? 400_000, intervalMs: 500 },
    );
  }
}
