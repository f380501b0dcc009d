import { factoryEnv, loadConfig } from "@openledger/config";
import { runService } from "@openledger/service-kit";
import { factoryService } from "./app.ts";

const config = loadConfig("factory", factoryEnv);
await runService(factoryService, config, config.FACTORY_PORT);
