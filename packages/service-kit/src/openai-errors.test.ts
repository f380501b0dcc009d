import assert from "node:assert/strict";
import { test } from "node:test";
import { AppError } from "@openledger/errors";
import { toOpenAIError } from "./openai-errors.ts";

test("an OpenAI-shaped error keeps the error's details beside OpenAI's four fields (e.g. the existing job of a 409)", () => {
  const e = toOpenAIError(
    new AppError("DUPLICATE_JOB", "an identical job is already running: your job ftjob-1", {
      status: 409,
      details: { param: "seed", job: "ftjob-1" },
    }),
  );
  assert.equal(e.status, 409);
  assert.deepEqual(e.body, {
    error: {
      message: "an identical job is already running: your job ftjob-1",
      type: "invalid_request_error",
      param: "seed",
      code: "duplicate_job",
      details: { param: "seed", job: "ftjob-1" },
    },
  });
  // No details: exactly OpenAI's four fields.
  const plain = toOpenAIError(new AppError("INVALID_API_KEY", "no such key", { status: 401 }));
  assert.deepEqual(Object.keys(plain.body.error).sort(), ["code", "message", "param", "type"]);
  // A 5xx shows neither its message nor its details.
  const internal = toOpenAIError(
    new AppError("INTERNAL", "db at 10.0.0.1 refused", { details: { host: "x" } }),
  );
  assert.equal(internal.status, 500);
  assert.equal(internal.body.error.details, undefined);
  assert.equal(internal.body.error.message, "internal error");
});
