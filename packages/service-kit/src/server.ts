import { type BaseConfig, ConfigError } from "@openledger/config";
import type { QueueName } from "@openledger/queue";
import closeWithGrace from "close-with-grace";
import { buildService, type ServiceDefinition } from "./service.ts";

/**
 * Entry point of a service process: build, listen, and on SIGINT/SIGTERM stop taking
 * requests, finish running jobs and close connections (forced after `graceMs`).
 */
export async function runService<C extends BaseConfig, Q extends QueueName>(
  def: ServiceDefinition<C, Q>,
  config: C,
  port: number,
  graceMs = 10_000,
): Promise<void> {
  let app: Awaited<ReturnType<typeof buildService>>;
  try {
    app = await buildService(def, config);
  } catch (err) {
    // A refusal to start (e.g. exposed without its tokens) is a message for the operator, not a stack.
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(78); // EX_CONFIG, as loadConfig
    }
    throw err;
  }
  const closer = closeWithGrace({ delay: graceMs }, async ({ signal, err }) => {
    if (err) app.log.error({ err }, "closing after an uncaught error");
    else app.log.info({ signal }, "shutting down");
    await app.close();
  });
  if (config.EXIT_WITH_STDIN) {
    // The supervisor holds our stdin open; when it dies, stdin ends and we stop too.
    process.stdin.on("end", () => closer.close());
    process.stdin.resume();
  }
  const address = await app.listen({ port, host: config.HOST });
  app.log.info({ address, docs: `${address}/docs` }, `${def.name} listening on ${address}`);
}
