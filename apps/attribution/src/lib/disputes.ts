import {
  attributionDisputeTypedData,
  IntentRejectedError,
  type IntentSpec,
  inferenceIdToBytes32,
  readValidatorQuorum,
  sortSignatures,
  type ValidatorQuorum,
  validatorDisputesAbi,
} from "@openledger/chain";
import { type Db, inferenceEpochBlockSql } from "@openledger/db";
import type { FastifyInstance } from "fastify";
import { type Abi, type Address, encodeAbiParameters, type Hex, keccak256 } from "viem";
import type { ChainContext, ValidatorIdentity } from "./context.ts";
import type { AttestorLog } from "./epoch-attestor.ts";
import { type QuorumAt, quorumResult } from "./settlement-trigger.ts";
import { recoverSigner, verifyingContract } from "./validator.ts";

/**
 * Validators file disputes by themselves (ARCHITECTURE "Disagreement and disputes"). A validator whose own
 * result of an inference is the quorum's signs, for every other validator that signed a different result (a
 * counted reveal, as settlement counts it, at the validator set of the inference's epoch: `QuorumAt`,
 * `dissentingValidators`), ValidatorDisputes' EIP-712
 * `AttributionDispute{validator, inferenceId, signedResultHash, quorumResultHash}` and records it in
 * `attribution_dispute_signatures`; a validator whose own result is not the quorum's signs nothing (it cannot
 * say the quorum's result is the recomputation). Once at least `requiredSignatures()` active validators other
 * than the accused have signed, each signer's process drives one chain intent per (accused, inference) —
 * `fileDispute` with the signatures ascending by signer and the accused's own AttributionResult signature as
 * evidence — so there is at most one transaction at a time (the intent row is claimed before one is signed),
 * the contract refuses a second filing anyway, and a refused or lost submission stays pending and is retried
 * on the next pass, after a restart too.
 */

/** How far back a validator looks for results that differ from its own (by its own result's creation). */
export const DISPUTE_WINDOW_MS = 24 * 60 * 60_000;

/**
 * How long a validator's own result stays open after it was stored, whatever else: a commitment numbered
 * before it whose transaction commits later is still seen (settlement's sweeper trails by a minute too).
 */
export const DISPUTE_SETTLE_MS = 60_000;

/** The chain intent that files the dispute against `accused` for `inferenceId`. */
export const disputeIntentKey = (accused: string, inferenceId: string) =>
  `validator-dispute:${accused.toLowerCase()}:${inferenceId}`;

/** ValidatorDisputes.proposalOf key: keccak256(abi.encode(validator, inferenceId)). */
export function disputeProposalKey(accused: string, inferenceId: string): Hex {
  return keccak256(
    encodeAbiParameters(
      [{ type: "address" }, { type: "bytes32" }],
      [accused as Address, inferenceIdToBytes32(inferenceId)],
    ),
  );
}

/**
 * Signs and records this validator's disputes: for each recent inference where another validator's result
 * differs from its own, once the quorum's result is known and is its own. Returns how many it signed.
 *
 * Each of its own results is read until nothing about it can change any more, then marked
 * (`attribution_results.dispute_checked_at`) and never read again: the pass reads only unmarked results
 * (a partial index), not a day of them. Final means: the inference's epoch is known (its validator set
 * is then fixed: `QuorumAt`), this validator's reveal is ordered after its own commitment (so a commitment
 * recorded later can never count: it is after the commit phase closed), every commitment of the inference
 * ordered before that reveal has its reveal (a validator that committed in time and reveals late can still
 * dissent, and is still disputed), and the result is older than `DISPUTE_SETTLE_MS`. A result whose own
 * hash is not the quorum's is final too (a quorum is > 1/2 of the set: its hash cannot change). An inference
 * created before any epoch closed has no epoch's set (`inferenceEpochBlockSql` is null, and stays null): it is
 * counted at the set now, as settlement counts it ("the state at settlement"), and its results are final once
 * settlement has settled it (a `settlements` row) and the rest holds — the pass that marks them counts at the
 * set then, settlement's unless the set changed in between (one pass interval). Left unsettled (held), they
 * stop being read at `DISPUTE_WINDOW_MS` like every result.
 */
export async function signDisputes(
  db: Db,
  chain: ChainContext,
  identity: ValidatorIdentity,
  quorumAt: QuorumAt,
  log: AttestorLog,
): Promise<number> {
  const todo = await db.$queryRawUnsafe<
    {
      result_id: string;
      id: string;
      mine: string;
      my_signature: string;
      epoch_block: string | null;
      disagrees: boolean;
      settled: boolean;
      paid: boolean;
    }[]
  >(
    // From this validator's own recent unmarked results (stored with its lower-case address; partial index).
    `SELECT mine.id::text AS result_id, mine.inference_id::text AS id, lower(mine.result_hash) AS mine,
            mine.signature AS my_signature, ${inferenceEpochBlockSql("i")} AS epoch_block,
            EXISTS (SELECT 1 FROM attribution_results r
                     WHERE r.inference_id = mine.inference_id AND lower(r.validator_address) <> $1
                       AND lower(r.result_hash) <> lower(mine.result_hash)
                       AND NOT EXISTS (SELECT 1 FROM attribution_dispute_signatures s
                                        WHERE s.inference_id = r.inference_id AND s.accused = lower(r.validator_address)
                                          AND s.signer = $1)) AS disagrees,
            (mine.created_at < now() - make_interval(secs => $3::double precision / 1000)
             AND EXISTS (SELECT 1 FROM attribution_commitments own
                          WHERE own.inference_id = mine.inference_id AND own.validator_address = mine.validator_address
                            AND own.seq < mine.reveal_seq)
             AND NOT EXISTS (SELECT 1 FROM attribution_commitments c
                              WHERE c.inference_id = mine.inference_id AND c.seq < mine.reveal_seq
                                AND NOT EXISTS (SELECT 1 FROM attribution_results r
                                                 WHERE r.inference_id = c.inference_id
                                                   AND r.validator_address = c.validator_address))) AS settled,
            EXISTS (SELECT 1 FROM settlements st WHERE st.inference_id = mine.inference_id) AS paid
       FROM attribution_results mine
       JOIN inferences i ON i.id = mine.inference_id
      WHERE mine.validator_address = $1 AND mine.dispute_checked_at IS NULL
        AND mine.created_at > now() - make_interval(secs => $2::double precision / 1000)
      ORDER BY mine.created_at`,
    identity.address,
    DISPUTE_WINDOW_MS,
    DISPUTE_SETTLE_MS,
  );
  const checked: string[] = [];
  let signed = 0;
  for (const { result_id, id, mine, my_signature, epoch_block, disagrees, settled, paid } of todo) {
    // Before any epoch close there is no epoch's set: counted at the set now, as settlement counts it, and final
    // once settlement has (it counts an inference once, at the set then, and never again).
    const final = settled && (epoch_block !== null || paid);
    if (!disagrees) {
      if (final) checked.push(result_id);
      continue;
    }
    const outcome = await quorumResult(db, id, quorumAt);
    if (!outcome) {
      // No quorum yet: the next pass looks again (unless none can form any more).
      if (final) checked.push(result_id);
      continue;
    }
    // The row that says it is this validator's own result must be: a row written by anyone else is no
    // recomputation of ours.
    const ours = (await recoverSigner(chain, id, mine as Hex, my_signature as Hex)) === identity.address;
    if (!ours || mine !== outcome.resultHash) {
      checked.push(result_id);
      log.warn(
        { inferenceId: id, validator: identity.address, own: mine, quorum: outcome.resultHash, ours },
        "this validator's own result is not the quorum's: it signs no dispute for this inference",
      );
      continue;
    }
    for (const d of outcome.counted) {
      if (d.validator === identity.address || d.resultHash === outcome.resultHash) continue;
      // Its signature over the bytes it signed is the evidence; without it there is nothing to file.
      let signer: string | undefined;
      try {
        signer = await recoverSigner(chain, id, d.resultHash as Hex, d.signature as Hex);
      } catch {}
      if (signer !== d.validator) continue;
      const message = {
        validator: d.validator as Address,
        inferenceId: inferenceIdToBytes32(id),
        signedResultHash: d.resultHash as Hex,
        quorumResultHash: outcome.resultHash as Hex,
      };
      const signature = await identity.account.signTypedData(
        attributionDisputeTypedData(chain.chainId, chain.addresses.contracts.ValidatorDisputes, message),
      );
      signed += await db.$executeRawUnsafe(
        `INSERT INTO attribution_dispute_signatures
                (accused, inference_id, signer, signed_result_hash, quorum_result_hash, signature)
         VALUES ($1, $2::uuid, $3, $4, $5, $6) ON CONFLICT DO NOTHING`,
        d.validator,
        id,
        identity.address,
        d.resultHash,
        outcome.resultHash,
        signature,
      );
      log.info(
        { inferenceId: id, validator: identity.address, accused: d.validator },
        "dispute signed: the accused signed a result other than the quorum's",
      );
    }
    if (final) checked.push(result_id);
  }
  if (checked.length > 0)
    await db.$executeRawUnsafe(
      `UPDATE attribution_results SET dispute_checked_at = now() WHERE id = ANY($1::uuid[])`,
      checked,
    );
  return signed;
}

/** The set a filing is checked against, as one key: keccak256(abi.encode(need, sorted active addresses)). */
export function validatorSetKey(q: Pick<ValidatorQuorum, "need" | "active">): Hex {
  return keccak256(
    encodeAbiParameters(
      [{ type: "uint256" }, { type: "address[]" }],
      [BigInt(q.need), [...q.active].sort() as Address[]],
    ),
  );
}

/** How a dispute group the chain refused is retried (`fileDisputes`). */
export interface DisputeRefusalPolicy {
  /** The refusal that gives the group up (never read by the pass again). */
  maxRefusals: number;
  /** Wait after the n-th refusal (n >= 1) before the group is read again, ms. */
  backoffMs(refusals: number): number;
  /** Each refusal: "retry" (backed off) or "given_up" (the metric). */
  onRefused?(outcome: "retry" | "given_up"): void;
}

/**
 * 1, 2, 4, 8 minutes, then given up at the fifth refusal (about a quarter of an hour of tries): a refusal that
 * outlives that is not transient (a revoked role, a paused contract, evidence the contract rejects) and needs
 * an operator, not a pass every few seconds forever.
 */
export const DISPUTE_REFUSAL_POLICY: DisputeRefusalPolicy = {
  maxRefusals: 5,
  backoffMs: (n) => 60_000 * 2 ** (n - 1),
};

/**
 * Files the disputes this validator signed that enough active validators (other than the accused) have
 * signed and that are not filed yet: one chain intent per (accused, inference), signed with this validator's
 * key (it is the reporter). Returns the disputes confirmed on chain in this pass. `quorum` is the
 * distributor's NOW, because that is what ValidatorDisputes checks the signers against when it files (it
 * has no past sets, and no filing window): a signer removed since signing no longer counts, and validators
 * added since raise `requiredSignatures()` (ARCHITECTURE "Who can move money", known bound).
 *
 * Bounded: a group is read until it is confirmed on chain (its rows get `filed_at`, never read again) or until
 * a pass finds it cannot be filed at today's set (too few of its signers active, or no evidence): its rows get
 * `parked_set` = `validatorSetKey` of that set, and it is not read again while the set is the same. Only two
 * things can make such a group fileable, and each re-opens it: a new signature (its row is inserted open; rows
 * the pass did not read are not parked) and any change of the set (need or members: the key differs).
 *
 * A group the chain refused (its intent reverts and stays pending) is retried with exponential backoff: its rows
 * count the refusal and are not read before `retry_at` (`refusal.backoffMs(refusals)`); at the
 * `refusal.maxRefusals`-th refusal it is given up (`given_up_at`): never read by the pass again, logged as an
 * error and counted (attribution_dispute_refusals_total{outcome="given_up"}) for an operator to look at. A new
 * signature re-opens even such a group for one more try (its row is inserted open), counting on from the
 * group's highest count: retries stay bounded by the signatures a group can get.
 */
export async function fileDisputes(
  db: Db,
  chain: ChainContext,
  identity: ValidatorIdentity,
  quorum: () => Promise<Pick<ValidatorQuorum, "need" | "active">>,
  log: AttestorLog & { error(obj: object, msg?: string): void },
  refusal: DisputeRefusalPolicy = DISPUTE_REFUSAL_POLICY,
): Promise<number> {
  const [{ open } = { open: false }] = await db.$queryRawUnsafe<{ open: boolean }[]>(
    `SELECT EXISTS (SELECT 1 FROM attribution_dispute_signatures WHERE filed_at IS NULL) AS open`,
  );
  if (!open) return 0;
  const q = await quorum();
  const setKey = validatorSetKey(q);
  const groups = await db.$queryRawUnsafe<
    {
      accused: string;
      inference_id: string;
      signed_hash: string;
      quorum_hash: string;
      signers: string[];
      signatures: string[];
      evidence: string | null;
      confirmed: boolean;
      refusals: number;
    }[]
  >(
    // Groups with a row not filed and not parked at today's set, that this validator signed. Three range
    // reads of the partial index (an OR, or `<>`, reads every parked row: 5 ms against 0.1 ms for 2,000 parked
    // rows, scratch measure).
    // A row given up, or waiting for its retry time, does not open its group.
    `WITH open AS (
       SELECT accused, inference_id FROM attribution_dispute_signatures WHERE filed_at IS NULL AND parked_set IS NULL
              AND given_up_at IS NULL AND (retry_at IS NULL OR retry_at <= now())
       UNION SELECT accused, inference_id FROM attribution_dispute_signatures
              WHERE filed_at IS NULL AND parked_set < $2::char(66)
                AND given_up_at IS NULL AND (retry_at IS NULL OR retry_at <= now())
       UNION SELECT accused, inference_id FROM attribution_dispute_signatures
              WHERE filed_at IS NULL AND parked_set > $2::char(66)
                AND given_up_at IS NULL AND (retry_at IS NULL OR retry_at <= now()))
     SELECT s.accused, s.inference_id::text AS inference_id, s.signed_result_hash AS signed_hash,
            s.quorum_result_hash AS quorum_hash, array_agg(s.signer ORDER BY s.signer) AS signers,
            array_agg(s.signature ORDER BY s.signer) AS signatures, max(s.refusals)::int AS refusals,
            (SELECT r.signature FROM attribution_results r
              WHERE r.inference_id = s.inference_id AND lower(r.validator_address) = s.accused
                AND lower(r.result_hash) = lower(s.signed_result_hash)) AS evidence,
            EXISTS (SELECT 1 FROM chain_intents c
                     WHERE c.key = 'validator-dispute:' || s.accused || ':' || s.inference_id::text
                       AND c.status = 'confirmed') AS confirmed
       FROM open o JOIN attribution_dispute_signatures s USING (accused, inference_id)
      WHERE EXISTS (SELECT 1 FROM attribution_dispute_signatures m
                     WHERE m.accused = o.accused AND m.inference_id = o.inference_id AND m.signer = $1)
      GROUP BY s.accused, s.inference_id, s.signed_result_hash, s.quorum_result_hash
      ORDER BY min(s.created_at)`,
    identity.address,
    setKey,
  );
  if (groups.length === 0) return 0;
  // A group's marks go on the rows this pass read (a row inserted since stays open, and re-opens the group).
  const filedAt = (g: (typeof groups)[number]) =>
    db.$executeRawUnsafe(
      `UPDATE attribution_dispute_signatures SET filed_at = now(), parked_set = NULL
        WHERE accused = $1 AND inference_id = $2::uuid AND signer = ANY($3::text[])`,
      g.accused,
      g.inference_id,
      g.signers,
    );
  const park = (g: (typeof groups)[number]) =>
    db.$executeRawUnsafe(
      `UPDATE attribution_dispute_signatures SET parked_set = $4
        WHERE accused = $1 AND inference_id = $2::uuid AND signer = ANY($3::text[]) AND filed_at IS NULL`,
      g.accused,
      g.inference_id,
      g.signers,
      setKey,
    );
  /** The chain refused the group's filing: back off, or give it up at the last allowed refusal. */
  const refused = async (g: (typeof groups)[number], reason: string) => {
    const refusals = g.refusals + 1;
    const givenUp = refusals >= refusal.maxRefusals;
    await db.$executeRawUnsafe(
      `UPDATE attribution_dispute_signatures
          SET refusals = $4, retry_at = now() + $5::int * interval '1 millisecond',
              given_up_at = CASE WHEN $6 THEN now() END
        WHERE accused = $1 AND inference_id = $2::uuid AND signer = ANY($3::text[]) AND filed_at IS NULL`,
      g.accused,
      g.inference_id,
      g.signers,
      refusals,
      givenUp ? 0 : Math.round(refusal.backoffMs(refusals)),
      givenUp,
    );
    refusal.onRefused?.(givenUp ? "given_up" : "retry");
    const ctx = { inferenceId: g.inference_id, accused: g.accused, reason, refusals };
    if (givenUp) log.error(ctx, "dispute refused by the chain too many times: given up, not retried");
    else log.warn(ctx, "dispute refused by the chain: retried after a backoff");
  };
  const disputes = chain.addresses.contracts.ValidatorDisputes;
  let filed = 0;
  for (const g of groups) {
    const signatures = g.signers
      .map((signer, i) => ({ signer: signer as Address, signature: g.signatures[i] as Hex }))
      .filter((s) => s.signer !== g.accused && q.active.has(s.signer));
    if (g.confirmed) {
      await filedAt(g); // filed by another signer's process
      continue;
    }
    if (signatures.length < q.need || !g.evidence) {
      await park(g); // not enough signers at this set (yet)
      continue;
    }
    const spec: IntentSpec = {
      key: disputeIntentKey(g.accused, g.inference_id),
      kind: "validator-disputes.file",
      payload: {
        accused: g.accused,
        inferenceId: g.inference_id,
        signedResultHash: g.signed_hash,
        quorumResultHash: g.quorum_hash,
        signers: signatures.map((s) => s.signer),
      },
      call: {
        address: disputes,
        abi: validatorDisputesAbi as Abi,
        functionName: "fileDispute",
        args: [
          g.accused,
          inferenceIdToBytes32(g.inference_id),
          g.signed_hash,
          g.evidence,
          g.quorum_hash,
          sortSignatures(signatures),
        ],
      },
      isDone: async () =>
        (await chain.publicClient.readContract({
          address: disputes,
          abi: validatorDisputesAbi,
          functionName: "proposalOf",
          args: [disputeProposalKey(g.accused, g.inference_id)],
        })) !== 0n,
    };
    try {
      const { txHash } = await chain.executeAsValidator(db, identity.address, spec);
      await filedAt(g);
      filed++;
      log.info(
        { inferenceId: g.inference_id, accused: g.accused, validator: identity.address, txHash },
        "dispute filed on ValidatorDisputes",
      );
    } catch (err) {
      // The intent stays pending: a pass after the backoff (of this or another signer's process) tries again.
      if (!(err instanceof IntentRejectedError)) throw err;
      await refused(g, err.reason);
    }
  }
  return filed;
}

/**
 * The validator's dispute duty (a background task while ATTRIBUTION_AUTO_DISPUTE): each pass, for each
 * validator identity of this process, sign what it can say (`signDisputes`), then file what enough
 * validators said (`fileDisputes`). Returns the disputes signed and filed in the pass.
 */
export function disputeDuty(
  app: FastifyInstance,
  policy: Omit<DisputeRefusalPolicy, "onRefused"> = DISPUTE_REFUSAL_POLICY,
): () => Promise<{ signed: number; filed: number }> {
  const refusal: DisputeRefusalPolicy = {
    ...policy,
    onRefused: (outcome) => app.attribution.metrics.disputeRefusals.inc({ outcome }),
  };
  return async () => {
    const [chain, identities] = await Promise.all([app.attribution.chain(), app.attribution.validators()]);
    // The set now: read once per pass (filing checks it; inferences before any epoch close count by it).
    let read: Promise<ValidatorQuorum> | undefined;
    const quorum = () => {
      read ??= readValidatorQuorum(chain.publicClient, verifyingContract(chain));
      return read;
    };
    const atEpoch = app.attribution.quorumAt(chain);
    const quorumAt: QuorumAt = (block) => (block === null ? quorum() : atEpoch(block));
    let signed = 0;
    let filed = 0;
    for (const identity of identities) {
      signed += await signDisputes(app.db, chain, identity, quorumAt, app.log);
      filed += await fileDisputes(app.db, chain, identity, quorum, app.log, refusal);
    }
    return { signed, filed };
  };
}
