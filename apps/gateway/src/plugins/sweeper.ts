import type { GatewayConfig } from "@openledger/config";
import type { FastifyBaseLogger, FastifyInstance } from "fastify";
import fp from "fastify-plugin";

/** One background pass: a name for the logs and the work. */
export interface SweepPass {
  name: string;
  run: () => Promise<unknown>;
}

/**
 * Runs the gateway's background passes (outbox, abandoned requests, pending registrations) every
 * `intervalMs`. Single-flight: a tick while a pass runs (slow DB or chain) joins it instead of
 * starting an overlapping one that would drive the same rows twice; `stop` waits for it.
 */
export class Sweeper {
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;

  constructor(
    readonly intervalMs: number,
    readonly passes: SweepPass[],
    readonly log: FastifyBaseLogger,
  ) {}

  start(): void {
    this.#timer = setInterval(() => void this.once(), this.intervalMs);
    this.#timer.unref();
  }

  once(): Promise<void> {
    this.#running ??= (async () => {
      await Promise.all(
        this.passes.map((p) => p.run().catch((err) => this.log.warn({ err }, `${p.name} sweep failed`))),
      );
    })().finally(() => {
      this.#running = undefined;
    });
    return this.#running;
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.#running;
  }
}

export const sweeperPlugin = fp<{ config: GatewayConfig }>(
  async (app: FastifyInstance, { config }) => {
    const sweeper = new Sweeper(
      config.GATEWAY_OUTBOX_SWEEP_MS,
      [
        { name: "outbox", run: () => app.inferences.sweepOutbox() },
        { name: "abandoned requests", run: () => app.inferences.finalize("expired") },
        { name: "this replica's earlier requests", run: () => app.inferences.finalize("restart") },
        { name: "registration", run: () => app.registration.sweep() },
      ],
      app.log,
    );
    sweeper.start();
    app.addHook("onClose", () => sweeper.stop());
  },
  {
    name: "gateway-sweeper",
    dependencies: ["gateway-inferences", "gateway-billing", "gateway-registration"],
  },
);
