import { explorerEnv, loadConfig } from "@openledger/config";
import { runService } from "@openledger/service-kit";
import { explorerService } from "./app.ts";

const config = loadConfig("explorer", explorerEnv);
await runService(explorerService, config, config.EXPLORER_PORT);
