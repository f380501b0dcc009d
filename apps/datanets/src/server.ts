import { datanetsEnv, loadConfig } from "@openledger/config";
import { runService } from "@openledger/service-kit";
import { datanetsService } from "./app.ts";

const config = loadConfig("datanets", datanetsEnv);
await runService(datanetsService, config, config.DATANETS_PORT);
