// The training grant request's one definition: what the factory sends is what the gateway's route
// accepts, and reads back as the same request (property test over valid requests).
import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { CreateGrantBody, type GrantRequest, grantRequestBody, grantRequestOf } from "./training-grants.ts";

const request: fc.Arbitrary<GrantRequest> = fc.record({
  job: fc.stringMatching(/^[A-Za-z0-9._-]{1,64}$/),
  datanetVersionIds: fc.array(fc.uuid({ version: 4 }), { minLength: 1, maxLength: 16 }),
  baseModelHash: fc.stringMatching(/^[0-9a-f]{64}$/),
  pricePer1kTokensWei: fc.bigInt({ min: 0n, max: 10n ** 38n - 1n }),
  maxTokens: fc.integer({ min: 1, max: 2_000_000_000 }),
  expiresInSeconds: fc.integer({ min: 60, max: 30 * 86400 }),
});

test("a grant request sent as JSON is accepted by the route's schema and reads back unchanged", () => {
  fc.assert(
    fc.property(request, (req) => {
      const wire = JSON.parse(JSON.stringify(grantRequestBody(req)));
      assert.deepEqual(grantRequestOf(CreateGrantBody.parse(wire)), { ...req });
    }),
  );
});

test("a body the route refuses: unknown fields, a price that is not a decimal string", () => {
  const body = grantRequestBody({
    job: "j1",
    datanetVersionIds: ["6f1c2a4e-8b3d-4c5e-9f70-1a2b3c4d5e6f"],
    baseModelHash: "a".repeat(64),
    pricePer1kTokensWei: 5n,
    maxTokens: 10,
    expiresInSeconds: 600,
  });
  assert.equal(CreateGrantBody.safeParse({ ...body, extra: 1 }).success, false);
  assert.equal(CreateGrantBody.safeParse({ ...body, price_per_1k_tokens_wei: 5 }).success, false);
});
