import { z } from "zod";

// ---- reusable field types ----------------------------------------------------------

export const port = (fallback: number) => z.coerce.number().int().min(0).max(65535).default(fallback);

export const boolFlag = (fallback: boolean) =>
  z
    .enum(["true", "false", "1", "0", "yes", "no"])
    .default(fallback ? "true" : "false")
    .transform((v) => v === "true" || v === "1" || v === "yes");

export const postgresUrl = z
  .string()
  .url()
  .refine((v) => v.startsWith("postgres://") || v.startsWith("postgresql://"), {
    message: "must be a postgres:// or postgresql:// URL",
  });

export const redisUrl = z
  .string()
  .url()
  .refine((v) => v.startsWith("redis://") || v.startsWith("rediss://"), {
    message: "must be a redis:// or rediss:// URL",
  });

export const logLevel = z
  .enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"])
  .default("info");
