-- ModelFactory (issue #15): fine-tuning jobs and their events (factory service), and the gateway's
-- training grants: a builder's scoped, single-use delegation that lets the factory register one
-- adapter for it and bill the training from an escrow hold taken when the job was created.
CREATE TYPE "FineTuningStatus" AS ENUM ('validating_files', 'queued', 'running', 'succeeded', 'failed', 'cancelled');

CREATE TABLE "fine_tuning_jobs" (
    "id" VARCHAR(64) NOT NULL,
    "account_address" VARCHAR(42) NOT NULL,
    "base_model" VARCHAR(128) NOT NULL,
    "base_model_hash" CHAR(64) NOT NULL,
    "suffix" VARCHAR(64),
    "status" "FineTuningStatus" NOT NULL DEFAULT 'queued',
    "datanet_version_ids" UUID[],
    "hyperparameters" JSONB NOT NULL,
    "trainer_options" JSONB,
    "config_hash" CHAR(64),
    "seed" INTEGER NOT NULL,
    "metadata" JSONB,
    "price_per_1k_tokens_wei" DECIMAL(78,0) NOT NULL,
    "max_fee_wei" DECIMAL(78,0) NOT NULL,
    "fee_wei" DECIMAL(78,0),
    "grant_id" UUID NOT NULL,
    "grant_token" VARCHAR(128) NOT NULL,
    "total_steps" INTEGER,
    "step" INTEGER NOT NULL DEFAULT 0,
    "planned_tokens" BIGINT,
    "trained_tokens" BIGINT NOT NULL DEFAULT 0,
    "tokens_by_contributor" JSONB,
    "loss" DOUBLE PRECISION,
    "tokens_per_second" DOUBLE PRECISION,
    "estimated_finish" TIMESTAMPTZ(3),
    "fine_tuned_model" VARCHAR(128),
    "adapter_content_hash" CHAR(64),
    "error" JSONB,
    "runs" INTEGER NOT NULL DEFAULT 0,
    "runner_id" VARCHAR(200),
    "lease_until" TIMESTAMPTZ(3),
    "registering_at" TIMESTAMPTZ(3),
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "started_at" TIMESTAMPTZ(3),
    "finished_at" TIMESTAMPTZ(3),
    "updated_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "fine_tuning_jobs_pkey" PRIMARY KEY ("id")
);

CREATE INDEX "fine_tuning_jobs_account_address_created_at_idx" ON "fine_tuning_jobs"("account_address", "created_at");
CREATE INDEX "fine_tuning_jobs_status_idx" ON "fine_tuning_jobs"("status");

CREATE TABLE "fine_tuning_events" (
    "id" BIGSERIAL NOT NULL,
    "job_id" VARCHAR(64) NOT NULL,
    "level" VARCHAR(8) NOT NULL,
    "type" VARCHAR(16) NOT NULL,
    "message" TEXT NOT NULL,
    "data" JSONB,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "fine_tuning_events_pkey" PRIMARY KEY ("id")
);

CREATE INDEX "fine_tuning_events_job_id_id_idx" ON "fine_tuning_events"("job_id", "id");

ALTER TABLE "fine_tuning_events" ADD CONSTRAINT "fine_tuning_events_job_id_fkey" FOREIGN KEY ("job_id") REFERENCES "fine_tuning_jobs"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

CREATE TABLE "training_grants" (
    "id" UUID NOT NULL,
    "token_hash" CHAR(64) NOT NULL,
    "account_address" VARCHAR(42) NOT NULL,
    "job_ref" VARCHAR(64) NOT NULL,
    "datanet_version_ids" UUID[],
    "base_model_hash" CHAR(64) NOT NULL,
    "price_per_1k_tokens_wei" DECIMAL(78,0) NOT NULL,
    "max_tokens" BIGINT NOT NULL,
    "max_fee_wei" DECIMAL(78,0) NOT NULL,
    "reservation_id" UUID NOT NULL,
    "expires_at" TIMESTAMPTZ(3) NOT NULL,
    "used_at" TIMESTAMPTZ(3),
    "released_at" TIMESTAMPTZ(3),
    "model_id" VARCHAR(128),
    "inference_id" UUID,
    "trained_tokens" BIGINT,
    "training_config_hash" CHAR(64),
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "training_grants_pkey" PRIMARY KEY ("id")
);

CREATE UNIQUE INDEX "training_grants_token_hash_key" ON "training_grants"("token_hash");
CREATE UNIQUE INDEX "training_grants_job_ref_key" ON "training_grants"("job_ref");
CREATE UNIQUE INDEX "training_grants_model_id_key" ON "training_grants"("model_id");
CREATE UNIQUE INDEX "training_grants_inference_id_key" ON "training_grants"("inference_id");
CREATE INDEX "training_grants_account_address_created_at_idx" ON "training_grants"("account_address", "created_at");

CREATE TABLE "training_grant_shares" (
    "grant_id" UUID NOT NULL,
    "contributor_address" VARCHAR(42) NOT NULL,
    "tokens" BIGINT NOT NULL,

    CONSTRAINT "training_grant_shares_pkey" PRIMARY KEY ("grant_id", "contributor_address")
);

ALTER TABLE "training_grant_shares" ADD CONSTRAINT "training_grant_shares_grant_id_fkey" FOREIGN KEY ("grant_id") REFERENCES "training_grants"("id") ON DELETE RESTRICT ON UPDATE CASCADE;
