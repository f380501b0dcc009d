import { randomUUID } from "node:crypto";
import { type Db, lockAccountsSql, lockReservationsSql, Prisma, type Tx } from "@openledger/db";
import type { Producer } from "@openledger/queue";
import { GroupCommit } from "@openledger/service-kit";
import type { FastifyBaseLogger, FastifyInstance } from "fastify";
import fp from "fastify-plugin";
import type { Billing, Reservation } from "./billing.ts";
import type { ModelCatalog } from "./catalog.ts";

export interface InferenceRecord {
  /** The inference's id when the client already has it (the response header); new otherwise. */
  id?: string;
  modelId: string;
  account: string;
  prompt: string;
  output: string;
  inputTokens: number;
  outputTokens: number;
  ttftMs: number | null;
  durationMs: number | null;
}

/**
 * The output as stored. Prompts are validated at the edge (safeText: no U+0000, no lone
 * surrogate), but a model's output is whatever it generated: the byte-level tiny model can emit
 * byte 0, which Postgres text refuses (22021). Such characters are stored as U+FFFD — one UTF-16
 * unit for one, so offsets into the stored text still match the text the client received.
 */
// biome-ignore lint/suspicious/noControlCharactersInRegex: U+0000 is exactly what Postgres refuses.
const UNSTORABLE = /\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

export function storableOutput(text: string): string {
  return text.replace(UNSTORABLE, "\uFFFD");
}

/** Fee of an inference row (alias `i`) in SQL, with the model's prices as fallback (alias `m`): the
 *  formula of settlement-core's `priceInference`, and of the full-history reference. */
export function feeOf(i: string): Prisma.Sql {
  const t = Prisma.raw(i);
  return Prisma.sql`(CEIL(${t}.input_tokens * COALESCE(${t}.price_in_per_1k_wei, m.price_in_per_1k_wei) / 1000)
    + CEIL(${t}.output_tokens * COALESCE(${t}.price_out_per_1k_wei, m.price_out_per_1k_wei) / 1000))`;
}

/** A recording waiting for its account's next recording statement (`persist`). */
interface PendingRecord {
  id: string;
  rec: InferenceRecord;
  reservationId: string | null;
  /** Set by the batch: whether this statement inserted it (false: it was recorded already). */
  recorded?: boolean;
}

/**
 * Inference recording: the inference row and its outbox row are written in one transaction that
 * also consumes the request's reservation, then `attribution.score` is enqueued (attribution hands
 * the inference to settlement once its validators agree); rows Redis refused are enqueued again by
 * `sweepOutbox`.
 */
export class InferenceRecorder {
  /**
   * An account's recordings batched into one statement (`persist`). False: one statement per
   * recording, as before 2026-12-05 — the A side of bench:gateway's A/B (`BENCH_GATEWAY_BASELINE=1`).
   */
  batchRecords = true;
  /** Each account's recording batches (removed when idle). */
  readonly #records = new Map<string, GroupCommit<string, PendingRecord>>();

  constructor(
    readonly db: Db,
    readonly producer: Producer,
    readonly billing: Billing,
    readonly catalog: ModelCatalog,
    readonly log: FastifyBaseLogger,
  ) {}

  /**
   * Records the inference — its row, its outbox row, the request's reservation deleted and the
   * account's totals moved (billed += fee, reserved −= the reservation's max cost) — in ONE statement,
   * so a concurrent admission sees the cost either as reserved or as owed, never neither nor both.
   * Then enqueues `attribution.score` (attribution hands the inference to settlement once its
   * validators agree); if Redis refuses, the outbox row stays pending and the sweeper enqueues it
   * later (the job id is the inference id, so a duplicate is harmless).
   */
  async persist(rec: InferenceRecord, reservation?: Reservation): Promise<string> {
    const id = rec.id ?? reservation?.id ?? randomUUID();
    if (this.batchRecords) {
      // Recordings of one account that arrive while its recording statement runs go together in
      // the next one: one commit and one hold of the account's row lock per batch, where one per
      // request made admissions (which need that row) and the pool queue behind them under load.
      let log = this.#records.get(rec.account);
      if (!log) {
        const account = rec.account;
        log = new GroupCommit<string, PendingRecord>({
          keyOf: (p) => p.id,
          run: async (batch) => {
            const recorded = await this.recordMany(this.db, account, batch);
            for (const p of batch) p.recorded = recorded.has(p.id);
          },
        });
        this.#records.set(account, log);
      }
      const pending: PendingRecord = { id, rec, reservationId: reservation?.id ?? null, recorded: false };
      try {
        await log.submit(pending);
      } finally {
        if (log.idle && this.#records.get(rec.account) === log) this.#records.delete(rec.account);
      }
      this.#warnIfRecorded(id, pending.recorded === true);
    } else {
      await this.record(this.db, { ...rec, id }, reservation);
    }
    if (reservation) this.billing.consumed(reservation);
    await this.#enqueue(id);
    return id;
  }

  /**
   * The recording statement for one inference, on `db` (or inside a caller's transaction: tests
   * hold it open): `recordMany` with one. Returns its id.
   */
  async record(db: Db | Tx, rec: InferenceRecord, reservation?: Reservation): Promise<string> {
    const id = rec.id ?? reservation?.id ?? randomUUID();
    const recorded = await this.recordMany(db, rec.account, [
      { id, rec, reservationId: reservation?.id ?? null },
    ]);
    this.#warnIfRecorded(id, recorded.has(id));
    return id;
  }

  #warnIfRecorded(id: string, recorded: boolean): void {
    if (!recorded) {
      this.log.warn(
        { inferenceId: id },
        "inference already recorded (its reservation was finalised by a sweep)",
      );
    }
  }

  /**
   * Records inferences of `account` in ONE statement: their rows and outbox rows, their reservations
   * deleted and the account's totals moved (billed += their fees, reserved −= the max costs of the
   * reservations deleted), so a concurrent admission sees each cost either as reserved or as owed,
   * never neither nor both. The prices each is served at travel with it: settlement charges these,
   * not whatever the model costs when it gets to it; the fees added to `billed` are computed from the
   * same rows, as the full-history reference computes them. An inference already recorded under its
   * id (a replica that stalled past its reservation's expiry, finalised meanwhile by a sweep) is not
   * recorded twice, nor billed, and its reservation (gone) is not subtracted. One account per
   * statement: one row lock, so no lock order to keep. Returns the ids it recorded.
   */
  async recordMany(
    db: Db | Tx,
    account: string,
    items: readonly { id: string; rec: InferenceRecord; reservationId: string | null }[],
  ): Promise<Set<string>> {
    const price = (r: InferenceRecord, side: "in" | "out") => {
      const m = this.catalog.models.get(r.modelId);
      return m ? (side === "in" ? m.priceInPer1kWei : m.priceOutPer1kWei).toString() : null;
    };
    const rows = await db.$queryRaw<{ id: string }[]>`
      WITH rec AS (
        SELECT * FROM unnest(${items.map((i) => i.id)}::uuid[], ${items.map((i) => i.reservationId)}::uuid[],
                             ${items.map((i) => i.rec.modelId)}::text[], ${items.map((i) => i.rec.prompt)}::text[],
                             ${items.map((i) => storableOutput(i.rec.output))}::text[],
                             ${items.map((i) => i.rec.inputTokens)}::int[], ${items.map((i) => i.rec.outputTokens)}::int[],
                             ${items.map((i) => i.rec.ttftMs)}::int[], ${items.map((i) => i.rec.durationMs)}::int[],
                             ${items.map((i) => price(i.rec, "in"))}::numeric[],
                             ${items.map((i) => price(i.rec, "out"))}::numeric[])
          AS r(id, reservation_id, model_id, prompt, output, input_tokens, output_tokens, ttft_ms, duration_ms,
               price_in, price_out)
      ), res AS (
        DELETE FROM gateway_reservations WHERE id IN (SELECT reservation_id FROM rec)
        RETURNING account_address, max_cost_wei
      ), inf AS (
        INSERT INTO inferences (id, model_id, account_address, prompt, output, input_tokens, output_tokens,
                                ttft_ms, duration_ms, price_in_per_1k_wei, price_out_per_1k_wei)
        SELECT id, model_id, ${account}, prompt, output, input_tokens, output_tokens, ttft_ms, duration_ms,
               price_in, price_out
          FROM rec
        ON CONFLICT (id) DO NOTHING
        RETURNING id, model_id, account_address, input_tokens, output_tokens, price_in_per_1k_wei, price_out_per_1k_wei
      ), ob AS (
        INSERT INTO gateway_outbox (inference_id) SELECT id FROM inf
      ), tot AS (
        INSERT INTO gateway_accounts AS a (account_address, billed_wei, reserved_wei)
        SELECT ${account}, COALESCE((SELECT SUM(${feeOf("inf")}) FROM inf JOIN models m ON m.id = inf.model_id), 0),
               -COALESCE((SELECT SUM(max_cost_wei) FROM res), 0)
        ON CONFLICT (account_address) DO UPDATE
          SET billed_wei = a.billed_wei + EXCLUDED.billed_wei, reserved_wei = a.reserved_wei + EXCLUDED.reserved_wei,
              updated_at = now()
      )
      SELECT id::text FROM inf`;
    return new Set(rows.map((r) => r.id));
  }

  /**
   * Writes what a stream has delivered — its text and the tokens it covers — to its reservation
   * row BEFORE the text is sent, so a replica that dies mid-stream leaves a bill for every token the
   * client received (`finalize` records it). Writes of all streams in flight go together: one
   * statement per batch, one batch in flight at a time (a stream waits one round trip per batch).
   */
  progress(reservation: Reservation, output: string, tokens: number): Promise<void> {
    return this.#progress.submit({ id: reservation.id, output: storableOutput(output), tokens });
  }

  /** The progress batches: row locks in id order (`lockReservationsSql`, as the renewal takes them). */
  readonly #progress = new GroupCommit<string, { id: string; output: string; tokens: number }>({
    keyOf: (p) => p.id,
    run: (batch) => this.writeProgress(batch),
  });

  /** `enqueued_at` marks of outbox rows whose job is in Redis: one statement per batch. */
  readonly #enqueued = new GroupCommit<string, string>({
    keyOf: (id) => id,
    run: async (ids) => {
      await this.db.$executeRaw`
        UPDATE gateway_outbox SET enqueued_at = now(), attempts = attempts + 1
         WHERE inference_id = ANY(${ids}::uuid[])`;
    },
  });

  /** One progress batch (the ProgressLog's flush; tests call it to drive a batch themselves). */
  async writeProgress(batch: readonly { id: string; output: string; tokens: number }[]): Promise<void> {
    const ids = batch.map((b) => b.id);
    await this.db.$executeRaw`
      WITH locked AS (${lockReservationsSql(ids)})
      UPDATE gateway_reservations r SET output = v.output, output_tokens = v.tokens
        FROM unnest(${ids}::uuid[], ${batch.map((b) => b.output)}::text[],
                    ${batch.map((b) => b.tokens)}::int[]) AS v(id, output, tokens)
        JOIN locked ON locked.id = v.id
       WHERE r.id = v.id`;
  }

  /**
   * Turns abandoned reservations into what they owe: each one that delivered tokens becomes its
   * inference (the id the client already has, the text and tokens written before they were sent),
   * billed and enqueued; every one leaves the reserved total. Abandoned = this replica's from an
   * earlier process (`restart`: run at start-up, so holds are released at once, not after the
   * TTL), or anyone's expired ones (`expired`: a crashed replica that does not come back).
   * The accounts' totals are locked in address order (`lockAccountsSql`), as settlement's charges
   * and other replicas' sweeps lock them. Returns how many inferences it recorded.
   */
  async finalize(which: "restart" | "expired"): Promise<number> {
    const abandoned =
      which === "restart"
        ? Prisma.sql`replica_id = ${this.billing.replicaId} AND boot_id IS DISTINCT FROM ${this.billing.bootId}::uuid`
        : Prisma.sql`expires_at <= now()`;
    let recorded = 0;
    for (;;) {
      const rows = await this.db.$queryRaw<{ id: string | null; released: number }[]>`
        WITH res AS (
          DELETE FROM gateway_reservations WHERE id IN (
            SELECT id FROM gateway_reservations WHERE ${abandoned}
             ORDER BY created_at LIMIT 500 FOR UPDATE SKIP LOCKED)
          RETURNING *
        ), inf AS (
          INSERT INTO inferences (id, model_id, account_address, prompt, output, input_tokens, output_tokens,
                                  ttft_ms, price_in_per_1k_wei, price_out_per_1k_wei)
          SELECT id, model_id, account_address, COALESCE(prompt, ''), output, input_tokens, output_tokens, ttft_ms,
                 price_in_per_1k_wei, price_out_per_1k_wei
            FROM res WHERE output_tokens > 0 AND model_id IS NOT NULL
          ON CONFLICT (id) DO NOTHING
          RETURNING id, model_id, account_address, input_tokens, output_tokens, price_in_per_1k_wei, price_out_per_1k_wei
        ), ob AS (
          INSERT INTO gateway_outbox (inference_id) SELECT id FROM inf
        ), fees AS (
          SELECT inf.account_address, SUM(${feeOf("inf")}) AS billed
            FROM inf JOIN models m ON m.id = inf.model_id GROUP BY inf.account_address
        ), holds AS (
          SELECT account_address, SUM(max_cost_wei) AS held FROM res GROUP BY account_address
        ), locked AS (${lockAccountsSql(Prisma.sql`SELECT account_address FROM res`)}
        ), tot AS (
          UPDATE gateway_accounts a
             SET billed_wei = a.billed_wei + COALESCE(f.billed, 0), reserved_wei = a.reserved_wei - h.held,
                 updated_at = now()
            FROM holds h JOIN locked l ON l.account_address = h.account_address
                 LEFT JOIN fees f ON f.account_address = h.account_address
           WHERE a.account_address = h.account_address
        )
        SELECT inf.id::text AS id, (SELECT count(*) FROM res)::int AS released FROM inf
        UNION ALL SELECT NULL, (SELECT count(*) FROM res)::int WHERE NOT EXISTS (SELECT 1 FROM inf)`;
      const ids = rows.flatMap((r) => (r.id ? [r.id] : []));
      recorded += ids.length;
      if (ids.length > 0) {
        this.log.info({ which, inferences: ids }, "abandoned streams recorded for what they delivered");
      }
      for (const id of ids) await this.#enqueue(id);
      if ((rows[0]?.released ?? 0) < 500) return recorded;
    }
  }

  async #enqueue(inferenceId: string): Promise<boolean> {
    try {
      // The straight data path: validators attribute, then attribution hands the inference to
      // settlement (whose deadline sweeper is the only fallback). The job id is the inference id.
      await this.producer.enqueue("attribution.score", { inferenceId });
      await this.#enqueued.submit(inferenceId);
      return true;
    } catch (err) {
      this.log.warn(
        { err, inferenceId },
        "enqueue of attribution.score failed; the outbox sweeper will retry",
      );
      await this.db.gatewayOutbox
        .update({ where: { inferenceId }, data: { attempts: { increment: 1 } } })
        .catch(() => {});
      return false;
    }
  }

  /** Re-enqueues outbox rows still pending after 5 s. Returns how many were enqueued. */
  async sweepOutbox(olderThanMs = 5000): Promise<number> {
    const pending = await this.db.gatewayOutbox.findMany({
      where: { enqueuedAt: null, createdAt: { lt: new Date(Date.now() - olderThanMs) } },
      orderBy: { createdAt: "asc" },
      take: 500,
    });
    let n = 0;
    for (const p of pending) if (await this.#enqueue(p.inferenceId)) n++;
    return n;
  }
}

declare module "fastify" {
  interface FastifyInstance {
    inferences: InferenceRecorder;
  }
}

export const inferencesPlugin = fp(
  async (app: FastifyInstance) => {
    const recorder = new InferenceRecorder(
      app.db,
      app.producer,
      app.billing,
      app.catalog,
      app.log.child({ component: "inferences" }),
    );
    app.decorate("inferences", recorder);
    // This replica's requests of an earlier run (killed mid-stream): recorded for what they delivered
    // and their holds released now, not when they expire. If Postgres is not there yet, the sweeper
    // does it on its next pass.
    await recorder.finalize("restart").catch((err) => {
      app.log.warn({ err }, "could not finalise this replica's earlier requests yet; the sweeper retries");
    });
  },
  { name: "gateway-inferences", dependencies: ["gateway-billing", "gateway-catalog"] },
);
