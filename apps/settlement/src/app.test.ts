import { describeServiceBasics } from "@openledger/service-kit/testing";
import { buildSettlement, settlementConfig } from "./app.ts";

describeServiceBasics("settlement", settlementConfig, buildSettlement);
