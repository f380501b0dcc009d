import { describeServiceBasics } from "@openledger/service-kit/testing";
import { buildDatanets, datanetsConfig } from "./app.ts";

describeServiceBasics("datanets", datanetsConfig, buildDatanets);
