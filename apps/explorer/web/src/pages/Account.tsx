import type { EChartsOption } from "echarts";
import { type FormEvent, useState } from "react";
import { Link, useNavigate, useParams } from "react-router";
import { datanets, type Earnings, settlement } from "../api.ts";
import { Chart } from "../components/chart.tsx";
import {
  Addr,
  Amount,
  Badge,
  Empty,
  Failure,
  Loading,
  Section,
  statusTone,
  Table,
} from "../components/ui.tsx";
import { formatOpen, formatTime, ROLE_LABELS, toBig } from "../format.ts";
import { useLoad } from "../hooks.ts";
import { type ClaimOutcome, claim, connect, hasWallet } from "../wallet.ts";

const ADDRESS = /^0x[0-9a-fA-F]{40}$/;

/** /accounts/me: the wallet's account, or an address typed in. */
function ChooseAccount() {
  const navigate = useNavigate();
  const [value, setValue] = useState("");
  const [error, setError] = useState("");
  const submit = (e: FormEvent) => {
    e.preventDefault();
    if (!ADDRESS.test(value.trim())) return setError("An address is 0x followed by 40 hex digits.");
    void navigate(`/accounts/${value.trim().toLowerCase()}`);
  };
  const useWallet = async () => {
    try {
      await navigate(`/accounts/${await connect()}`);
    } catch (err) {
      setError((err as Error).message);
    }
  };
  return (
    <>
      <h1>Account</h1>
      <Section title="Whose account?">
        {hasWallet() && (
          <p>
            <button type="button" onClick={useWallet}>
              Use my wallet's account
            </button>
          </p>
        )}
        <form onSubmit={submit} className="form-row">
          <label htmlFor="account-address">Address</label>
          <input
            id="account-address"
            value={value}
            onChange={(e) => setValue(e.target.value)}
            placeholder="0x…"
            size={44}
          />
          <button type="submit">Show</button>
        </form>
        {error && (
          <p className="error" role="alert">
            {error}
          </p>
        )}
      </Section>
    </>
  );
}

export function AccountPage() {
  const { address = "" } = useParams();
  if (address === "me") return <ChooseAccount />;
  if (!ADDRESS.test(address)) return <p className="error">“{address}” is not an address.</p>;
  return <AccountView address={address.toLowerCase()} />;
}

function earningsChart(e: Earnings): EChartsOption {
  const rows = [...e.bySource].sort((a, b) => (toBig(a.amountWei) > toBig(b.amountWei) ? 1 : -1));
  return {
    animation: false,
    grid: { left: 10, right: 30, top: 10, bottom: 10, containLabel: true },
    tooltip: {
      trigger: "axis",
      formatter: (p: unknown) => {
        const i = (p as { dataIndex: number }[])[0]?.dataIndex ?? 0;
        const r = rows[i]!;
        return `${ROLE_LABELS[r.role]} · ${r.modelId}<br/>${formatOpen(r.amountWei)} OPEN`;
      },
    },
    xAxis: { type: "value", axisLabel: { formatter: (v: number) => `${v}` } },
    yAxis: {
      type: "category",
      data: rows.map((r) => `${ROLE_LABELS[r.role]} · ${r.modelId}`),
      axisLabel: { width: 220, overflow: "truncate" },
    },
    series: [
      {
        type: "bar",
        data: rows.map((r) => Number(toBig(r.amountWei) / 10n ** 9n) / 1e9),
        itemStyle: { color: "#009E73" },
      },
    ],
  };
}

function AccountView({ address }: { address: string }) {
  const earnings = useLoad(() => settlement.earnings(address), [address]);
  const claimInfo = useLoad(() => settlement.claim(address), [address]);
  const summary = useLoad(() => datanets.contributor(address), [address]);
  const [claiming, setClaiming] = useState(false);
  const [outcome, setOutcome] = useState<ClaimOutcome>();
  const [claimError, setClaimError] = useState("");
  const c = claimInfo.data;
  const claimable = c ? toBig(c.claimable) : 0n;

  const onClaim = async () => {
    if (!c) return;
    setClaiming(true);
    setClaimError("");
    setOutcome(undefined);
    try {
      const out = await claim(c);
      setOutcome(out);
      if (out.status !== "success") setClaimError("The claim transaction reverted.");
    } catch (err) {
      setClaimError((err as { shortMessage?: string }).shortMessage ?? (err as Error).message);
    } finally {
      setClaiming(false);
      claimInfo.reload();
    }
  };

  return (
    <>
      <h1>
        Account <code className="small">{address}</code>
      </h1>

      <Section title="Claimable now" id="claim">
        {claimInfo.error ? (
          <Failure error={claimInfo.error} what="the claim" />
        ) : !c ? (
          <Loading what="the claim" />
        ) : (
          <>
            <dl className="facts">
              <dt>Active epoch</dt>
              <dd>{c.epoch === null ? "none yet" : <Link to={`/epochs/${c.epoch}`}>#{c.epoch}</Link>}</dd>
              <dt>Cumulative earnings in its root</dt>
              <dd>
                <Amount wei={c.cumulativeAmount} testId="claim-cumulative" />
              </dd>
              <dt>Claimed on chain</dt>
              <dd>
                <Amount wei={c.claimed} testId="claim-claimed" />
              </dd>
              <dt>Claimable now</dt>
              <dd>
                <Amount wei={c.claimable} testId="claim-claimable" showWei />
              </dd>
              {c.next && (
                <>
                  <dt>Next root</dt>
                  <dd>
                    epoch #{c.next.epoch}, claimable from {formatTime(c.next.activatesAt)}:{" "}
                    <Amount wei={c.next.cumulativeAmount} /> cumulative
                  </dd>
                </>
              )}
            </dl>
            {c.proof.length > 0 && (
              <details>
                <summary>Merkle proof ({c.proof.length} hashes)</summary>
                <pre className="json" data-testid="claim-proof">
                  {c.proof.join("\n")}
                </pre>
              </details>
            )}
            <div className="form-row">
              <button
                type="button"
                onClick={onClaim}
                disabled={claiming || claimable === 0n || !c.active || !hasWallet()}
                data-testid="claim-button"
              >
                {claiming ? "Claiming…" : `Claim ${formatOpen(claimable)} OPEN`}
              </button>
              <span className="muted small">
                {!hasWallet()
                  ? "Connect a browser wallet to claim."
                  : claimable === 0n
                    ? "Nothing to claim now."
                    : "Your wallet signs RewardDistributor.claim; the tokens go to this account, whoever signs."}
              </span>
            </div>
            <div aria-live="polite">
              {outcome && outcome.status === "success" && (
                <p data-testid="claim-done">
                  <Badge tone="good">claimed</Badge> in transaction{" "}
                  <code className="hash">{outcome.hash}</code> (block {outcome.blockNumber.toString()})
                </p>
              )}
              {claimError && (
                <p className="error" role="alert" data-testid="claim-error">
                  {claimError}
                </p>
              )}
            </div>
          </>
        )}
      </Section>

      <Section title="Earnings by source" id="earnings">
        {earnings.error ? (
          <Failure error={earnings.error} what="earnings" />
        ) : !earnings.data ? (
          <Loading what="earnings" />
        ) : earnings.data.bySource.length === 0 ? (
          <Empty>This account has earned nothing yet.</Empty>
        ) : (
          <>
            <p>
              Total earned: <Amount wei={earnings.data.totalWei} testId="earnings-total" showWei />
            </p>
            <Chart
              option={earningsChart(earnings.data)}
              height={Math.max(140, 40 * earnings.data.bySource.length + 40)}
              label="Earnings of this account by role and model"
            />
            <Table
              caption="Earnings by source"
              head={["Role", "Model", "Inferences", "Earned"]}
              testId="earnings-table"
            >
              {earnings.data.bySource.map((s) => (
                <tr key={`${s.role}:${s.modelId}`}>
                  <td>{ROLE_LABELS[s.role]}</td>
                  <td>
                    <Link to={`/models/${encodeURIComponent(s.modelId)}`}>{s.modelId}</Link>
                  </td>
                  <td className="num">{s.inferences}</td>
                  <td>
                    <Amount wei={s.amountWei} />
                  </td>
                </tr>
              ))}
            </Table>
          </>
        )}
      </Section>

      <Section title="Stakes and contributions" id="stakes">
        {summary.error ? (
          <Failure error={summary.error} what="contributions" />
        ) : !summary.data ? (
          <Loading what="contributions" />
        ) : (
          <>
            <p>
              {summary.data.contributions} contributions: {summary.data.rowsAccepted} rows accepted,{" "}
              {summary.data.rowsRejected} rejected, {summary.data.rowsPending} pending.
            </p>
            {summary.data.stakes.length === 0 ? (
              <Empty>No contributor stake.</Empty>
            ) : (
              <Table
                caption="Contributor stakes"
                head={["Datanet", "On-chain id", "Active stake"]}
                testId="stakes-table"
              >
                {summary.data.stakes.map((s) => (
                  <tr key={s.datanetId}>
                    <td>
                      <Link to={`/datanets/${s.datanetId}`}>{s.datanetId.slice(0, 8)}</Link>
                    </td>
                    <td>#{s.chainDatanetId}</td>
                    <td>
                      {s.activeStakeWei === null ? "chain unavailable" : <Amount wei={s.activeStakeWei} />}
                    </td>
                  </tr>
                ))}
              </Table>
            )}
            {summary.data.slashes.length > 0 && (
              <>
                <h3>Slashing proposals against this account</h3>
                <Table caption="Slashing proposals" head={["Datanet", "Reason", "Amount", "Status"]}>
                  {summary.data.slashes.map((p) => (
                    <tr key={p.id}>
                      <td>
                        <Link to={`/datanets/${p.datanetId}`}>{p.datanetId.slice(0, 8)}</Link>
                      </td>
                      <td>{p.reason}</td>
                      <td>
                        <Amount wei={p.amountWei} />
                      </td>
                      <td>
                        <Badge tone={statusTone(p.status)}>{p.status}</Badge>
                      </td>
                    </tr>
                  ))}
                </Table>
              </>
            )}
          </>
        )}
      </Section>
      <p className="muted small">
        <Addr address={address} /> — earnings come from the settlement ledger; stakes are read on chain by the
        datanets service.
      </p>
    </>
  );
}
