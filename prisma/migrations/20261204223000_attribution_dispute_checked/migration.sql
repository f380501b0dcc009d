-- A validator's dispute pass (apps/attribution lib/disputes.ts) examines each of its own results until nothing
-- about it can change any more (every commitment of the inference revealed, its epoch's validator set fixed,
-- older than a minute), then marks it here and never reads it again: each pass reads only the unmarked ones,
-- through the partial index (it replaces the full one on (validator_address, created_at), which only that pass
-- used), instead of a day of results.
ALTER TABLE "attribution_results" ADD COLUMN "dispute_checked_at" TIMESTAMPTZ(3);

DROP INDEX "attribution_results_validator_address_created_at_idx";
CREATE INDEX "attribution_results_dispute_unchecked_idx" ON "attribution_results"("validator_address", "created_at")
    WHERE "dispute_checked_at" IS NULL;
