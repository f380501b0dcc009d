/**
 * Every failure the SDK reports: the service's own `{ error: { code, message } }` (kept as is, with
 * the HTTP status and any details), or a chain revert (code `CHAIN_REVERTED`, the contract's error
 * name in `details.errorName`), or the platform not answering (`UNREACHABLE`), or a wait that ran out
 * (`TIMEOUT`). Callers branch on `code`, never on message text.
 */
export class OpenLedgerError extends Error {
  override readonly name = "OpenLedgerError";
  readonly code: string;
  /** HTTP status when a service answered (0 otherwise). */
  readonly status: number;
  readonly details: unknown;
  /** Which part answered: a service name, "chain" or "sdk". */
  readonly source: string;

  constructor(
    code: string,
    message: string,
    opts: { status?: number; details?: unknown; source?: string } = {},
  ) {
    super(message);
    this.code = code;
    this.status = opts.status ?? 0;
    this.details = opts.details;
    this.source = opts.source ?? "sdk";
  }

  toJSON(): { code: string; message: string; status?: number; source: string; details?: unknown } {
    return {
      code: this.code,
      message: this.message,
      ...(this.status ? { status: this.status } : {}),
      source: this.source,
      ...(this.details !== undefined ? { details: this.details } : {}),
    };
  }
}

export function isOpenLedgerError(err: unknown, code?: string): err is OpenLedgerError {
  return err instanceof OpenLedgerError && (code === undefined || err.code === code);
}
