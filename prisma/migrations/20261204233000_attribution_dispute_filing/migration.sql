-- A validator's filing pass (apps/attribution lib/disputes.ts `fileDisputes`) read every unfiled group of dispute
-- signatures on every pass, filed or not fileable alike. Now each signature row says where its group stands:
-- `filed_at` once the dispute is confirmed on chain (never read again), `parked_set` when the group was read and
-- could not be filed at the validator set then (keccak256 of requiredSignatures() and the sorted active set). A
-- pass reads only rows not filed whose `parked_set` is not today's set: a new signature (NULL) or any change of
-- the set re-opens the group, and nothing else can make it fileable (ValidatorDisputes has no filing window).
ALTER TABLE "attribution_dispute_signatures" ADD COLUMN "filed_at" TIMESTAMPTZ(3);
ALTER TABLE "attribution_dispute_signatures" ADD COLUMN "parked_set" CHAR(66);

CREATE INDEX "attribution_dispute_signatures_open_idx" ON "attribution_dispute_signatures"("parked_set")
    WHERE "filed_at" IS NULL;
