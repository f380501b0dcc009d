import { describeServiceBasics } from "@openledger/service-kit/testing";
import { attributionConfig, buildAttribution } from "./app.ts";

describeServiceBasics("attribution", attributionConfig, buildAttribution);
