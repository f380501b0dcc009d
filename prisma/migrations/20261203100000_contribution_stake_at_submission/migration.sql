-- The contributor's stake on the datanet when the contribution was submitted (active + unbonding, wei).
-- A slashing proposal asks for a share of it, so unbonding between submitting and validation escapes nothing.
ALTER TABLE "contributions" ADD COLUMN "stake_at_submission_wei" NUMERIC(78,0);
