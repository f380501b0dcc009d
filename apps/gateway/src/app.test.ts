import { describeServiceBasics } from "@openledger/service-kit/testing";
import { buildGateway, gatewayConfig } from "./app.ts";

describeServiceBasics("gateway", gatewayConfig, buildGateway);
