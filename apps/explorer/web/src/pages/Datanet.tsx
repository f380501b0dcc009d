import type { EChartsOption } from "echarts";
import { type FormEvent, Fragment, useState } from "react";
import { useParams } from "react-router";
import {
  type AttributeResult,
  attribution,
  type Contribution,
  datanets,
  type SlashingProposal,
  settlement,
} from "../api.ts";
import { Chart } from "../components/chart.tsx";
import { HighlightedText } from "../components/highlight.tsx";
import {
  Addr,
  Amount,
  Badge,
  Empty,
  Failure,
  Hash,
  Loading,
  Section,
  statusTone,
  Table,
} from "../components/ui.tsx";
import { colourMap, formatTime, ppmPercent, shortAddress, toBig } from "../format.ts";
import { useLoad } from "../hooks.ts";

const REASONS: Record<string, string> = {
  exact_duplicate: "exact duplicate",
  near_duplicate: "near duplicate",
  too_short: "too short",
  low_quality: "low quality",
};

function RejectedRows({ contribution }: { contribution: Contribution }) {
  const rows = useLoad(() => datanets.rows(contribution.id, "rejected"), [contribution.id]);
  if (rows.error) return <Failure error={rows.error} what="rejected rows" />;
  if (!rows.data) return <Loading what="rejected rows" />;
  return (
    <ul className="small" data-testid={`rejected-${contribution.id}`}>
      {rows.data.items.map((r) => (
        <li key={r.id} data-reason={r.rejectReason ?? ""}>
          <Badge tone="bad">{REASONS[r.rejectReason ?? ""] ?? r.rejectReason}</Badge>{" "}
          {r.duplicateOfRowId && <span className="muted">of row {r.duplicateOfRowId}</span>}
          {r.similarityPpm !== null && (
            <span className="muted"> ({ppmPercent(r.similarityPpm)} similar)</span>
          )}
          <div className="row-text">{r.text}</div>
        </li>
      ))}
    </ul>
  );
}

function ContributionRow({ c }: { c: Contribution }) {
  const [open, setOpen] = useState(false);
  return (
    <>
      <tr data-contribution={c.id}>
        <td>
          <Addr address={c.contributorAddress} />
        </td>
        <td>
          <Badge tone={statusTone(c.status)}>{c.status}</Badge>
        </td>
        <td className="num">{c.rowCount}</td>
        <td className="num">{c.acceptedCount}</td>
        <td className="num">
          {c.rejectedCount > 0 ? (
            <button type="button" className="secondary" aria-expanded={open} onClick={() => setOpen(!open)}>
              {c.rejectedCount} {open ? "▲" : "▼"}
            </button>
          ) : (
            0
          )}
        </td>
        <td className="small">{formatTime(c.createdAt)}</td>
      </tr>
      {open && (
        <tr>
          <td colSpan={6}>
            <RejectedRows contribution={c} />
          </td>
        </tr>
      )}
    </>
  );
}

function Evidence({ proposal }: { proposal: SlashingProposal }) {
  const detail = useLoad(() => datanets.proposal(proposal.id), [proposal.id]);
  if (detail.error) return <Failure error={detail.error} what="evidence" />;
  if (!detail.data) return <Loading what="evidence" />;
  return (
    <>
      <p className="small">
        Evidence hash <Hash value={proposal.evidenceHash} label="evidence hash" /> (SHA-256 of the evidence's
        canonical JSON)
      </p>
      <pre className="json" data-testid={`evidence-${proposal.id}`}>
        {JSON.stringify(detail.data.evidence, null, 2)}
      </pre>
      <ol className="small">
        {detail.data.events.map((e) => (
          <li key={`${e.at}-${e.toStatus}`}>
            {formatTime(e.at)}: {e.fromStatus ?? "—"} → {e.toStatus} by {shortAddress(e.actor)}
            {e.note && ` (${e.note})`}
            {e.txHash && (
              <>
                {" "}
                tx <Hash value={e.txHash} />
              </>
            )}
          </li>
        ))}
      </ol>
    </>
  );
}

function leaderboardChart(items: { address: string; earnedWei: string }[]): EChartsOption {
  const rows = [...items].reverse();
  return {
    animation: false,
    grid: { left: 10, right: 30, top: 10, bottom: 10, containLabel: true },
    xAxis: { type: "value" },
    yAxis: { type: "category", data: rows.map((r) => shortAddress(r.address)) },
    series: [
      {
        type: "bar",
        data: rows.map((r) => Number(toBig(r.earnedWei) / 10n ** 9n) / 1e9),
        itemStyle: { color: "#009E73" },
      },
    ],
  };
}

function TraceText({ versionId }: { versionId: string }) {
  const [text, setText] = useState("");
  const [apiKey, setApiKey] = useState("");
  const [result, setResult] = useState<{ text: string; r: AttributeResult }>();
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    if (!text.trim() || !apiKey.trim()) return;
    setBusy(true);
    setError("");
    try {
      setResult({ text, r: await attribution.attribute(text, versionId, apiKey.trim()) });
    } catch (err) {
      setError((err as Error).message);
    } finally {
      setBusy(false);
    }
  };
  // /v1/attribute answers token offsets of its byte tokenizer: turn them into string offsets.
  const spans = result
    ? result.r.spans.map((s) => {
        const bytes = new TextEncoder().encode(result.text);
        const dec = new TextDecoder();
        const start = dec.decode(bytes.slice(0, s.start)).length;
        const end = dec.decode(bytes.slice(0, s.end)).length;
        return {
          start,
          end,
          text: s.text,
          count: s.count,
          contributors: [...new Set(s.rows.map((r) => r.contributorAddress))],
          rows: s.rows.map((r) => ({
            rowId: r.rowId,
            contributorAddress: r.contributorAddress,
            text: r.excerpt,
          })),
        };
      })
    : [];
  const weights = result ? [...result.r.contributors].sort((a, b) => b.ppm - a.ppm) : [];
  const colours = colourMap(weights.map((w) => w.contributorAddress));
  return (
    <>
      <form onSubmit={submit}>
        <label htmlFor="trace-text">
          Paste a text (a model's answer, say) to see which parts occur in this version's rows:
        </label>
        <textarea id="trace-text" rows={3} value={text} onChange={(e) => setText(e.target.value)} />
        <label htmlFor="trace-key">Your gateway API key (a trace costs the attribution service CPU):</label>
        <input
          id="trace-key"
          type="password"
          autoComplete="off"
          placeholder="sk-…"
          value={apiKey}
          onChange={(e) => setApiKey(e.target.value)}
        />
        <div className="form-row">
          <button type="submit" disabled={busy || !text.trim() || !apiKey.trim()}>
            {busy ? "Tracing…" : "Trace"}
          </button>
        </div>
      </form>
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      {result && (
        <>
          <HighlightedText text={result.text} spans={spans} colours={colours} testId="attribute-answer" />
          {weights.length === 0 ? (
            <Empty>No span of it occurs in the version's rows.</Empty>
          ) : (
            <ul className="legend" data-testid="attribute-legend">
              {weights.map((w) => (
                <li key={w.contributorAddress} data-contributor={w.contributorAddress} data-ppm={w.ppm}>
                  <Addr address={w.contributorAddress} colour={colours.get(w.contributorAddress)} />{" "}
                  {ppmPercent(w.ppm)}
                </li>
              ))}
            </ul>
          )}
        </>
      )}
    </>
  );
}

export function DatanetPage() {
  const { id = "" } = useParams();
  const d = useLoad(() => datanets.one(id), [id]);
  const versions = useLoad(() => datanets.versions(id), [id]);
  const contributions = useLoad(() => datanets.contributions(id), [id]);
  const proposals = useLoad(() => datanets.slashing(id), [id]);
  const board = useLoad(() => datanets.leaderboard(id), [id]);
  const earnings = useLoad(() => settlement.datanetEarnings(id), [id]);
  const [openEvidence, setOpenEvidence] = useState<string | null>(null);
  const indexed = versions.data?.items.filter((v) => v.status === "indexed") ?? [];
  const latestIndexed = indexed.sort((a, b) => b.version - a.version)[0];
  // Earnings (settlement) joined with rows (datanets): everyone who contributed, best earner first.
  const rowsOf = new Map((board.data?.items ?? []).map((b) => [b.address, b]));
  const earned = new Map((earnings.data?.items ?? []).map((e) => [e.address, e]));
  const leaders = [...new Set([...earned.keys(), ...rowsOf.keys()])]
    .map((address) => ({
      address,
      earnedWei: earned.get(address)?.earnedWei ?? "0",
      inferences: earned.get(address)?.inferences ?? 0,
      rowsAccepted: rowsOf.get(address)?.rowsAccepted ?? 0,
      acceptanceRatePpm: rowsOf.get(address)?.acceptanceRatePpm ?? null,
    }))
    .sort((a, b) => {
      const x = toBig(b.earnedWei) - toBig(a.earnedWei);
      return x > 0n ? 1 : x < 0n ? -1 : b.rowsAccepted - a.rowsAccepted || (a.address < b.address ? -1 : 1);
    });
  return (
    <>
      {d.error && <Failure error={d.error} what="datanet" />}
      {!d.data && !d.error && <Loading what="the datanet" />}
      {d.data && (
        <>
          <h1>{d.data.name}</h1>
          <Section title="About" id="about">
            <p>{d.data.description || <span className="muted">No description.</span>}</p>
            <dl className="facts">
              <dt>Slug</dt>
              <dd>
                <code>{d.data.slug}</code>
              </dd>
              <dt>Type / license</dt>
              <dd>
                {d.data.type} · {d.data.license}
              </dd>
              <dt>Tags</dt>
              <dd>
                {d.data.tags.map((t) => (
                  <Badge key={t}>{t}</Badge>
                ))}
              </dd>
              <dt>Owner</dt>
              <dd>
                <Addr address={d.data.ownerAddress} />
              </dd>
              <dt>DatanetRegistry</dt>
              <dd>
                {d.data.chainDatanetId ? `#${d.data.chainDatanetId}` : "registration pending"}
                {d.data.registration?.txHash && (
                  <>
                    {" "}
                    in <Hash value={d.data.registration.txHash} label="registration transaction" />
                  </>
                )}
              </dd>
              <dt>Minimum contributor stake</dt>
              <dd>
                <Amount wei={d.data.minStakeWei} />
              </dd>
            </dl>
          </Section>
        </>
      )}

      <Section title="Versions" id="versions">
        {versions.error ? (
          <Failure error={versions.error} what="versions" />
        ) : !versions.data ? (
          <Loading what="versions" />
        ) : versions.data.items.length === 0 ? (
          <Empty>No version published yet.</Empty>
        ) : (
          <Table
            caption="Versions"
            head={["Version", "Rows", "Contributors", "Merkle root", "Transaction", "Status"]}
            testId="versions-table"
          >
            {versions.data.items.map((v) => (
              <tr key={v.id} data-version={v.version}>
                <td>v{v.version}</td>
                <td className="num">{v.rowCount}</td>
                <td className="num">{v.contributorCount}</td>
                <td>
                  <code className="hash" title={v.merkleRoot}>
                    {v.merkleRoot}
                  </code>
                </td>
                <td>
                  <Hash value={v.chainTxHash} label="transaction" />
                </td>
                <td>
                  <Badge tone={statusTone(v.status)}>{v.status}</Badge>
                </td>
              </tr>
            ))}
          </Table>
        )}
      </Section>

      <Section title="Leaderboard by earnings" id="leaderboard">
        {earnings.error && <Failure error={earnings.error} what="earnings" />}
        {board.error && <Failure error={board.error} what="the leaderboard" />}
        {!earnings.data || !board.data ? (
          earnings.error || board.error ? null : (
            <Loading what="the leaderboard" />
          )
        ) : leaders.length === 0 ? (
          <Empty>No contributor yet.</Empty>
        ) : (
          <>
            {leaders.some((l) => toBig(l.earnedWei) > 0n) && (
              <Chart
                option={leaderboardChart(leaders.filter((l) => toBig(l.earnedWei) > 0n).slice(0, 10))}
                height={60 + 28 * Math.min(10, leaders.filter((l) => toBig(l.earnedWei) > 0n).length)}
                label="Contributors by earnings from models trained on this datanet"
              />
            )}
            <Table
              caption="Contributors by earnings"
              head={["#", "Contributor", "Earned", "Inferences", "Accepted rows", "Acceptance"]}
              testId="leaderboard-table"
            >
              {leaders.map((l, i) => (
                <tr key={l.address} data-address={l.address}>
                  <td>{i + 1}</td>
                  <td>
                    <Addr address={l.address} />
                  </td>
                  <td>
                    <Amount wei={l.earnedWei} />
                  </td>
                  <td className="num">{l.inferences}</td>
                  <td className="num">{l.rowsAccepted}</td>
                  <td>{l.acceptanceRatePpm === null ? "—" : ppmPercent(l.acceptanceRatePpm)}</td>
                </tr>
              ))}
            </Table>
            <p className="muted small">
              Earnings: contributor credits of inferences of models trained on this datanet's versions.
            </p>
          </>
        )}
      </Section>

      <Section title="Contributions" id="contributions">
        {contributions.error ? (
          <Failure error={contributions.error} what="contributions" />
        ) : !contributions.data ? (
          <Loading what="contributions" />
        ) : contributions.data.items.length === 0 ? (
          <Empty>No contribution yet.</Empty>
        ) : (
          <Table
            caption="Contributions"
            head={["Contributor", "Status", "Rows", "Accepted", "Rejected", "Submitted"]}
            testId="contributions-table"
          >
            {contributions.data.items.map((c) => (
              <ContributionRow key={c.id} c={c} />
            ))}
          </Table>
        )}
      </Section>

      <Section title="Slashing proposals" id="slashing">
        {proposals.error ? (
          <Failure error={proposals.error} what="slashing proposals" />
        ) : !proposals.data ? (
          <Loading what="slashing proposals" />
        ) : proposals.data.items.length === 0 ? (
          <Empty>No slashing proposal.</Empty>
        ) : (
          <Table
            caption="Slashing proposals"
            head={["Contributor", "Reason", "Amount", "Status", "Deadline", "Evidence"]}
            testId="slashing-table"
          >
            {proposals.data.items.map((p) => (
              <Fragment key={p.id}>
                <tr data-proposal={p.id}>
                  <td>
                    <Addr address={p.contributorAddress} />
                  </td>
                  <td>{p.reason}</td>
                  <td>
                    <Amount wei={p.amountWei} />
                  </td>
                  <td>
                    <Badge tone={statusTone(p.status)}>{p.status}</Badge>
                    {p.executedTxHash && (
                      <div className="small">
                        tx <Hash value={p.executedTxHash} />
                      </div>
                    )}
                  </td>
                  <td className="small">{formatTime(p.disputeDeadline)}</td>
                  <td>
                    <button
                      type="button"
                      className="secondary"
                      aria-expanded={openEvidence === p.id}
                      onClick={() => setOpenEvidence(openEvidence === p.id ? null : p.id)}
                    >
                      {openEvidence === p.id ? "Hide" : "Show"}
                    </button>
                  </td>
                </tr>
                {openEvidence === p.id && (
                  <tr>
                    <td colSpan={6}>
                      <Evidence proposal={p} />
                    </td>
                  </tr>
                )}
              </Fragment>
            ))}
          </Table>
        )}
      </Section>

      {latestIndexed && (
        <Section title={`Trace a text against v${latestIndexed.version}`} id="trace-text-section">
          <TraceText versionId={latestIndexed.id} />
        </Section>
      )}
    </>
  );
}
