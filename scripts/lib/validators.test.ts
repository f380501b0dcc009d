import assert from "node:assert/strict";
import { test } from "node:test";
import { validatorPort, validatorUrls } from "./validators.ts";

test("the further validators listen on PLATFORM_VALIDATOR_PORTS when given, else ATTRIBUTION_PORT + 10, + 20", () => {
  assert.deepEqual(validatorUrls("http://127.0.0.1:4002"), [
    "http://127.0.0.1:4002",
    "http://127.0.0.1:4012",
    "http://127.0.0.1:4022",
  ]);
  assert.deepEqual(validatorUrls("http://127.0.0.1:4002", [39001, 39002]), [
    "http://127.0.0.1:4002",
    "http://127.0.0.1:39001",
    "http://127.0.0.1:39002",
  ]);
  assert.equal(validatorPort(4002, 0, [39001]), 4002);
  assert.equal(validatorPort(4002, 2, [39001]), 4022, "one given: the other keeps its default");
});
