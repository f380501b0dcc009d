import { Link } from "react-router";
import { datanets, gateway, settlement } from "../api.ts";
import {
  Addr,
  Amount,
  Badge,
  Empty,
  Failure,
  Hash,
  Loading,
  Section,
  Stat,
  statusTone,
  Table,
} from "../components/ui.tsx";
import { formatTime } from "../format.ts";
import { useLoad } from "../hooks.ts";

const LIVE_MS = 5000;

export function OverviewPage() {
  const dStats = useLoad(() => datanets.stats(), [], LIVE_MS);
  const sStats = useLoad(() => settlement.stats(), [], LIVE_MS);
  const catalog = useLoad(() => gateway.catalog(), [], LIVE_MS);
  const list = useLoad(() => datanets.list(50), [], LIVE_MS);
  const recent = useLoad(() => settlement.recent({ limit: 20 }), [], LIVE_MS);
  const epochs = useLoad(() => settlement.epochs(), [], LIVE_MS);
  const models = catalog.data?.items.filter((m) => m.kind !== "base") ?? [];
  return (
    <>
      <h1>Overview</h1>
      <section className="stats" aria-label="Live totals" aria-live="polite">
        <Stat label="Datanets" value={dStats.data?.datanets ?? "…"} testId="total-datanets" />
        <Stat label="Contributors" value={dStats.data?.contributors ?? "…"} testId="total-contributors" />
        <Stat label="Accepted rows" value={dStats.data?.rowsAccepted ?? "…"} testId="total-rows" />
        <Stat label="Models" value={catalog.data ? models.length : "…"} testId="total-models" />
        <Stat label="Settled inferences" value={sStats.data?.settlements ?? "…"} testId="total-inferences" />
        <Stat
          label="Fees settled"
          value={sStats.data ? <Amount wei={sStats.data.feesWei} testId="total-fees" /> : "…"}
        />
        <Stat label="Epochs on chain" value={sStats.data?.confirmedEpochs ?? "…"} testId="total-epochs" />
      </section>
      {(dStats.error || sStats.error) && (
        <Failure error={(dStats.error ?? sStats.error)!} what="the totals" />
      )}

      <div className="grid2">
        <Section title="Datanets" id="datanets">
          {list.error ? (
            <Failure error={list.error} what="datanets" />
          ) : !list.data ? (
            <Loading what="datanets" />
          ) : list.data.items.length === 0 ? (
            <Empty>No datanet yet.</Empty>
          ) : (
            <Table caption="Datanets" head={["Name", "Type", "Owner", "On chain"]} testId="datanets-table">
              {list.data.items.map((d) => (
                <tr key={d.id}>
                  <td>
                    <Link to={`/datanets/${d.id}`}>{d.name}</Link>
                    <div className="muted small">{d.slug}</div>
                  </td>
                  <td>{d.type}</td>
                  <td>
                    <Addr address={d.ownerAddress} />
                  </td>
                  <td>{d.chainDatanetId ? `#${d.chainDatanetId}` : <Badge tone="warn">pending</Badge>}</td>
                </tr>
              ))}
            </Table>
          )}
        </Section>

        <Section title="Models" id="models">
          {catalog.error ? (
            <Failure error={catalog.error} what="models" />
          ) : !catalog.data ? (
            <Loading what="models" />
          ) : models.length === 0 ? (
            <Empty>No adapter or small model yet.</Empty>
          ) : (
            <Table caption="Models" head={["Model", "Kind", "Owner", "Trained on"]} testId="models-table">
              {models.map((m) => (
                <tr key={m.id}>
                  <td>
                    <Link to={`/models/${encodeURIComponent(m.id)}`}>{m.id}</Link>
                  </td>
                  <td>{m.kind === "small_model" ? "small model" : m.kind}</td>
                  <td>
                    <Addr address={m.owner} />
                  </td>
                  <td>{m.training.map((t) => `${t.datanetSlug} v${t.version}`).join(", ") || "—"}</td>
                </tr>
              ))}
            </Table>
          )}
        </Section>
      </div>

      <Section title="Recent inferences" id="inferences">
        {recent.error ? (
          <Failure error={recent.error} what="inferences" />
        ) : !recent.data ? (
          <Loading what="inferences" />
        ) : recent.data.items.length === 0 ? (
          <Empty>No settled inference yet.</Empty>
        ) : (
          <Table
            caption="Recent inferences"
            head={["Inference", "Model", "Fee", "Epoch", "Settled"]}
            testId="inferences-table"
          >
            {recent.data.items.map((s) => (
              <tr key={s.inferenceId}>
                <td>
                  <Link to={`/inferences/${s.inferenceId}`}>
                    <code>{s.inferenceId.slice(0, 8)}</code>
                  </Link>
                </td>
                <td>
                  <Link to={`/models/${encodeURIComponent(s.modelId)}`}>{s.modelId}</Link>
                </td>
                <td>
                  <Amount wei={s.feeWei} />
                </td>
                <td>
                  {s.epochId ? (
                    <Link to={`/epochs/${s.epochId}`}>#{s.epochId}</Link>
                  ) : (
                    <Badge tone="warn">next</Badge>
                  )}
                </td>
                <td className="small">{formatTime(s.createdAt)}</td>
              </tr>
            ))}
          </Table>
        )}
      </Section>

      <Section title="Epochs" id="epochs">
        {epochs.error ? (
          <Failure error={epochs.error} what="epochs" />
        ) : !epochs.data ? (
          <Loading what="epochs" />
        ) : epochs.data.epochs.length === 0 ? (
          <Empty>No epoch closed yet.</Empty>
        ) : (
          <Table
            caption="Epochs"
            head={["Epoch", "Status", "Fees", "Settlements", "Root"]}
            testId="epochs-table"
          >
            {epochs.data.epochs.map((e) => (
              <tr key={e.id}>
                <td>
                  <Link to={`/epochs/${e.id}`}>#{e.id}</Link>
                </td>
                <td>
                  <Badge tone={statusTone(e.status)}>{e.status}</Badge>
                </td>
                <td>
                  <Amount wei={e.totalWei} />
                </td>
                <td>{e.settlementCount}</td>
                <td>
                  <Hash value={e.merkleRoot} label="root" />
                </td>
              </tr>
            ))}
          </Table>
        )}
      </Section>
    </>
  );
}
