import { type Db, Prisma, type Tx } from "@openledger/db";
import type { Producer } from "@openledger/queue";
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

/**
 * Inference recording: the inference row and its outbox row are written in one transaction that
 * also consumes the request's reservation, then `attribution.score` and `inference.completed` are
 * enqueued; rows Redis refused are enqueued again by `sweepOutbox`.
 */
export class InferenceRecorder {
  constructor(
    readonly db: Db,
    readonly producer: Producer,
    readonly billing: Billing,
    readonly catalog: ModelCatalog,
    readonly log: FastifyBaseLogger,
  ) {}

  /**
   * Writes the inference and its outbox row in one transaction, deleting the request's reservation
   * in the same transaction (its cost is then owed, never both or neither), then enqueues
   * `attribution.score` and `inference.completed`. If Redis refuses, the outbox row stays pending and the sweeper
   * enqueues it later (the job id is the inference id, so a duplicate is harmless).
   */
  async persist(rec: InferenceRecord, reservation?: Reservation): Promise<string> {
    const inference = await this.db.$transaction((tx) => this.record(tx, rec, reservation));
    if (reservation) this.billing.consumed(reservation);
    await this.#enqueue(inference.id);
    return inference.id;
  }

  /** The writes of `persist`, inside the caller's transaction (tests hold it open). */
  async record(tx: Tx, rec: InferenceRecord, reservation?: Reservation): Promise<{ id: string }> {
    // The prices it is served at travel with the inference: settlement charges these, not whatever
    // the model costs when it gets to it.
    const model = this.catalog.models.get(rec.modelId);
    const inf = await tx.inference.create({
      data: {
        ...(rec.id ? { id: rec.id } : {}),
        modelId: rec.modelId,
        ...(model
          ? {
              priceInPer1kWei: new Prisma.Decimal(model.priceInPer1kWei.toString()),
              priceOutPer1kWei: new Prisma.Decimal(model.priceOutPer1kWei.toString()),
            }
          : {}),
        accountAddress: rec.account,
        prompt: rec.prompt,
        output: storableOutput(rec.output),
        inputTokens: rec.inputTokens,
        outputTokens: rec.outputTokens,
        ttftMs: rec.ttftMs,
        durationMs: rec.durationMs,
      },
    });
    await tx.gatewayOutbox.create({ data: { inferenceId: inf.id } });
    if (reservation) await this.billing.consume(tx, reservation);
    return inf;
  }

  async #enqueue(inferenceId: string): Promise<boolean> {
    try {
      // Validators start attributing at once (their sweeper is only the safety net);
      // settlement waits for their quorum. Both job ids derive from the inference id.
      await this.producer.enqueue("attribution.score", { inferenceId });
      await this.producer.enqueue("inference.completed", { inferenceId });
      await this.db.gatewayOutbox.update({
        where: { inferenceId },
        data: { enqueuedAt: new Date(), attempts: { increment: 1 } },
      });
      return true;
    } catch (err) {
      this.log.warn(
        { err, inferenceId },
        "enqueue of attribution.score / inference.completed failed; the outbox sweeper will retry",
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
    app.decorate(
      "inferences",
      new InferenceRecorder(
        app.db,
        app.producer,
        app.billing,
        app.catalog,
        app.log.child({ component: "inferences" }),
      ),
    );
  },
  { name: "gateway-inferences", dependencies: ["gateway-billing", "gateway-catalog"] },
);
