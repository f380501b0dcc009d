/** Size limits for one submission. The service should also cap the HTTP body at `maxFileBytes`. */
export interface ParseLimits {
  /** Whole file, in bytes (after nothing: counted on the raw stream). */
  maxFileBytes: number;
  /** One row's text, in UTF-8 bytes; also bounds a single physical line (lines are parts of rows). */
  maxRowBytes: number;
  /** Rows per submission (file or JSON array). */
  maxRows: number;
  /** `metadata` serialized as JSON, in bytes. */
  maxMetadataBytes: number;
}

export const DEFAULT_PARSE_LIMITS: Readonly<ParseLimits> = Object.freeze({
  maxFileBytes: 32 * 1024 * 1024,
  maxRowBytes: 64 * 1024,
  maxRows: 100_000,
  maxMetadataBytes: 4 * 1024,
});

export function resolveLimits(limits: Partial<ParseLimits> | undefined): ParseLimits {
  return { ...DEFAULT_PARSE_LIMITS, ...limits };
}
