import { randomUUID } from "node:crypto";
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { GatewayConfig } from "@openledger/config";
import type { FastifyInstance } from "fastify";
import fp from "fastify-plugin";
import { z } from "zod";

/** What `hot-adapters.json` holds: the RAM tier's adapters, most recently used first. */
const HotSetFile = z.object({ savedAt: z.string(), adapters: z.array(z.string().min(1)).max(100_000) });

/** The saved hot set, or none when there is no file yet or it cannot be read (a warm-up is best effort). */
export async function readHotSet(file: string): Promise<string[]> {
  const text = await readFile(file, "utf8").catch(() => undefined);
  if (text === undefined) return [];
  try {
    return HotSetFile.parse(JSON.parse(text)).adapters;
  } catch {
    return [];
  }
}

/** Written beside and renamed over, so a crash mid-write leaves the previous set, never half of one. */
export async function writeHotSet(file: string, adapters: readonly string[]): Promise<void> {
  await mkdir(dirname(file), { recursive: true });
  const tmp = `${file}.${randomUUID()}.tmp`;
  await writeFile(tmp, JSON.stringify({ savedAt: new Date().toISOString(), adapters }));
  await rename(tmp, file);
}

/**
 * A restart keeps the RAM tier's hot set (GATEWAY_HOT_SET): the adapters in RAM are saved to
 * `<GATEWAY_DATA_DIR>/hot-adapters.json` every GATEWAY_HOT_SET_SAVE_MS and on close; at start the
 * saved set is loaded back in the background once the app is ready (readiness does not wait),
 * one adapter at a time at the lowest load priority, only while the RAM budget has room
 * (serving-core's `AdapterCache.warm`) — with slot files each is one read. Without it the first
 * minutes after a restart meet an empty RAM tier: every adapter's first request waits for its load.
 */
export const hotSetPlugin = fp<{ config: GatewayConfig }>(
  async (app: FastifyInstance, { config }) => {
    if (!config.GATEWAY_HOT_SET) return;
    const file = join(config.GATEWAY_DATA_DIR, "hot-adapters.json");
    const save = () => writeHotSet(file, app.host.cache.hotSet());
    const stop = new AbortController();
    app.addHook("onReady", async () => {
      const ids = await readHotSet(file);
      if (ids.length === 0) return;
      const started = performance.now();
      void app.host.cache.warm(ids, stop.signal).then(
        (r) =>
          app.log.info(
            { ...r, saved: ids.length, ms: Math.round(performance.now() - started) },
            "adapter hot set warmed",
          ),
        (err: unknown) => app.log.warn({ err }, "adapter hot set warm-up failed"),
      );
    });
    app.background.every("gateway hot set", config.GATEWAY_HOT_SET_SAVE_MS, save);
    app.addHook("onClose", async () => {
      stop.abort();
      await save().catch((err: unknown) => app.log.warn({ err }, "saving the adapter hot set failed"));
    });
  },
  { name: "gateway-hot-set", dependencies: ["gateway-host", "gateway-catalog"] },
);
