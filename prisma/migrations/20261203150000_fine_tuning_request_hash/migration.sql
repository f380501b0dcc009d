-- ModelFactory (issue #15): an identical fine-tuning job (same base weights, same datanet versions in the
-- same order, same resolved hyperparameters and seed: the same training-config hash on the same rows) is
-- refused when it is created, not after it has trained. `request_hash` is the SHA-256 of those inputs;
-- at most one job per hash may be queued, running or succeeded (cancelled and failed ones do not
-- count). The unique index is what makes two concurrent creates safe: the second insert fails.
-- Jobs created before this migration have no hash and block nothing.
ALTER TABLE "fine_tuning_jobs" ADD COLUMN "request_hash" CHAR(64);

CREATE UNIQUE INDEX "fine_tuning_jobs_request_hash_live_key" ON "fine_tuning_jobs"("request_hash")
    WHERE "status" IN ('validating_files', 'queued', 'running', 'succeeded');
