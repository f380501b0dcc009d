import { Histogram, type Registry } from "prom-client";

/**
 * Where a completion request spends its time before it reaches the engine, and between the engine's
 * first token and the client's first byte: `performance.now()` marks taken on the request path.
 * The engine's own part (submit -> first token) is in the scheduler's `RequestTimings`.
 */
export interface RequestPhases {
  /** The route's onRequest hook ran (headers parsed; the body not yet). */
  arrivedAt: number;
  /** The API key resolved to its account. */
  authedAt?: number;
  /** The handler started: body parsed and validated. */
  handlerAt?: number;
  /** The model found and the prompt tokenized. */
  foundAt?: number;
  /** The account's escrow balance read (or taken from the cache). */
  balanceAt?: number;
  /** The reservation statement committed. */
  reservedAt?: number;
  /** Submitted to the engine. */
  submittedAt?: number;
  /** The first SSE event (sent with the first token) written to the socket. */
  firstSentAt?: number;
}

/** The phases, each the span between two consecutive marks. */
export const PHASES = [
  ["auth", "arrivedAt", "authedAt"],
  ["body", "authedAt", "handlerAt"],
  ["model", "handlerAt", "foundAt"],
  ["balance", "foundAt", "balanceAt"],
  ["reserve", "balanceAt", "reservedAt"],
  ["submit", "reservedAt", "submittedAt"],
] as const;

declare module "fastify" {
  interface FastifyRequest {
    /** Marks of a completion request on its way to the engine (set by the OpenAI routes). */
    phases?: RequestPhases;
  }
}

/**
 * `gateway_request_phase_seconds{phase}`: the request path before the engine, phase by phase (auth,
 * body, model, balance, reserve, submit), and `deliver` (the engine's first token -> the first event
 * written). `hooks.onPhases` sees each request's marks with its inference id (the benchmark joins
 * them with the client's and the scheduler's timings).
 */
export function requestPhaseMetrics(registry: Registry) {
  const seconds = new Histogram({
    name: "gateway_request_phase_seconds",
    help: "Time of a completion request in each phase before the engine (auth, body, model, balance, reserve, submit)",
    labelNames: ["phase"],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
    registers: [registry],
  });
  const hooks = { onPhases: (_inferenceId: string, _phases: RequestPhases) => {} };
  return {
    hooks,
    /** Observes a request's marks once it was submitted to the engine. */
    observe(inferenceId: string, phases: RequestPhases): void {
      for (const [phase, from, to] of PHASES) {
        const a = phases[from];
        const b = phases[to];
        if (a !== undefined && b !== undefined) seconds.observe({ phase }, (b - a) / 1000);
      }
      hooks.onPhases(inferenceId, phases);
    },
  };
}

export type RequestPhaseMetrics = ReturnType<typeof requestPhaseMetrics>;
