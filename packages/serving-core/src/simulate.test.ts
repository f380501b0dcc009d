import assert from "node:assert/strict";
import { test } from "node:test";
import { DEFAULT_SIMULATION, simulate } from "./simulate.ts";

test("simulation: prefetch keeps the batch full with 1,000 adapters and cuts time to first token", async () => {
  const base = { ...DEFAULT_SIMULATION, requests: 600, adapters: 1000 };
  const single = await simulate({ ...base, adapters: 1 });
  const withPrefetch = await simulate(base);
  const without = await simulate({ ...base, scheduler: { prefetchDepth: 0 } });
  assert.ok(withPrefetch.tokensPerStep / single.tokensPerStep > 0.97, "policy loses < 3% of batch occupancy");
  assert.ok(withPrefetch.ttftP50Ms < without.ttftP50Ms);
  assert.ok(withPrefetch.tokensPerStep > without.tokensPerStep);
  assert.ok(withPrefetch.ramPeakBytes <= withPrefetch.ramBudgetBytes);
  assert.ok(withPrefetch.meanDistinctAdaptersPerStep > 10, "rows of many adapters share steps");
});
