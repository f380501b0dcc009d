/**
 * One error type for everything a contributor can get wrong in a submission. The code is stable
 * (clients switch on it); the message always names where the problem is (line, row, byte offset)
 * so a contributor can fix the file without guessing.
 */
export const INPUT_ERROR_CODES = [
  "INVALID_UTF8",
  "MALFORMED_JSONL",
  "MALFORMED_JSON",
  "MALFORMED_CSV",
  "MISSING_TEXT_COLUMN",
  "INVALID_ROW",
  "FILE_TOO_LARGE",
  "ROW_TOO_LONG",
  "TOO_MANY_ROWS",
  "EMPTY_FILE",
  "UNSUPPORTED_FORMAT",
] as const;

export type InputErrorCode = (typeof INPUT_ERROR_CODES)[number];

/** Suggested HTTP status per code, so every service answers the same thing for the same mistake. */
export const INPUT_ERROR_HTTP_STATUS: Readonly<Record<InputErrorCode, number>> = {
  INVALID_UTF8: 400,
  MALFORMED_JSONL: 400,
  MALFORMED_JSON: 400,
  MALFORMED_CSV: 400,
  MISSING_TEXT_COLUMN: 400,
  INVALID_ROW: 400,
  FILE_TOO_LARGE: 413,
  ROW_TOO_LONG: 400,
  TOO_MANY_ROWS: 413,
  EMPTY_FILE: 400,
  UNSUPPORTED_FORMAT: 415,
};

export interface InputErrorLocation {
  /** 1-based line in the file (files only). */
  line?: number;
  /** 1-based row index (JSON row arrays, or the row number within a file). */
  row?: number;
  /** 0-based byte offset in the file (UTF-8 errors, size limits). */
  byteOffset?: number;
}

export class DatanetInputError extends Error {
  readonly code: InputErrorCode;
  readonly line: number | undefined;
  readonly row: number | undefined;
  readonly byteOffset: number | undefined;

  constructor(
    code: InputErrorCode,
    message: string,
    location: InputErrorLocation = {},
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = "DatanetInputError";
    this.code = code;
    this.line = location.line;
    this.row = location.row;
    this.byteOffset = location.byteOffset;
  }

  get httpStatus(): number {
    return INPUT_ERROR_HTTP_STATUS[this.code];
  }

  /** The `{ code, message, ...location }` body shape the services send to clients. */
  toJSON(): { code: InputErrorCode; message: string; line?: number; row?: number; byteOffset?: number } {
    return {
      code: this.code,
      message: this.message,
      ...(this.line !== undefined ? { line: this.line } : {}),
      ...(this.row !== undefined ? { row: this.row } : {}),
      ...(this.byteOffset !== undefined ? { byteOffset: this.byteOffset } : {}),
    };
  }
}

export function isDatanetInputError(e: unknown): e is DatanetInputError {
  return e instanceof DatanetInputError;
}
