import assert from "node:assert/strict";
import { test } from "node:test";
import { DatanetIndex, indexParamsOf, resolveValidationConfig } from "@openledger/datanet-core";
import type { DatanetsContext } from "../context.ts";
import { evictIndexes } from "./validate.ts";

test("the index cache drops least recently used indexes beyond its byte budget, never the one in use", () => {
  const params = indexParamsOf(resolveValidationConfig());
  const make = () => ({ index: new DatanetIndex(params, 1024) });
  const one = make().index.memoryBytes;
  const ctx = {
    config: { DATANETS_INDEX_CACHE_BYTES: one * 2 },
    indexes: new Map([
      ["a", make()],
      ["b", make()],
      ["c", make()],
    ]),
  } as unknown as DatanetsContext;
  evictIndexes(ctx, "a"); // a becomes the most recent; b (oldest) goes
  assert.deepEqual([...ctx.indexes.keys()], ["c", "a"]);
  (ctx.config as { DATANETS_INDEX_CACHE_BYTES: number }).DATANETS_INDEX_CACHE_BYTES = 0;
  evictIndexes(ctx, "c");
  assert.deepEqual([...ctx.indexes.keys()], ["c"], "the index just used stays even over budget");
});
