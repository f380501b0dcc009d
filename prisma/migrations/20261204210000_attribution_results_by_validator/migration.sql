-- A validator's dispute pass (apps/attribution lib/disputes.ts) starts from its own recent results, every
-- ATTRIBUTION_EPOCH_ATTEST_INTERVAL_MS: without this index that is a scan of every validator's results.
CREATE INDEX "attribution_results_validator_address_created_at_idx" ON "attribution_results"("validator_address", "created_at");
