import { useMemo, useState } from "react";
import { Addr } from "./ui.tsx";

export interface HighlightSpan {
  /** Character offsets into the text (JavaScript string indices). */
  start: number;
  end: number;
  text: string;
  count: number;
  contributors: string[];
  rows: { rowId: string; contributorAddress: string; text: string }[];
}

interface Segment {
  start: number;
  end: number;
  spans: number[];
}

/** Cuts the text at every span boundary; each piece knows which spans cover it (spans may overlap). */
function segments(length: number, spans: readonly HighlightSpan[]): Segment[] {
  const cuts = new Set<number>([0, length]);
  for (const s of spans) {
    cuts.add(Math.max(0, Math.min(length, s.start)));
    cuts.add(Math.max(0, Math.min(length, s.end)));
  }
  const points = [...cuts].sort((a, b) => a - b);
  const out: Segment[] = [];
  for (let i = 0; i + 1 < points.length; i++) {
    const start = points[i]!;
    const end = points[i + 1]!;
    const covering: number[] = [];
    spans.forEach((s, k) => {
      if (s.start <= start && s.end >= end) covering.push(k);
    });
    out.push({ start, end, spans: covering });
  }
  return out;
}

/**
 * A text with its attributed spans highlighted, each in the colour of its leading contributor
 * (`colours`, in the order of the legend). A highlight is a button: selecting it (click, Enter or
 * Space) shows the span's source rows and contributors below; selecting it again walks through the
 * other spans covering the same characters.
 */
export function HighlightedText({
  text,
  spans,
  colours,
  testId,
}: {
  text: string;
  spans: readonly HighlightSpan[];
  colours: Map<string, string>;
  testId?: string;
}) {
  const [selected, setSelected] = useState<number | null>(null);
  const pieces = useMemo(() => segments(text.length, spans), [text, spans]);
  const lead = (k: number) => {
    const s = spans[k]!;
    // The legend's order (by weight) decides which contributor's colour a shared span takes.
    const order = [...colours.keys()];
    return [...s.contributors].sort((a, b) => order.indexOf(a) - order.indexOf(b))[0] ?? "";
  };
  const choose = (seg: Segment) => {
    // A piece covered by several spans: repeated selection walks through them.
    const current = selected !== null ? seg.spans.indexOf(selected) : -1;
    setSelected(seg.spans[(current + 1) % seg.spans.length]!);
  };
  const sel = selected !== null ? spans[selected] : undefined;
  return (
    <>
      <div className="answer" data-testid={testId}>
        {pieces.map((seg) => {
          const piece = text.slice(seg.start, seg.end);
          if (seg.spans.length === 0) return <span key={seg.start}>{piece}</span>;
          const first = seg.spans[0]!;
          const colour = colours.get(lead(first)) ?? "#999";
          return (
            <button
              type="button"
              key={seg.start}
              className="span"
              aria-pressed={selected !== null && seg.spans.includes(selected)}
              title="attributed span: select to see its source rows"
              data-spans={seg.spans.join(" ")}
              data-contributor={lead(first)}
              style={{ "--c": colour } as React.CSSProperties}
              onClick={() => choose(seg)}
            >
              {piece}
            </button>
          );
        })}
      </div>
      {spans.length > 0 && !sel && (
        <p className="muted small">Select a highlighted span to see its source rows.</p>
      )}
      {sel && (
        <div
          className="detail"
          style={{ "--c": colours.get(lead(selected!)) } as React.CSSProperties}
          data-testid="span-detail"
          aria-live="polite"
        >
          <p>
            <strong>“{sel.text}”</strong> — {sel.text.length} characters, found {sel.count}×in the datanet's
            rows.
          </p>
          <p>
            Contributors:{" "}
            {sel.contributors.map((c) => (
              <span
                key={c}
                className="form-row"
                style={{ display: "inline-flex", marginTop: 0, marginRight: 8 }}
              >
                <Addr address={c} colour={colours.get(c)} />
              </span>
            ))}
          </p>
          <ol data-testid="span-rows">
            {sel.rows.map((r) => (
              <li key={r.rowId} data-contributor={r.contributorAddress}>
                <span className="muted small">
                  row {r.rowId} by{" "}
                  <Addr address={r.contributorAddress} colour={colours.get(r.contributorAddress)} />
                </span>
                <div className="row-text">{r.text}</div>
              </li>
            ))}
          </ol>
        </div>
      )}
    </>
  );
}
