import assert from "node:assert/strict";
import { test } from "node:test";
import { bearerMatches } from "./auth.ts";

test("bearerMatches accepts exactly `Bearer <token>`", () => {
  assert.equal(bearerMatches("Bearer s3cret", "s3cret"), true);
  assert.equal(bearerMatches("Bearer s3cret ", "s3cret"), false);
  assert.equal(bearerMatches("bearer s3cret", "s3cret"), false);
  assert.equal(bearerMatches("Bearer other", "s3cret"), false);
  assert.equal(bearerMatches(undefined, "s3cret"), false);
  assert.equal(bearerMatches("Bearer ", ""), false, "an empty configured token never matches");
});
