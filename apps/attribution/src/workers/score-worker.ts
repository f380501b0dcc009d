import { setTimeout as sleep } from "node:timers/promises";
import type { JobContext, JobHandler, JobPayload } from "@openledger/queue";
import { UnrecoverableError } from "bullmq";
import type { FastifyInstance } from "fastify";
import type { ValidatorIdentity } from "../lib/context.ts";
import { ArtifactMismatchError } from "../lib/indexing.ts";
import { computeAttribution, ScoringError } from "../lib/scoring.ts";
import { handToSettlement, inferenceQuorum, type SettlementHandOff } from "../lib/settlement-trigger.ts";
import {
  type Commitment,
  commitResult,
  mayReveal,
  meetsValidatorStake,
  revealResult,
  UnderstakedError,
} from "../lib/validator.ts";

/** How often a job waiting to reveal looks at the other validators' commitments again (ms). */
const REVEAL_POLL_MS = 50;
/** Committed, unrevealed results kept in memory (per process). */
const UNREVEALED_CACHE_MAX = 1_000;

/**
 * `attribution.score`: compute the inference's attribution once, then for each validator
 * identity this process holds (or only the one named in the payload): check its stake on chain,
 * commit to the canonical result (a signed commitment, nothing readable), and reveal it (the
 * result, its signature and the salt) once the other validators have committed too (`mayReveal`).
 * Validators are independent: each re-derives the result from Postgres and the content-addressed
 * artifacts, so honest ones agree byte for byte, and none can read another's before committing.
 * The job waits up to ATTRIBUTION_REVEAL_WAIT_MS for that; what is still unrevealed then is revealed
 * by the validator scan (`validatorScan`), which finds it again since its result is not stored.
 *
 * Failures that waiting cannot fix (unknown inference, model without training data, a validator
 * below the minimum stake) fail the job once, without retries; an index still being built is
 * retried with the catalog's backoff.
 */
export function scoreWorker(app: FastifyInstance): JobHandler<"attribution.score"> {
  const score = scoreOnce(app, { waitToReveal: true });
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
  results?: Awaited<ReturnType<typeof revealResult>>[];
  /** Validators that committed and have not revealed yet (waiting for the others' commitments). */
  unrevealed?: string[];
  skipped?: string;
  settlement: "triggered" | "waiting for quorum";
}

export function scoreOnce(
  app: FastifyInstance,
  opts: { waitToReveal?: boolean } = {},
): (payload: JobPayload<"attribution.score">, job: JobContext) => Promise<ScoreOutcome> {
  return async ({ inferenceId, validatorAddress }, job): Promise<ScoreOutcome> => {
    const ctx = app.attribution;
    const [chain, held] = await Promise.all([ctx.chain(), ctx.validators()]);
    const handOff: SettlementHandOff = {
      db: app.db,
      producer: app.producer,
      quorumAt: ctx.quorumAt(chain),
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
    let unrevealed: { identity: ValidatorIdentity; commitment: Commitment }[] = [];
    let method: string | undefined;
    if (eligible.length > 0) {
      let computed: Awaited<ReturnType<typeof computeAttribution>>;
      try {
        computed = ctx.unrevealed.get(inferenceId) ?? (await computeAttribution(app.db, ctx, inferenceId));
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
      for (const identity of eligible) {
        const commitment = await commitResult(app.db, chain, identity, inferenceId, computed);
        if (!commitment.matches) {
          app.log.warn(
            { inferenceId, validator: identity.address },
            "this validator's recorded commitment is to another result: its reveal will not count",
          );
        }
        unrevealed.push({ identity, commitment });
      }
      // Reveal when the others have committed (or the wait passed); a job waits for it a little, the
      // scan only looks once per pass.
      const quorum = await inferenceQuorum(app.db, inferenceId, handOff.quorumAt);
      const waitMs = ctx.config.ATTRIBUTION_REVEAL_WAIT_MS;
      const until = performance.now() + (opts.waitToReveal ? waitMs + 4 * REVEAL_POLL_MS : 0);
      for (;;) {
        const still: typeof unrevealed = [];
        for (const u of unrevealed) {
          if (await mayReveal(app.db, inferenceId, u.identity.address, quorum, waitMs)) {
            stored.push(
              await revealResult(app.db, chain, u.identity, inferenceId, computed, u.commitment.salt),
            );
          } else still.push(u);
        }
        unrevealed = still;
        if (unrevealed.length === 0 || performance.now() >= until || job.signal.aborted) break;
        await sleep(REVEAL_POLL_MS);
      }
      if (unrevealed.length === 0) ctx.unrevealed.delete(inferenceId);
      else {
        ctx.unrevealed.set(inferenceId, computed);
        // Bounded: the oldest entries go first (recomputed if their reveal is tried again).
        while (ctx.unrevealed.size > UNREVEALED_CACHE_MAX)
          ctx.unrevealed.delete(ctx.unrevealed.keys().next().value as string);
      }
    }
    // A quorum may exist now (this process's validators, or with another process's results).
    const triggered = stored.length > 0 && (await handToSettlement(handOff, inferenceId, "attributed"));
    if (refused.length > 0) throw new UnrecoverableError(new UnderstakedError(refused.join(", ")).message);
    app.log.info(
      { inferenceId, results: stored.map((s) => [s.validatorAddress, s.resultHash, s.created]) },
      "attributed",
    );
    return {
      method,
      results: stored,
      unrevealed: unrevealed.map((u) => u.identity.address),
      settlement: triggered ? "triggered" : "waiting for quorum",
    };
  };
}
