import assert from "node:assert/strict";
import { test } from "node:test";
import { rpcOrigin } from "./clients.ts";

test("rpcOrigin keeps only scheme, host and port: API keys in paths or queries never reach logs", () => {
  assert.equal(rpcOrigin("https://l2.example.org/v2/SECRETKEY?token=abc"), "https://l2.example.org");
  assert.equal(rpcOrigin("http://127.0.0.1:8545"), "http://127.0.0.1:8545");
  assert.equal(rpcOrigin("not a url"), "(invalid url)");
});
