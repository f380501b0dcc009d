-- A dispute group the chain refused to file (the intent reverts: a revoked role, a paused contract, evidence the
-- contract rejects) was read and submitted again on every filing pass, forever. Now its rows count the refusals
-- (`refusals`), are not read again before `retry_at` (exponential backoff), and after the last allowed refusal
-- are given up (`given_up_at`: never read again by the pass; counted by attribution_dispute_refusals_total
-- {outcome="given_up"} and logged as an error, for an operator).
ALTER TABLE "attribution_dispute_signatures" ADD COLUMN "refusals" INTEGER NOT NULL DEFAULT 0;
ALTER TABLE "attribution_dispute_signatures" ADD COLUMN "retry_at" TIMESTAMPTZ(3);
ALTER TABLE "attribution_dispute_signatures" ADD COLUMN "given_up_at" TIMESTAMPTZ(3);
