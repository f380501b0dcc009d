-- Settlement's deadline sweeper reads completed inferences by creation time from a watermark
-- (those it never heard of: a lost hand-off, or attribution that failed for good); without this
-- index every sweep scanned the whole table.
CREATE INDEX "inferences_created_at_idx" ON "inferences"("created_at");
