import type { FastifyInstance } from "fastify";
import { z } from "zod";

/**
 * What an outage of a dependency does to the service: it cannot answer (`unready`: 503, a load
 * balancer should route elsewhere), or it rides the outage out (`degraded`: 200, still serving —
 * e.g. Redis behind the outbox, whose enqueues are swept in later), optionally only for so long
 * (`{ degradedForMs }`: unready once the dependency has been down longer, e.g. the gateway's cached
 * balances expire).
 */
export type WhenDown = "unready" | "degraded" | { degradedForMs: number };

export interface DependencyCheck {
  name: string;
  whenDown: WhenDown;
  /**
   * Resolves when the dependency can be used. It should reject at once when the dependency is known
   * to be down (a disconnected client, an open circuit) rather than wait for it to come back.
   */
  check: (signal: AbortSignal) => Promise<void>;
  /** When the dependency was last known to work (Date.now()), if it knows better than this check's own
   *  failures: how long it has been down is counted from there. */
  lastOkAt?: () => number | undefined;
}

const CheckResult = z.object({
  name: z.string(),
  ok: z.boolean(),
  /** What this check does to readiness now: nothing, degraded (still serving) or unready. */
  impact: z.enum(["none", "degraded", "unready"]),
  error: z.string().optional(),
  ms: z.number(),
  /** How long it has been failing, ms. */
  downForMs: z.number().optional(),
});
type CheckResult = z.infer<typeof CheckResult>;

interface CheckState {
  /** A probe that did not settle within the timeout: later polls report it at once instead of waiting. */
  hanging?: { since: number };
  downSince?: number;
}

async function runCheck(dep: DependencyCheck, state: CheckState, timeoutMs: number): Promise<CheckResult> {
  const started = performance.now();
  const now = Date.now();
  const down = (error: string): CheckResult => {
    state.downSince ??= now;
    const lastOk = dep.lastOkAt?.();
    const downForMs = now - (lastOk !== undefined ? Math.min(lastOk, state.downSince) : state.downSince);
    const impact =
      dep.whenDown === "unready"
        ? "unready"
        : dep.whenDown === "degraded"
          ? "degraded"
          : downForMs >= dep.whenDown.degradedForMs
            ? "unready"
            : "degraded";
    return {
      name: dep.name,
      ok: false,
      impact,
      error,
      ms: Math.round(performance.now() - started),
      downForMs,
    };
  };
  if (state.hanging) return down(`no answer for ${now - state.hanging.since} ms (probe still waiting)`);
  const controller = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const probe = dep.check(controller.signal);
  try {
    await Promise.race([
      probe,
      new Promise((_, reject) => {
        timer = setTimeout(() => {
          controller.abort();
          state.hanging = { since: now };
          const clear = () => {
            state.hanging = undefined;
          };
          probe.then(clear, clear);
          reject(new Error(`no answer within ${timeoutMs} ms`));
        }, timeoutMs);
      }),
    ]);
    state.downSince = undefined;
    return { name: dep.name, ok: true, impact: "none", ms: Math.round(performance.now() - started) };
  } catch (err) {
    return down(err instanceof Error ? err.message : String(err));
  } finally {
    clearTimeout(timer);
  }
}

/**
 * /healthz: the process is up. /readyz: the service can serve. Each dependency is probed (bounded by
 * `timeoutMs`; one known to be down answers at once, and a probe still hanging from an earlier poll
 * is reported without waiting again). 503 when a dependency the service cannot do without is down;
 * 200 `degraded` when only dependencies it rides out are; 200 `ready` otherwise.
 */
export function registerHealthRoutes(app: FastifyInstance, deps: DependencyCheck[], timeoutMs: number): void {
  const states = new Map<string, CheckState>(deps.map((d) => [d.name, {}]));
  app.get(
    "/healthz",
    {
      schema: {
        tags: ["health"],
        summary: "Liveness: the process is up",
        response: { 200: z.object({ status: z.literal("ok") }) },
      },
    },
    async () => ({ status: "ok" as const }),
  );
  app.get(
    "/readyz",
    {
      schema: {
        tags: ["health"],
        summary: "Readiness: the service can serve",
        description:
          "200 `ready`: every dependency answers. 200 `degraded`: a dependency the service rides out is down " +
          "(Redis behind the outbox; the chain, for as long as the service can do without it), and it still " +
          "serves. 503: a dependency it cannot answer without is down (Postgres, or one down for longer than " +
          "the service can ride it out). Never waits on a dependency known to be down.",
        response: {
          200: z.object({ status: z.enum(["ready", "degraded"]), checks: z.array(CheckResult) }),
          503: z.object({
            error: z.object({ code: z.literal("SERVICE_UNAVAILABLE"), message: z.string() }),
            checks: z.array(CheckResult),
          }),
        },
      },
    },
    async (_request, reply) => {
      const checks = await Promise.all(deps.map((d) => runCheck(d, states.get(d.name)!, timeoutMs)));
      const unready = checks.filter((c) => c.impact === "unready");
      if (unready.length === 0) {
        const status = checks.some((c) => c.impact === "degraded")
          ? ("degraded" as const)
          : ("ready" as const);
        return reply.status(200).send({ status, checks });
      }
      return reply.status(503).send({
        error: {
          code: "SERVICE_UNAVAILABLE" as const,
          message: `not ready: ${unready.map((c) => `${c.name} (${c.error})`).join(", ")}`,
        },
        checks,
      });
    },
  );
}

/** How a service lives with Redis and the chain being down (Postgres is always required). */
export interface Readiness {
  /** Default `degraded`: producers are backed by Postgres (outboxes, sweepers), workers wait. */
  redis?: WhenDown;
  /** Default `degraded`: request-path chain reads are bounded (503 CHAIN_UNAVAILABLE or a fallback). */
  chain?: WhenDown;
}

/** The standard checks: Postgres (`SELECT 1`), Redis (connected, `PING`) and the chain (a bounded read). */
export function standardChecks(app: FastifyInstance, readiness: Readiness = {}): DependencyCheck[] {
  return [
    { name: "postgres", whenDown: "unready", check: async () => void (await app.db.$queryRaw`SELECT 1`) },
    {
      name: "redis",
      whenDown: readiness.redis ?? "degraded",
      check: async () => {
        // ioredis reconnects by itself: a client that is not connected now is down now, no waiting.
        if (app.redis.status !== "ready") {
          if (app.redis.status === "wait" || app.redis.status === "end") app.redis.connect().catch(() => {});
          throw new Error(`not connected (${app.redis.status})`);
        }
        const pong = await app.redis.ping();
        if (pong !== "PONG") throw new Error(`unexpected reply ${pong}`);
      },
    },
    {
      name: "chain",
      whenDown: readiness.chain ?? "degraded",
      check: () => app.chain.probe(),
      lastOkAt: () => app.chain.health().lastOkAt,
    },
  ];
}
