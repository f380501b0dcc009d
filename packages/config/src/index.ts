import { z } from "zod";

export { z };

/** Thrown (or printed, by `loadConfig`) when the environment does not satisfy a schema. */
export class ConfigError extends Error {
  readonly problems: readonly { variable: string; reason: string }[];

  constructor(service: string, problems: { variable: string; reason: string }[]) {
    super(
      `Invalid configuration for ${service}:\n` +
        problems.map((p) => `  - ${p.variable}: ${p.reason}`).join("\n"),
    );
    this.name = "ConfigError";
    this.problems = problems;
  }
}

type Env = Record<string, string | undefined>;

/**
 * Parses `env` against `schema`. Empty strings count as unset so that a blank line in
 * an .env file falls back to the default instead of failing as "not a number".
 */
export function parseConfig<S extends z.ZodObject>(service: string, schema: S, env: Env): z.output<S> {
  const cleaned: Env = {};
  for (const [key, value] of Object.entries(env)) {
    if (value !== undefined && value !== "") cleaned[key] = value;
  }
  const result = schema.safeParse(cleaned);
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => ({
    variable: issue.path.join(".") || "(environment)",
    reason: issue.message,
  }));
  throw new ConfigError(service, problems);
}

/**
 * Parses the process environment once at start-up. On a bad value the process stops
 * with a message naming each variable and why; nothing else should read process.env.
 */
export function loadConfig<S extends z.ZodObject>(service: string, schema: S): z.output<S> {
  try {
    return parseConfig(service, schema, process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(78); // EX_CONFIG
    }
    throw err;
  }
}

export * from "./fields.ts";
export * from "./schemas.ts";
