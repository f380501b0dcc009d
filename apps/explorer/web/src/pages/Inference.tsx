import type { EChartsOption } from "echarts";
import { Link, useParams } from "react-router";
import { attribution, type InferenceTrace, type InfluenceRow, settlement } from "../api.ts";
import { Chart } from "../components/chart.tsx";
import { HighlightedText } from "../components/highlight.tsx";
import { Addr, Amount, Badge, Empty, Failure, Hash, Loading, Section, Table } from "../components/ui.tsx";
import { colourMap, ppmPercent, ROLE_LABELS, shortAddress, toBig } from "../format.ts";
import { useLoad } from "../hooks.ts";

/** Influence is fixed point in the signed result; the bars only need its sign and relative size. */
function influenceChart(t: InferenceTrace, colours: Map<string, string>): EChartsOption {
  const inf = t.influence!;
  const rows = [...inf.topHelpful, ...inf.topHarmful];
  const values = rows.map((r) => Number(r.influence));
  return {
    animation: false,
    grid: { left: 10, right: 20, top: 10, bottom: 10, containLabel: true },
    tooltip: {
      trigger: "axis",
      formatter: (p: unknown) => {
        const i = (p as { dataIndex: number }[])[0]?.dataIndex ?? 0;
        const r = rows[i]!;
        return `row ${r.rowId} (${shortAddress(r.contributorAddress)})<br/>influence ${r.influence}`;
      },
    },
    xAxis: { type: "value" },
    yAxis: {
      type: "category",
      inverse: true,
      data: rows.map((r) => `row ${r.rowId} · ${shortAddress(r.contributorAddress)}`),
    },
    series: [
      {
        type: "bar",
        data: rows.map((r, i) => ({
          value: values[i],
          itemStyle: {
            color: (values[i] ?? 0) >= 0 ? (colours.get(r.contributorAddress) ?? "#009E73") : "#b42318",
          },
        })),
      },
    ],
  };
}

/** Influential rows (helpful, then harmful); `labels` adds each row's label beside its text. */
function InfluenceTable(props: {
  caption: string;
  testId: string;
  rows: InfluenceRow[];
  colours: Map<string, string>;
  labels?: boolean;
}) {
  return (
    <Table caption={props.caption} head={["Row", "Contributor", "Influence", "Text"]} testId={props.testId}>
      {props.rows.map((r) => (
        <tr key={`${r.rowId}:${r.influence}`} data-row={r.rowId}>
          <td>{r.rowId}</td>
          <td>
            <Addr address={r.contributorAddress} colour={props.colours.get(r.contributorAddress)} />
          </td>
          <td className="num">
            <code>{r.influence}</code>
          </td>
          <td className="row-text small">
            {r.text ?? "—"}
            {props.labels && r.label && <Badge>{r.label}</Badge>}
          </td>
        </tr>
      ))}
    </Table>
  );
}

export function InferencePage() {
  const { id = "" } = useParams();
  const trace = useLoad(() => attribution.trace(id), [id]);
  const fee = useLoad(() => settlement.ofInference(id), [id]);
  const t = trace.data;
  const weights = t
    ? [...t.weights].sort((a, b) => b.ppm - a.ppm || (a.contributorAddress < b.contributorAddress ? -1 : 1))
    : [];
  const colours = colourMap(weights.map((w) => w.contributorAddress));
  const credited = new Map(
    (fee.data?.entries ?? [])
      .filter((e) => e.account.startsWith("contributor:"))
      .map((e) => [e.account.slice("contributor:".length), e.amountWei]),
  );
  const entriesSum = (fee.data?.entries ?? []).reduce((s, e) => s + toBig(e.amountWei), 0n);
  const debit = (fee.data?.entries ?? [])
    .filter((e) => toBig(e.amountWei) < 0n)
    .reduce((s, e) => s - toBig(e.amountWei), 0n);
  return (
    <>
      <h1>
        Inference <code className="small">{id}</code>
      </h1>
      {trace.error && <Failure error={trace.error} what="inference" />}
      {!t && !trace.error && <Loading what="the trace" />}
      {t && (
        <>
          <Section title="What was asked and answered" id="trace">
            <dl className="facts">
              <dt>Model</dt>
              <dd>
                <Link to={`/models/${encodeURIComponent(t.modelId)}`}>{t.modelId}</Link>
              </dd>
              <dt>Attribution</dt>
              <dd>
                {t.method === "span"
                  ? "spans of the answer found verbatim in the training datanet (suffix-array index)"
                  : t.method === "influence"
                    ? "influence of the training rows on the small model's answer"
                    : "none yet"}
              </dd>
              <dt>Validators</dt>
              <dd>
                {t.consensusCount} signed the same result <Hash value={t.consensusHash} label="result hash" />
              </dd>
            </dl>
            <details>
              <summary>Prompt</summary>
              <div className="answer" data-testid="trace-prompt">
                {t.prompt}
              </div>
            </details>
            <h3>Answer</h3>
            <HighlightedText text={t.output} spans={t.spans} colours={colours} testId="trace-answer" />
            {t.method === "span" && t.spans.length === 0 && (t.loraInfluence?.weights.length ?? 0) > 0 && (
              <p className="muted" data-testid="no-spans">
                No span of this answer occurs in the training data, so the contributors are credited through
                the adapter's gradients instead (LoRA influence, below).
              </p>
            )}
            {t.method === "span" && t.spans.length === 0 && (t.loraInfluence?.weights.length ?? 0) === 0 && (
              <p className="muted" data-testid="no-spans">
                No span of this answer occurs in the training data (at the attribution's minimum span length),
                so no contributor is credited for it{t.unattributed ? ` (${t.unattributed})` : ""}: by
                settlement policy that share goes to the treasury.
              </p>
            )}
            {weights.length > 0 && (
              <>
                <h3>Contributors credited</h3>
                <ul className="legend" data-testid="trace-legend">
                  {weights.map((w) => (
                    <li key={w.contributorAddress} data-contributor={w.contributorAddress} data-ppm={w.ppm}>
                      <Addr address={w.contributorAddress} colour={colours.get(w.contributorAddress)} />
                      <span>{ppmPercent(w.ppm)}</span>
                      {credited.has(w.contributorAddress) && (
                        <span className="muted small">
                          → <Amount wei={credited.get(w.contributorAddress)!} />
                        </span>
                      )}
                    </li>
                  ))}
                </ul>
              </>
            )}
          </Section>

          {t.loraInfluence && (
            <Section title="LoRA influence of the training rows" id="lora-influence">
              <p>
                The adapter was fine-tuned by the factory, so validators also measure how each training row's
                gradient moves the loss of the {t.loraInfluence.uncoveredTokens} answer tokens no span covers
                ({t.loraInfluence.coveredTokens} tokens are paid by their spans). Rows that lower that loss
                earn
                {t.loraInfluence.unattributed ? ` — here none did (${t.loraInfluence.unattributed})` : ""}.
              </p>
              {t.loraInfluence.topHelpful.length + t.loraInfluence.topHarmful.length === 0 ? (
                <Empty>No influential row.</Empty>
              ) : (
                <InfluenceTable
                  caption="Rows with the largest LoRA influence"
                  testId="lora-influence-table"
                  rows={[...t.loraInfluence.topHelpful, ...t.loraInfluence.topHarmful]}
                  colours={colours}
                />
              )}
            </Section>
          )}

          {t.influence && (
            <Section title="Influence of the training rows" id="influence">
              <p>
                The small model answered <Badge tone="info">{t.influence.labelName}</Badge>{" "}
                {t.influence.classNames.length > 0 && (
                  <span className="muted small">
                    (
                    {t.influence.classNames
                      .map((c, i) => `${c} ${ppmPercent(t.influence!.probabilitiesPpm[i] ?? 0)}`)
                      .join(", ")}
                    )
                  </span>
                )}
                . Rows that pushed the model towards this answer earn; rows that pushed against it are shown
                in red.
              </p>
              {t.influence.topHelpful.length + t.influence.topHarmful.length === 0 ? (
                <Empty>No influential row.</Empty>
              ) : (
                <>
                  <Chart
                    option={influenceChart(t, colours)}
                    height={40 + 26 * (t.influence.topHelpful.length + t.influence.topHarmful.length)}
                    label="Influence of the top training rows on this answer"
                    testId="influence-chart"
                  />
                  <InfluenceTable
                    caption="Most influential rows"
                    testId="influence-table"
                    rows={[...t.influence.topHelpful, ...t.influence.topHarmful]}
                    colours={colours}
                    labels
                  />
                </>
              )}
            </Section>
          )}
        </>
      )}

      <Section title="Where the fee went" id="fee">
        {fee.error ? (
          <Failure error={fee.error} what="this inference's settlement (it may not be settled yet)" />
        ) : !fee.data ? (
          <Loading what="the settlement" />
        ) : (
          <>
            <p>
              Fee <Amount wei={fee.data.feeWei} testId="fee-total" showWei />, split{" "}
              {["treasury", "validators", "modelOwner", "contributors"]
                .map(
                  (k) =>
                    `${k === "modelOwner" ? "model owner" : k} ${Number(fee.data!.splitBps[k] ?? 0) / 100}%`,
                )
                .join(" · ")}
              {fee.data.epochId !== null && (
                <>
                  {" "}
                  — in <Link to={`/epochs/${fee.data.epochId}`}>epoch #{fee.data.epochId}</Link>
                </>
              )}
              .
            </p>
            <Table
              caption="The settlement's journal"
              head={["Role", "Account", "Amount (wei)", "OPEN"]}
              testId="fee-table"
            >
              {fee.data.entries.map((e) => {
                const [role = "", addr = ""] = e.account.split(":");
                return (
                  <tr key={e.account} data-account={e.account}>
                    <td>{role === "consumer" ? "Consumer (paid)" : (ROLE_LABELS[role] ?? role)}</td>
                    <td>{addr ? <Addr address={addr} colour={colours.get(addr)} /> : "—"}</td>
                    <td className="num">
                      <code>{toBig(e.amountWei).toString()}</code>
                    </td>
                    <td>
                      <Amount wei={e.amountWei} />
                    </td>
                  </tr>
                );
              })}
            </Table>
            <p className="small" data-testid="fee-balanced">
              {entriesSum === 0n && debit === toBig(fee.data.feeWei)
                ? "✓ Credits add up to the fee the consumer paid, to the wei."
                : "✗ The journal does not balance."}
            </p>
          </>
        )}
      </Section>
    </>
  );
}
