import { formatUnits } from "viem";

/** OPEN has 18 decimals; amounts stay bigint (exact) until they are printed. */
export const OPEN_DECIMALS = 18;

export function toBig(wei: string | bigint | null | undefined): bigint {
  if (wei === null || wei === undefined) return 0n;
  return typeof wei === "bigint" ? wei : BigInt(wei);
}

/** Exact OPEN amount with thousands separators in the integer part: "1,234.000000000000000007". */
export function formatOpen(wei: string | bigint, maxFraction = 18): string {
  const s = formatUnits(toBig(wei), OPEN_DECIMALS);
  const [int, frac = ""] = s.split(".");
  const negative = int!.startsWith("-");
  const digits = negative ? int!.slice(1) : int!;
  const grouped = digits.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  const f = frac.slice(0, maxFraction);
  return `${negative ? "-" : ""}${grouped}${f ? `.${f}` : ""}`;
}

/** Wei as an integer with thin grouping, for the to-the-wei figures. */
export function formatWei(wei: string | bigint): string {
  return toBig(wei).toString();
}

export function shortAddress(a: string): string {
  return a.length > 14 ? `${a.slice(0, 6)}…${a.slice(-4)}` : a;
}

export function shortHash(h: string | null | undefined, n = 10): string {
  if (!h) return "—";
  return h.length > n + 6 ? `${h.slice(0, n)}…${h.slice(-4)}` : h;
}

export function formatTime(iso: string | null | undefined): string {
  if (!iso) return "—";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
}

export function ppmPercent(ppm: number): string {
  return `${(ppm / 10_000).toFixed(2)}%`;
}

/**
 * Colours for contributors, distinguishable for colour-blind readers (Okabe–Ito, then Tableau).
 * A page assigns them in a fixed order (by weight), so a legend and the highlights agree.
 */
export const PALETTE = [
  "#0072B2",
  "#E69F00",
  "#009E73",
  "#CC79A7",
  "#D55E00",
  "#56B4E9",
  "#F0E442",
  "#8c564b",
  "#7f7f7f",
  "#bcbd22",
];

export function colourMap(addresses: readonly string[]): Map<string, string> {
  const m = new Map<string, string>();
  for (const a of addresses) if (!m.has(a)) m.set(a, PALETTE[m.size % PALETTE.length]!);
  return m;
}

export const ROLE_LABELS: Record<string, string> = {
  treasury: "Treasury",
  validator: "Validators",
  model_owner: "Model owners",
  contributor: "Contributors",
};
