import { readValidatorQuorum } from "@openledger/chain";
import type { JobContext, JobHandler, JobPayload } from "@openledger/queue";
import { UnrecoverableError } from "bullmq";
import type { FastifyInstance } from "fastify";
import { ArtifactMismatchError } from "../lib/indexing.ts";
import { computeAttribution, ScoringError } from "../lib/scoring.ts";
import { handToSettlement } from "../lib/settlement-trigger.ts";
import { meetsValidatorStake, signAndStore, UnderstakedError, verifyingContract } from "../lib/validator.ts";

/**
 * `attribution.score`: compute the inference's attribution once, then for each validator
 * identity this process holds (or only the one named in the payload): check its stake on chain,
 * sign the canonical result and store it. Validators are independent: each re-derives the result
 * from Postgres and the content-addressed artifacts, so honest ones agree byte for byte.
 *
 * Failures that waiting cannot fix (unknown inference, model without training data, a validator
 * below the minimum stake) fail the job once, without retries; an index still being built is
 * retried with the catalog's backoff.
 */
export function scoreWorker(app: FastifyInstance): JobHandler<"attribution.score"> {
  const score = scoreOnce(app);
  return async (payload, job) => {
    const { metrics } = app.attribution;
    const started = performance.now();
    const observe = (method: string, outcome: string) => {
      metrics.scores.inc({ method, outcome });
      metrics.scoreSeconds.observe({ method, outcome }, (performance.now() - started) / 1000);
    };
    try {
      const r = await score(payload, job);
      const outcome = r.skipped ? "not-attributable" : "attributed";
      observe(r.method ?? "none", outcome);
      for (const s of r.results ?? [])
        if (s.created) metrics.signedResults.inc({ validator: s.validatorAddress });
      if (r.settlement === "triggered")
        metrics.settlementHandOffs.inc({ reason: r.skipped ? "not-attributable" : "quorum" });
      return r;
    } catch (err) {
      observe("unknown", "failed");
      throw err;
    }
  };
}

interface ScoreOutcome {
  method?: string;
  results?: Awaited<ReturnType<typeof signAndStore>>[];
  skipped?: string;
  settlement: "triggered" | "waiting for quorum";
}

export function scoreOnce(
  app: FastifyInstance,
): (payload: JobPayload<"attribution.score">, job: JobContext) => Promise<ScoreOutcome> {
  return async ({ inferenceId, validatorAddress }): Promise<ScoreOutcome> => {
    const ctx = app.attribution;
    const [chain, held] = await Promise.all([ctx.chain(), ctx.validators()]);
    const handOff = {
      db: app.db,
      producer: app.producer,
      quorum: () => readValidatorQuorum(chain.publicClient, verifyingContract(chain)),
    };
    const identities = validatorAddress ? held.filter((v) => v.address === validatorAddress) : held;
    if (identities.length === 0) {
      // Another process may hold this key: a plain error lets BullMQ retry (possibly elsewhere).
      throw new Error(
        validatorAddress
          ? `validator ${validatorAddress} is not configured in this process (VALIDATOR_PRIVATE_KEYS)`
          : "no validator identities configured (VALIDATOR_PRIVATE_KEYS)",
      );
    }
    // Stake first: an understaked validator must not sign, and if none may, nothing is computed.
    const eligible = [];
    const refused: string[] = [];
    for (const identity of identities) {
      if (await meetsValidatorStake(chain, identity.address)) eligible.push(identity);
      else {
        app.log.warn({ inferenceId, validator: identity.address }, "validator below minimum stake: refused");
        refused.push(identity.address);
      }
    }
    const stored = [];
    let method: string | undefined;
    if (eligible.length > 0) {
      let computed: Awaited<ReturnType<typeof computeAttribution>>;
      try {
        computed = await computeAttribution(app.db, ctx, inferenceId);
      } catch (err) {
        if (err instanceof ScoringError && err.code === "NO_TRAINING_VERSIONS") {
          // Nothing to attribute, ever: settlement need not wait for a quorum that cannot come.
          await handToSettlement(handOff, inferenceId, "not-attributable");
          return { skipped: err.message, settlement: "triggered" };
        }
        if ((err instanceof ScoringError && !err.retryable) || err instanceof ArtifactMismatchError) {
          throw new UnrecoverableError(err.message);
        }
        throw err;
      }
      method = computed.method;
      for (const identity of eligible)
        stored.push(await signAndStore(app.db, chain, identity, inferenceId, computed));
    }
    // A quorum may exist now (this process's validators, or with another process's results).
    const triggered = stored.length > 0 && (await handToSettlement(handOff, inferenceId, "attributed"));
    if (refused.length > 0) throw new UnrecoverableError(new UnderstakedError(refused.join(", ")).message);
    app.log.info(
      { inferenceId, results: stored.map((s) => [s.validatorAddress, s.resultHash, s.created]) },
      "attributed",
    );
    return { method, results: stored, settlement: triggered ? "triggered" : "waiting for quorum" };
  };
}
