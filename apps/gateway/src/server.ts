import { gatewayEnv, loadConfig } from "@openledger/config";
import { runService } from "@openledger/service-kit";
import { gatewayService } from "./app.ts";

const config = loadConfig("gateway", gatewayEnv);
await runService(gatewayService, config, config.GATEWAY_PORT);
