import type { JobHandler } from "@openledger/queue";
import { UnrecoverableError } from "bullmq";
import type { FastifyInstance } from "fastify";
import { buildVersionArtifacts, EmptyVersionError, VersionNotFoundError } from "../lib/indexing.ts";

/** `attribution.index`: build (or confirm) the span index / influence model of a version. */
export function indexWorker(app: FastifyInstance): JobHandler<"attribution.index"> {
  return async ({ datanetVersionId }, job) => {
    const { metrics } = app.attribution;
    const started = performance.now();
    const observe = (outcome: string) => {
      metrics.indexBuilds.inc({ outcome });
      metrics.indexBuildSeconds.observe({ outcome }, (performance.now() - started) / 1000);
    };
    try {
      const outcome = await buildVersionArtifacts(app.db, app.attribution, datanetVersionId, {
        jobId: job.id,
        signal: job.signal,
        progress: (p) => {
          job.progress(p).catch(() => {}); // progress is advisory; never fail the build on it
        },
      });
      app.log.info({ datanetVersionId, ...outcome }, "attribution artifacts ready");
      observe("built");
      return outcome;
    } catch (err) {
      observe("failed");
      if (err instanceof VersionNotFoundError || err instanceof EmptyVersionError)
        throw new UnrecoverableError(err.message);
      throw err;
    }
  };
}
