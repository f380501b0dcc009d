import { attributionEnv, loadConfig } from "@openledger/config";
import { runService } from "@openledger/service-kit";
import { attributionService } from "./app.ts";

const config = loadConfig("attribution", attributionEnv);
await runService(attributionService, config, config.ATTRIBUTION_PORT);
