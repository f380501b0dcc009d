import { Link, useParams } from "react-router";
import { gateway, settlement } from "../api.ts";
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
import { formatTime, ROLE_LABELS } from "../format.ts";
import { useLoad } from "../hooks.ts";

const KIND: Record<string, string> = {
  base: "base model",
  adapter: "LoRA adapter",
  small_model: "small model",
};

export function ModelPage() {
  const { id = "" } = useParams();
  const model = useLoad(() => gateway.model(id), [id]);
  const usage = useLoad(() => settlement.modelUsage(id), [id]);
  const recent = useLoad(() => settlement.recent({ modelId: id, limit: 20 }), [id]);
  const m = model.data;
  return (
    <>
      <h1>
        Model <code>{id}</code>
      </h1>
      {model.error && <Failure error={model.error} what="model" />}
      {!m && !model.error && <Loading what="the model" />}
      {m && (
        <>
          <Section title="What it is" id="model">
            <dl className="facts">
              <dt>Kind</dt>
              <dd>
                {KIND[m.kind] ?? m.kind} <Badge tone={statusTone(m.status)}>{m.status}</Badge>
              </dd>
              <dt>Owner</dt>
              <dd>
                <Addr address={m.owner} />
              </dd>
              <dt>Price per 1k input tokens</dt>
              <dd>
                <Amount wei={m.pricePer1kInputWei} testId="price-in" showWei />
              </dd>
              <dt>Price per 1k output tokens</dt>
              <dd>
                <Amount wei={m.pricePer1kOutputWei} testId="price-out" showWei />
              </dd>
              <dt>Content hash</dt>
              <dd>
                <Hash value={m.contentHash} label="content hash" />
              </dd>
              <dt>ModelRegistry</dt>
              <dd>
                {m.chainModelId ? `#${m.chainModelId}` : "not registered"}
                {m.chain?.txHash && (
                  <>
                    {" "}
                    in <Hash value={m.chain.txHash} label="registration transaction" />
                  </>
                )}
              </dd>
              <dt>Registered</dt>
              <dd>{formatTime(m.createdAt)}</dd>
            </dl>
          </Section>

          <Section title="Lineage" id="lineage">
            <div className="lineage" data-testid="lineage">
              {m.baseModel && (
                <>
                  <div className="node">
                    <div className="muted small">base model</div>
                    <code>{m.baseModel}</code>
                  </div>
                  <span className="arrow" aria-hidden="true">
                    +
                  </span>
                </>
              )}
              {m.training.length === 0 ? (
                <div className="node muted">no training datanet named</div>
              ) : (
                m.training.map((t) => (
                  <div className="node" key={t.datanetVersionId} data-version={t.datanetVersionId}>
                    <div className="muted small">datanet version</div>
                    <Link to={`/datanets/${t.datanetId}`}>
                      {t.datanetName} v{t.version}
                    </Link>
                    <div className="small">
                      {t.rowCount} rows, root <Hash value={t.merkleRoot} label="version root" />
                    </div>
                  </div>
                ))
              )}
              {m.fineTune && (
                <>
                  <span className="arrow" aria-hidden="true">
                    →
                  </span>
                  <div className="node" data-testid="fine-tune">
                    <div className="muted small">fine-tune job</div>
                    <code>{m.fineTune.jobId}</code>{" "}
                    <Badge tone={statusTone(m.fineTune.status)}>{m.fineTune.status}</Badge>
                    <div className="small">{formatTime(m.fineTune.createdAt)}</div>
                  </div>
                </>
              )}
              <span className="arrow" aria-hidden="true">
                →
              </span>
              <div className="node">
                <div className="muted small">{KIND[m.kind] ?? m.kind}</div>
                <code>{m.id}</code>
              </div>
            </div>
          </Section>
        </>
      )}

      <Section title="Usage" id="usage">
        {usage.error ? (
          <Failure error={usage.error} what="usage" />
        ) : !usage.data ? (
          <Loading what="usage" />
        ) : (
          <>
            <div className="stats">
              <Stat label="Settled inferences" value={usage.data.inferences} testId="usage-inferences" />
              <Stat label="Input tokens" value={usage.data.inputTokens} />
              <Stat label="Output tokens" value={usage.data.outputTokens} />
              <Stat label="Fees" value={<Amount wei={usage.data.feesWei} testId="usage-fees" />} />
            </div>
            <Table caption="Where this model's fees went" head={["Role", "Amount"]} testId="usage-roles">
              {(["treasury", "validator", "model_owner", "contributor"] as const).map((r) => (
                <tr key={r}>
                  <td>{ROLE_LABELS[r]}</td>
                  <td>
                    <Amount wei={usage.data!.roles[r]} />
                  </td>
                </tr>
              ))}
            </Table>
          </>
        )}
        <h3>Recent inferences</h3>
        {recent.data && recent.data.items.length === 0 && <Empty>None settled yet.</Empty>}
        {recent.data && recent.data.items.length > 0 && (
          <Table caption="Recent inferences of this model" head={["Inference", "Consumer", "Fee", "Epoch"]}>
            {recent.data.items.map((s) => (
              <tr key={s.inferenceId}>
                <td>
                  <Link to={`/inferences/${s.inferenceId}`}>
                    <code>{s.inferenceId.slice(0, 8)}</code>
                  </Link>
                </td>
                <td>
                  <Addr address={s.consumer} />
                </td>
                <td>
                  <Amount wei={s.feeWei} />
                </td>
                <td>{s.epochId ? <Link to={`/epochs/${s.epochId}`}>#{s.epochId}</Link> : "—"}</td>
              </tr>
            ))}
          </Table>
        )}
      </Section>
    </>
  );
}
