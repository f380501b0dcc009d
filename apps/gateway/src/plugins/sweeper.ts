import type { GatewayConfig } from "@openledger/config";
import type { FastifyInstance } from "fastify";
import fp from "fastify-plugin";

/**
 * The gateway's background passes (outbox, abandoned requests, pending registrations) as one kit
 * timer (`app.background.every`): runs never overlap (a slow DB or chain makes the next run wait
 * instead of driving the same rows twice), close waits for the run in flight, and a pass that
 * fails is logged without stopping the others.
 */
export const sweeperPlugin = fp<{ config: GatewayConfig }>(
  async (app: FastifyInstance, { config }) => {
    const passes: { name: string; run: () => Promise<unknown> }[] = [
      { name: "outbox", run: () => app.inferences.sweepOutbox() },
      { name: "abandoned requests", run: () => app.inferences.finalize("expired") },
      { name: "this replica's earlier requests", run: () => app.inferences.finalize("restart") },
      { name: "registration", run: () => app.registration.sweep() },
    ];
    app.background.every("gateway sweep", config.GATEWAY_OUTBOX_SWEEP_MS, () =>
      Promise.all(passes.map((p) => p.run().catch((err) => app.log.warn({ err }, `${p.name} sweep failed`)))),
    );
  },
  {
    name: "gateway-sweeper",
    dependencies: ["gateway-inferences", "gateway-billing", "gateway-registration"],
  },
);
