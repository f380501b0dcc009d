-- The explorer's public reads (issue #18): recent settlements newest first, and a model's settled
-- inferences (its usage and the inferences listed on its page), without a scan of either table.
-- CreateIndex
CREATE INDEX "settlements_created_at_idx" ON "settlements"("created_at");

-- CreateIndex
CREATE INDEX "inferences_model_id_created_at_idx" ON "inferences"("model_id", "created_at");
