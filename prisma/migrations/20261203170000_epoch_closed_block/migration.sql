-- Quorum at the inference's epoch (issue #14): the chain's latest block when settlement closed an epoch. The
-- next epoch begins there, and an inference created in it is counted against the validator set and quorum
-- fraction the distributor had at that block (a validator removed, or a quorum changed, between the inference
-- and its settlement does not change who counts). NULL for epochs closed before this column existed.
ALTER TABLE "epochs" ADD COLUMN "closed_block" BIGINT;
CREATE INDEX "epochs_closed_at_idx" ON "epochs" ("closed_at");
