import { z } from "zod";

// The zod schemas every service's routes share (they become each service's OpenAPI document at
// /docs, and the SDK's and explorer's types through apps/*/src/api.ts). One definition, so the
// error shape and the wire forms of addresses and amounts cannot drift apart between services.

/** Every error of every service: `{ error: { code, message } }` (see `toErrorReply`). */
export const ErrorBody = z
  .object({
    error: z.object({
      code: z.string().describe("Stable machine-readable code, e.g. NOT_FOUND, CONFLICT, VALIDATION_FAILED"),
      message: z.string().describe("What went wrong, for humans"),
      details: z.unknown().optional(),
    }),
  })
  .describe("The one error shape of every OpenLedger service");

/** An EVM address; accepted in any case, answered in lower case. */
export const Address = z
  .string()
  .regex(/^0x[0-9a-fA-F]{40}$/, "0x + 40 hex digits")
  .transform((a) => a.toLowerCase())
  .describe("EVM address (answers use lower case)");

/** An amount of OPEN in wei in an answer, as a decimal string (never a JSON number: amounts exceed 2^53). */
export const Wei = z.string().describe("wei of OPEN, decimal string");

export const Uuid = z.uuid();
