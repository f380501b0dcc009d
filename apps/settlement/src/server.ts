import { loadConfig, settlementEnv } from "@openledger/config";
import { runService } from "@openledger/service-kit";
import { settlementService } from "./app.ts";

const config = loadConfig("settlement", settlementEnv);
await runService(settlementService, config, config.SETTLEMENT_PORT);
