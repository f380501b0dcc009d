import { type DestinationStream, type Logger, type LoggerOptions, pino } from "pino";
import { PinoPretty } from "pino-pretty";

export type { Logger };

export interface CreateLoggerOptions {
  /** Service or tool name, recorded on every line as `service`. */
  name: string;
  level?: string;
  /** Pretty, colourised output; defaults to "is stdout a TTY". JSON otherwise. */
  pretty?: boolean;
  /** Where lines go (tests capture them); defaults to stdout. */
  destination?: DestinationStream;
}

/** Paths redacted from every log line: secrets must never reach logs. */
const REDACT = [
  "req.headers.authorization",
  "req.headers.cookie",
  "*.privateKey",
  "*.apiKey",
  "*.password",
  "*.token",
];

export function createLogger(options: CreateLoggerOptions): Logger {
  const pretty = options.pretty ?? process.stdout.isTTY === true;
  const base: LoggerOptions = {
    name: options.name,
    level: options.level ?? "info",
    base: { service: options.name },
    redact: { paths: REDACT, censor: "[redacted]" },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  if (pretty) {
    // In-process (not a transport thread): lines stay in order with the rest of stdout, and the
    // `npm start` supervisor can prefix each one with its service.
    const stream = PinoPretty({
      colorize: options.destination ? false : process.stdout.isTTY === true || options.pretty === true,
      translateTime: "SYS:HH:MM:ss.l",
      ignore: "pid,hostname,service",
      sync: true,
      ...(options.destination ? { destination: options.destination } : {}),
    });
    return pino(base, stream);
  }
  if (options.destination) return pino(base, options.destination);
  return pino(base);
}

/** A child logger for one component of a service (a worker, a plugin, a job). */
export function componentLogger(parent: Logger, component: string, bindings: Record<string, unknown> = {}) {
  return parent.child({ component, ...bindings });
}
