import { gatewayEnv, loadConfig } from "@openledger/config";
import { runService } from "@openledger/service-kit";
import { gatewayService, preloadModel } from "./app.ts";

const config = loadConfig("gateway", gatewayEnv);
// The model loads before the app is built (a large one exceeds Fastify's plugin timeout).
await preloadModel(config);
await runService(gatewayService, config, config.GATEWAY_PORT);
