import type { FastifyInstance } from "fastify";
import { z } from "zod";

export interface DependencyCheck {
  name: string;
  check: (signal: AbortSignal) => Promise<void>;
}

const CheckResult = z.object({
  name: z.string(),
  ok: z.boolean(),
  error: z.string().optional(),
  ms: z.number(),
});

async function runCheck(dep: DependencyCheck, timeoutMs: number) {
  const started = performance.now();
  const controller = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      dep.check(controller.signal),
      new Promise((_, reject) => {
        timer = setTimeout(() => {
          controller.abort();
          reject(new Error(`no answer within ${timeoutMs} ms`));
        }, timeoutMs);
      }),
    ]);
    return { name: dep.name, ok: true, ms: Math.round(performance.now() - started) };
  } catch (err) {
    return {
      name: dep.name,
      ok: false,
      error: err instanceof Error ? err.message : String(err),
      ms: Math.round(performance.now() - started),
    };
  } finally {
    clearTimeout(timer);
  }
}

/**
 * /healthz: the process is up. /readyz: every dependency answers within the timeout;
 * otherwise 503 naming what is down, so a load balancer stops routing here.
 */
export function registerHealthRoutes(app: FastifyInstance, deps: DependencyCheck[], timeoutMs: number): void {
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
        summary: "Readiness: Postgres and Redis are reachable",
        response: {
          200: z.object({ status: z.literal("ready"), checks: z.array(CheckResult) }),
          503: z.object({
            error: z.object({ code: z.literal("SERVICE_UNAVAILABLE"), message: z.string() }),
            checks: z.array(CheckResult),
          }),
        },
      },
    },
    async (_request, reply) => {
      const checks = await Promise.all(deps.map((d) => runCheck(d, timeoutMs)));
      const down = checks.filter((c) => !c.ok);
      if (down.length === 0) return reply.status(200).send({ status: "ready" as const, checks });
      return reply.status(503).send({
        error: {
          code: "SERVICE_UNAVAILABLE" as const,
          message: `not ready: ${down.map((c) => `${c.name} (${c.error})`).join(", ")}`,
        },
        checks,
      });
    },
  );
}

/** The standard checks: Postgres (`SELECT 1`) and Redis (`PING`). */
export function standardChecks(app: FastifyInstance): DependencyCheck[] {
  return [
    { name: "postgres", check: async () => void (await app.db.$queryRaw`SELECT 1`) },
    {
      name: "redis",
      check: async (signal) => {
        await untilRedisReady(app, signal);
        const pong = await app.redis.ping();
        if (pong !== "PONG") throw new Error(`unexpected reply ${pong}`);
      },
    },
  ];
}

/** Waits for the Redis connection to be (re)established; the caller's timeout aborts it. */
async function untilRedisReady(app: FastifyInstance, signal: AbortSignal): Promise<void> {
  const redis = app.redis;
  if (redis.status === "ready") return;
  if (redis.status === "wait" || redis.status === "end") redis.connect().catch(() => {});
  await new Promise<void>((resolve) => {
    const onReady = () => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    };
    const onAbort = () => {
      redis.off("ready", onReady);
      resolve();
    };
    redis.once("ready", onReady);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}
