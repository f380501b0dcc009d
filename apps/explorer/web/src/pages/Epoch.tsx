import type { EChartsOption } from "echarts";
import { Link, Navigate, useParams } from "react-router";
import { type EpochFlows, type Role, settlement } from "../api.ts";
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
import { formatOpen, formatTime, ROLE_LABELS, shortAddress, toBig } from "../format.ts";
import { useLoad } from "../hooks.ts";

const ROLES: Role[] = ["treasury", "validator", "model_owner", "contributor"];
const ROLE_COLOURS: Record<Role, string> = {
  treasury: "#7f7f7f",
  validator: "#0072B2",
  model_owner: "#E69F00",
  contributor: "#009E73",
};
/** Recipients drawn per role; the rest of a role's amount is one "others" node (the table lists all). */
const MAX_PER_ROLE = 8;

/** Float for the layout only: every printed figure comes from the exact bigint. */
const layoutValue = (wei: bigint) => Number(wei / 10n ** 9n) / 1e9;

export function flowOption(flows: EpochFlows): EChartsOption {
  const exact = new Map<string, bigint>();
  const nodes: { name: string; itemStyle?: { color: string } }[] = [];
  const links: { source: string; target: string; value: number }[] = [];
  const fees = "Fees";
  exact.set(fees, toBig(flows.feesWei));
  nodes.push({ name: fees, itemStyle: { color: "#0f2540" } });
  for (const role of ROLES) {
    const amount = toBig(flows.roles[role]);
    if (amount === 0n) continue;
    const roleName = ROLE_LABELS[role]!;
    exact.set(roleName, amount);
    nodes.push({ name: roleName, itemStyle: { color: ROLE_COLOURS[role] } });
    links.push({ source: fees, target: roleName, value: layoutValue(amount) });
    const recipients = flows.recipients
      .map((r) => ({ address: r.address, amount: toBig(r.roles[role]) }))
      .filter((r) => r.amount > 0n)
      .sort((a, b) => (b.amount > a.amount ? 1 : b.amount < a.amount ? -1 : a.address < b.address ? -1 : 1));
    let rest = 0n;
    recipients.forEach((r, i) => {
      if (i >= MAX_PER_ROLE) {
        rest += r.amount;
        return;
      }
      // A recipient paid in two roles is one node: its inflows add up.
      const name = shortAddress(r.address);
      exact.set(name, (exact.get(name) ?? 0n) + r.amount);
      if (!nodes.some((n) => n.name === name)) nodes.push({ name });
      links.push({ source: roleName, target: name, value: layoutValue(r.amount) });
    });
    if (rest > 0n) {
      const name = `other ${roleName.toLowerCase()}`;
      exact.set(name, rest);
      nodes.push({ name });
      links.push({ source: roleName, target: name, value: layoutValue(rest) });
    }
  }
  return {
    animation: false,
    tooltip: {
      trigger: "item",
      formatter: (p: unknown) => {
        const d = (p as { data: { name?: string; source?: string; target?: string } }).data;
        const key = d.name ?? d.target ?? "";
        return `${d.source ? `${d.source} → ` : ""}${key}<br/>${formatOpen(exact.get(key) ?? 0n)} OPEN`;
      },
    },
    series: [
      {
        type: "sankey",
        left: 8,
        // Room for the recipients' labels ("0x90f7…b906: 0.431900000000000002"), printed to the wei.
        right: 250,
        top: 10,
        bottom: 10,
        nodeGap: 12,
        emphasis: { focus: "adjacency" },
        lineStyle: { color: "gradient", opacity: 0.35 },
        label: {
          formatter: (p: unknown) => {
            const name = (p as { name: string }).name;
            return `${name}: ${formatOpen(exact.get(name) ?? 0n)}`;
          },
          fontSize: 11,
        },
        data: nodes,
        links,
      },
    ],
  };
}

function LatestEpoch() {
  const epochs = useLoad(() => settlement.epochs(), []);
  if (epochs.error) return <Failure error={epochs.error} what="epochs" />;
  if (!epochs.data) return <Loading what="epochs" />;
  const latest = epochs.data.epochs.find((e) => e.status === "confirmed") ?? epochs.data.epochs[0];
  if (!latest) return <Empty>No epoch has been closed yet.</Empty>;
  return <Navigate to={`/epochs/${latest.id}`} replace />;
}

export function EpochPage() {
  const { id = "" } = useParams();
  if (id === "latest") return <LatestEpoch />;
  return <EpochView id={Number(id)} />;
}

function EpochView({ id }: { id: number }) {
  const epoch = useLoad(() => settlement.epoch(id), [id]);
  const flows = useLoad(() => settlement.flows(id), [id]);
  const all = useLoad(() => settlement.epochs(), []);
  const e = epoch.data;
  const f = flows.data;
  const roleSum = f ? ROLES.reduce((t, r) => t + toBig(f.roles[r]), 0n) : 0n;
  return (
    <>
      <h1>Epoch #{id}</h1>
      {epoch.error && <Failure error={epoch.error} what={`epoch ${id}`} />}
      {!e && !epoch.error && <Loading what="the epoch" />}
      {e && (
        <Section title="On chain" id="epoch-chain">
          <dl className="facts">
            <dt>Status</dt>
            <dd>
              <Badge tone={statusTone(e.status)}>{e.status}</Badge>
            </dd>
            <dt>Merkle root</dt>
            <dd>
              <code data-testid="epoch-root" className="hash">
                {e.merkleRoot ?? "—"}
              </code>
            </dd>
            <dt>Posted in</dt>
            <dd>
              <code data-testid="epoch-tx" className="hash">
                {e.postTxHash ?? "—"}
              </code>
            </dd>
            <dt>Fees in this epoch</dt>
            <dd>
              <Amount wei={e.totalWei} testId="epoch-total" showWei />
            </dd>
            <dt>Cumulative total</dt>
            <dd>
              <Amount wei={e.cumulativeTotalWei} />
            </dd>
            <dt>Settlements / recipients</dt>
            <dd>
              {e.settlementCount} / {e.recipientCount}
            </dd>
            <dt>Closed</dt>
            <dd>{formatTime(e.closedAt)}</dd>
            <dt>Claimable from</dt>
            <dd data-testid="epoch-activates">
              {formatTime(e.activatesAt)}
              {e.activatesAt && <span className="muted small"> (chain clock)</span>}
            </dd>
            {e.revokedAt && (
              <>
                <dt>Revoked</dt>
                <dd>{formatTime(e.revokedAt)}</dd>
              </>
            )}
          </dl>
          {all.data && (
            <nav className="form-row" aria-label="Other epochs">
              {all.data.epochs.some((x) => x.id === id - 1) && (
                <Link to={`/epochs/${id - 1}`}>← Epoch #{id - 1}</Link>
              )}
              {all.data.epochs.some((x) => x.id === id + 1) && (
                <Link to={`/epochs/${id + 1}`}>Epoch #{id + 1} →</Link>
              )}
            </nav>
          )}
        </Section>
      )}

      <Section title="Reward flow" id="flow">
        {flows.error ? (
          <Failure error={flows.error} what="the reward flow" />
        ) : !f ? (
          <Loading what="the reward flow" />
        ) : toBig(f.feesWei) === 0n ? (
          <Empty>No fee was settled in this epoch.</Empty>
        ) : (
          <>
            <p className="muted small">
              Where this epoch's fees went, from the settlement ledger: every inference's fee split between
              the treasury, the validators who attested its attribution, the model's owner and the
              contributors by attribution weight.
            </p>
            <Chart
              option={flowOption(f)}
              height={Math.max(320, 28 * Math.min(f.recipients.length + 4, 40))}
              label={`Reward flow of epoch ${id}: fees split between treasury, validators, model owners and contributors`}
              testId="flow-chart"
            />
            <Table caption="Fees by role" head={["Role", "Amount (OPEN)", "Wei"]} testId="flow-table">
              {ROLES.map((r) => (
                <tr key={r} data-role={r}>
                  <th scope="row">{ROLE_LABELS[r]}</th>
                  <td>
                    <Amount wei={f.roles[r]} testId={`flow-${r}`} />
                  </td>
                  <td className="num">
                    <code>{toBig(f.roles[r]).toString()}</code>
                  </td>
                </tr>
              ))}
              <tr>
                <th scope="row">Fees</th>
                <td>
                  <Amount wei={f.feesWei} testId="flow-fees" />
                </td>
                <td className="num">
                  <code>{toBig(f.feesWei).toString()}</code>
                </td>
              </tr>
            </Table>
            <p className="small" data-testid="flow-balanced">
              {roleSum === toBig(f.feesWei)
                ? "✓ The parts add up to the fees, to the wei."
                : "✗ The parts do not add up to the fees."}
            </p>
          </>
        )}
      </Section>

      <Section title="Recipients and claims" id="claims">
        {!f ? (
          flows.error ? null : (
            <Loading what="recipients" />
          )
        ) : f.recipients.length === 0 ? (
          <Empty>Nobody was paid in this epoch.</Empty>
        ) : (
          <>
            <p className="muted small">
              Earned in this epoch; cumulative earnings in this epoch's root; what each account has claimed on
              chain so far, and what is left to claim. Claims are made by the recipients with their proofs
              (nothing is pushed).
            </p>
            <Table
              caption="Recipients and claims"
              head={["Account", "Earned in epoch", "Cumulative in root", "Claimed on chain", "Pending"]}
              testId="recipients-table"
            >
              {f.recipients.map((r) => (
                <tr key={r.address} data-address={r.address}>
                  <td>
                    <Addr address={r.address} />
                    <div className="muted small">
                      {Object.keys(r.roles)
                        .map((x) => ROLE_LABELS[x] ?? x)
                        .join(", ")}
                    </div>
                  </td>
                  <td>
                    <Amount wei={r.earnedWei} />
                  </td>
                  <td>{r.cumulativeWei === null ? "—" : <Amount wei={r.cumulativeWei} />}</td>
                  <td>
                    {r.claimedWei === null ? (
                      <span className="muted">chain unavailable</span>
                    ) : (
                      <Amount wei={r.claimedWei} />
                    )}
                  </td>
                  <td>
                    {r.pendingWei === null ? (
                      "—"
                    ) : toBig(r.pendingWei) === 0n ? (
                      <Badge tone="good">claimed</Badge>
                    ) : (
                      <Amount wei={r.pendingWei} />
                    )}
                  </td>
                </tr>
              ))}
            </Table>
          </>
        )}
      </Section>
    </>
  );
}
