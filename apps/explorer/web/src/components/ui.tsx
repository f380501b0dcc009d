import type { ReactNode } from "react";
import { Link } from "react-router";
import { ApiError } from "../api.ts";
import { formatOpen, formatWei, shortAddress, shortHash } from "../format.ts";

/** An account, linked to its page; the full address is in the title and for screen readers. */
export function Addr({ address, colour }: { address: string; colour?: string }) {
  return (
    <Link to={`/accounts/${address}`} className="addr" title={address} aria-label={`account ${address}`}>
      {colour && <span className="swatch" style={{ background: colour }} aria-hidden="true" />}
      <code>{shortAddress(address)}</code>
    </Link>
  );
}

export function Hash({ value, label }: { value: string | null | undefined; label?: string }) {
  if (!value) return <span className="muted">—</span>;
  return (
    <code className="hash" title={label ? `${label} ${value}` : value}>
      {shortHash(value, 12)}
      <span className="sr-only"> ({value})</span>
    </code>
  );
}

/** An amount of OPEN, exact: the visible figure is the whole wei amount scaled by 10^18. */
export function Amount({
  wei,
  testId,
  showWei,
}: {
  wei: string | bigint;
  testId?: string;
  showWei?: boolean;
}) {
  return (
    <span className="amount" data-testid={testId} data-wei={formatWei(wei)} title={`${formatWei(wei)} wei`}>
      <span className="open">{formatOpen(wei)}</span>
      <span className="unit"> OPEN</span>
      {showWei && <span className="wei"> ({formatWei(wei)} wei)</span>}
    </span>
  );
}

export function Section({
  title,
  children,
  id,
  actions,
}: {
  title: string;
  children: ReactNode;
  id?: string;
  actions?: ReactNode;
}) {
  const headingId = id ? `${id}-title` : undefined;
  return (
    <section className="card" id={id} aria-labelledby={headingId}>
      <div className="card-head">
        <h2 id={headingId}>{title}</h2>
        {actions}
      </div>
      {children}
    </section>
  );
}

export function Stat({ label, value, testId }: { label: string; value: ReactNode; testId?: string }) {
  return (
    <div className="stat" data-testid={testId}>
      <div className="stat-value">{value}</div>
      <div className="stat-label">{label}</div>
    </div>
  );
}

/** A table that scrolls sideways on a narrow screen instead of overflowing the page. */
export function Table({
  caption,
  head,
  children,
  testId,
}: {
  caption: string;
  head: ReactNode[];
  children: ReactNode;
  testId?: string;
}) {
  return (
    // biome-ignore lint/a11y/noNoninteractiveTabindex: a scrollable region must be reachable by keyboard
    <section className="table-wrap" tabIndex={0} aria-label={caption}>
      <table data-testid={testId}>
        <caption className="sr-only">{caption}</caption>
        <thead>
          <tr>
            {head.map((h, i) => (
              // biome-ignore lint/suspicious/noArrayIndexKey: headers are static
              <th key={i} scope="col">
                {h}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>{children}</tbody>
      </table>
    </section>
  );
}

export function Loading({ what }: { what: string }) {
  return (
    <p className="muted" role="status">
      Loading {what}…
    </p>
  );
}

export function Failure({ error, what }: { error: Error; what: string }) {
  const notFound = error instanceof ApiError && error.status === 404;
  return (
    <p className="error" role="alert">
      {notFound ? `No such ${what}.` : `Could not load ${what}: ${error.message}`}
    </p>
  );
}

export function Empty({ children }: { children: ReactNode }) {
  return <p className="muted">{children}</p>;
}

export function Badge({ children, tone }: { children: ReactNode; tone?: "good" | "bad" | "warn" | "info" }) {
  return <span className={`badge ${tone ?? ""}`}>{children}</span>;
}

export function statusTone(status: string): "good" | "bad" | "warn" | "info" {
  if (
    ["confirmed", "accepted", "validated", "executed", "indexed", "registered", "active", "ready"].includes(
      status,
    )
  )
    return "good";
  if (["rejected", "failed", "revoked", "dismissed"].includes(status)) return "bad";
  if (
    ["proposed", "disputed", "pending", "validating", "upheld", "closed", "posting", "open"].includes(status)
  )
    return "warn";
  return "info";
}
