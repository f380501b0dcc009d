-- CreateEnum
CREATE TYPE "ContributionSource" AS ENUM ('rows', 'file');

-- CreateEnum
CREATE TYPE "ContributionStatus" AS ENUM ('pending', 'validating', 'validated', 'failed');

-- CreateEnum
CREATE TYPE "RowStatus" AS ENUM ('pending', 'accepted', 'rejected');

-- CreateEnum
CREATE TYPE "VersionStatus" AS ENUM ('pending', 'registered', 'indexed');

-- CreateEnum
CREATE TYPE "SlashingStatus" AS ENUM ('proposed', 'disputed', 'upheld', 'dismissed', 'executed');

-- CreateEnum
CREATE TYPE "ModelKind" AS ENUM ('base', 'adapter', 'small_model');

-- CreateEnum
CREATE TYPE "ModelStatus" AS ENUM ('active', 'retired');

-- CreateEnum
CREATE TYPE "InferenceStatus" AS ENUM ('completed', 'failed');

-- CreateEnum
CREATE TYPE "AttributionMethod" AS ENUM ('span', 'influence');

-- CreateEnum
CREATE TYPE "EpochStatus" AS ENUM ('open', 'closed', 'attested', 'posted', 'confirmed');

-- CreateEnum
CREATE TYPE "ChainIntentStatus" AS ENUM ('pending', 'submitted', 'confirmed', 'failed');

-- CreateTable
CREATE TABLE "contributors" (
    "address" VARCHAR(42) NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "contributors_pkey" PRIMARY KEY ("address")
);

-- CreateTable
CREATE TABLE "datanets" (
    "id" UUID NOT NULL,
    "slug" VARCHAR(64) NOT NULL,
    "name" VARCHAR(200) NOT NULL,
    "description" TEXT NOT NULL DEFAULT '',
    "tags" TEXT[] DEFAULT ARRAY[]::TEXT[],
    "type" VARCHAR(32) NOT NULL,
    "license" VARCHAR(64) NOT NULL,
    "owner_address" VARCHAR(42) NOT NULL,
    "metadata_uri" TEXT,
    "min_stake_wei" DECIMAL(78,0) NOT NULL DEFAULT 0,
    "daily_row_limit_per_contributor" INTEGER NOT NULL DEFAULT 10000,
    "daily_row_limit" INTEGER NOT NULL DEFAULT 1000000,
    "chain_datanet_id" DECIMAL(78,0),
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "datanets_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "contributions" (
    "id" UUID NOT NULL,
    "datanet_id" UUID NOT NULL,
    "contributor_address" VARCHAR(42) NOT NULL,
    "source" "ContributionSource" NOT NULL,
    "file_name" TEXT,
    "status" "ContributionStatus" NOT NULL DEFAULT 'pending',
    "row_count" INTEGER NOT NULL DEFAULT 0,
    "accepted_count" INTEGER NOT NULL DEFAULT 0,
    "rejected_count" INTEGER NOT NULL DEFAULT 0,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "validated_at" TIMESTAMPTZ(3),

    CONSTRAINT "contributions_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "datanet_rows" (
    "id" BIGSERIAL NOT NULL,
    "datanet_id" UUID NOT NULL,
    "contribution_id" UUID NOT NULL,
    "contributor_address" VARCHAR(42) NOT NULL,
    "ordinal" INTEGER NOT NULL,
    "text" TEXT NOT NULL,
    "label" TEXT,
    "normalized_hash" CHAR(64) NOT NULL,
    "status" "RowStatus" NOT NULL DEFAULT 'pending',
    "reject_reason" TEXT,
    "duplicate_of_row_id" BIGINT,
    "quality_score" INTEGER,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "datanet_rows_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "datanet_versions" (
    "id" UUID NOT NULL,
    "datanet_id" UUID NOT NULL,
    "version" INTEGER NOT NULL,
    "merkle_root" CHAR(66) NOT NULL,
    "row_count" INTEGER NOT NULL,
    "contributor_count" INTEGER NOT NULL,
    "status" "VersionStatus" NOT NULL DEFAULT 'pending',
    "chain_tx_hash" CHAR(66),
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "datanet_versions_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "datanet_version_rows" (
    "version_id" UUID NOT NULL,
    "position" INTEGER NOT NULL,
    "row_id" BIGINT NOT NULL,

    CONSTRAINT "datanet_version_rows_pkey" PRIMARY KEY ("version_id","position")
);

-- CreateTable
CREATE TABLE "slashing_proposals" (
    "id" UUID NOT NULL,
    "datanet_id" UUID NOT NULL,
    "contributor_address" VARCHAR(42) NOT NULL,
    "contribution_id" UUID,
    "reason" TEXT NOT NULL,
    "evidence" JSONB NOT NULL,
    "evidence_hash" CHAR(66) NOT NULL,
    "amount_wei" DECIMAL(78,0) NOT NULL,
    "status" "SlashingStatus" NOT NULL DEFAULT 'proposed',
    "dispute_deadline" TIMESTAMPTZ(3) NOT NULL,
    "dispute_reason" TEXT,
    "executed_tx_hash" CHAR(66),
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "slashing_proposals_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "models" (
    "id" VARCHAR(128) NOT NULL,
    "kind" "ModelKind" NOT NULL,
    "owner_address" VARCHAR(42) NOT NULL,
    "base_model" VARCHAR(128),
    "content_hash" CHAR(64) NOT NULL,
    "price_in_per_1k_wei" DECIMAL(78,0) NOT NULL,
    "price_out_per_1k_wei" DECIMAL(78,0) NOT NULL,
    "status" "ModelStatus" NOT NULL DEFAULT 'active',
    "chain_model_id" DECIMAL(78,0),
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "models_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "model_training_versions" (
    "model_id" VARCHAR(128) NOT NULL,
    "datanet_version_id" UUID NOT NULL,

    CONSTRAINT "model_training_versions_pkey" PRIMARY KEY ("model_id","datanet_version_id")
);

-- CreateTable
CREATE TABLE "inferences" (
    "id" UUID NOT NULL,
    "model_id" VARCHAR(128) NOT NULL,
    "account_address" VARCHAR(42) NOT NULL,
    "prompt" TEXT NOT NULL,
    "output" TEXT NOT NULL,
    "input_tokens" INTEGER NOT NULL,
    "output_tokens" INTEGER NOT NULL,
    "status" "InferenceStatus" NOT NULL DEFAULT 'completed',
    "ttft_ms" INTEGER,
    "duration_ms" INTEGER,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "inferences_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "attribution_results" (
    "id" UUID NOT NULL,
    "inference_id" UUID NOT NULL,
    "validator_address" VARCHAR(42) NOT NULL,
    "method" "AttributionMethod" NOT NULL,
    "canonical_json" TEXT NOT NULL,
    "result_hash" CHAR(66) NOT NULL,
    "signature" VARCHAR(132) NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "attribution_results_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "attribution_weights" (
    "result_id" UUID NOT NULL,
    "contributor_address" VARCHAR(42) NOT NULL,
    "weight_ppm" INTEGER NOT NULL,

    CONSTRAINT "attribution_weights_pkey" PRIMARY KEY ("result_id","contributor_address")
);

-- CreateTable
CREATE TABLE "settlements" (
    "inference_id" UUID NOT NULL,
    "fee_wei" DECIMAL(78,0) NOT NULL,
    "split_bps" JSONB NOT NULL,
    "epoch_id" INTEGER,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "transaction_id" UUID NOT NULL,

    CONSTRAINT "settlements_pkey" PRIMARY KEY ("inference_id")
);

-- CreateTable
CREATE TABLE "ledger_transactions" (
    "id" UUID NOT NULL,
    "kind" VARCHAR(32) NOT NULL,
    "external_key" VARCHAR(200) NOT NULL,
    "memo" TEXT,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "ledger_transactions_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "ledger_entries" (
    "id" BIGSERIAL NOT NULL,
    "transaction_id" UUID NOT NULL,
    "account" VARCHAR(120) NOT NULL,
    "amount_wei" DECIMAL(78,0) NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "ledger_entries_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "epochs" (
    "id" INTEGER NOT NULL,
    "status" "EpochStatus" NOT NULL DEFAULT 'open',
    "opened_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "closed_at" TIMESTAMPTZ(3),
    "merkle_root" CHAR(66),
    "total_wei" DECIMAL(78,0) NOT NULL DEFAULT 0,
    "post_tx_hash" CHAR(66),
    "confirmed_at" TIMESTAMPTZ(3),

    CONSTRAINT "epochs_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "epoch_attestations" (
    "epoch_id" INTEGER NOT NULL,
    "validator_address" VARCHAR(42) NOT NULL,
    "signature" VARCHAR(132) NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "epoch_attestations_pkey" PRIMARY KEY ("epoch_id","validator_address")
);

-- CreateTable
CREATE TABLE "chain_intents" (
    "id" UUID NOT NULL,
    "key" VARCHAR(200) NOT NULL,
    "kind" VARCHAR(64) NOT NULL,
    "payload" JSONB NOT NULL,
    "status" "ChainIntentStatus" NOT NULL DEFAULT 'pending',
    "tx_hash" CHAR(66),
    "error" TEXT,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "chain_intents_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE UNIQUE INDEX "datanets_slug_key" ON "datanets"("slug");

-- CreateIndex
CREATE UNIQUE INDEX "datanets_chain_datanet_id_key" ON "datanets"("chain_datanet_id");

-- CreateIndex
CREATE INDEX "contributions_datanet_id_created_at_idx" ON "contributions"("datanet_id", "created_at");

-- CreateIndex
CREATE INDEX "contributions_contributor_address_created_at_idx" ON "contributions"("contributor_address", "created_at");

-- CreateIndex
CREATE INDEX "datanet_rows_datanet_id_normalized_hash_idx" ON "datanet_rows"("datanet_id", "normalized_hash");

-- CreateIndex
CREATE INDEX "datanet_rows_datanet_id_status_id_idx" ON "datanet_rows"("datanet_id", "status", "id");

-- CreateIndex
CREATE UNIQUE INDEX "datanet_rows_contribution_id_ordinal_key" ON "datanet_rows"("contribution_id", "ordinal");

-- CreateIndex
CREATE UNIQUE INDEX "datanet_versions_datanet_id_version_key" ON "datanet_versions"("datanet_id", "version");

-- CreateIndex
CREATE UNIQUE INDEX "datanet_version_rows_version_id_row_id_key" ON "datanet_version_rows"("version_id", "row_id");

-- CreateIndex
CREATE INDEX "slashing_proposals_datanet_id_status_idx" ON "slashing_proposals"("datanet_id", "status");

-- CreateIndex
CREATE UNIQUE INDEX "models_chain_model_id_key" ON "models"("chain_model_id");

-- CreateIndex
CREATE INDEX "inferences_account_address_created_at_idx" ON "inferences"("account_address", "created_at");

-- CreateIndex
CREATE UNIQUE INDEX "attribution_results_inference_id_validator_address_key" ON "attribution_results"("inference_id", "validator_address");

-- CreateIndex
CREATE UNIQUE INDEX "settlements_transaction_id_key" ON "settlements"("transaction_id");

-- CreateIndex
CREATE UNIQUE INDEX "ledger_transactions_external_key_key" ON "ledger_transactions"("external_key");

-- CreateIndex
CREATE INDEX "ledger_entries_account_idx" ON "ledger_entries"("account");

-- CreateIndex
CREATE UNIQUE INDEX "chain_intents_key_key" ON "chain_intents"("key");

-- CreateIndex
CREATE INDEX "chain_intents_status_idx" ON "chain_intents"("status");

-- AddForeignKey
ALTER TABLE "contributions" ADD CONSTRAINT "contributions_datanet_id_fkey" FOREIGN KEY ("datanet_id") REFERENCES "datanets"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "contributions" ADD CONSTRAINT "contributions_contributor_address_fkey" FOREIGN KEY ("contributor_address") REFERENCES "contributors"("address") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "datanet_rows" ADD CONSTRAINT "datanet_rows_datanet_id_fkey" FOREIGN KEY ("datanet_id") REFERENCES "datanets"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "datanet_rows" ADD CONSTRAINT "datanet_rows_contribution_id_fkey" FOREIGN KEY ("contribution_id") REFERENCES "contributions"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "datanet_rows" ADD CONSTRAINT "datanet_rows_contributor_address_fkey" FOREIGN KEY ("contributor_address") REFERENCES "contributors"("address") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "datanet_versions" ADD CONSTRAINT "datanet_versions_datanet_id_fkey" FOREIGN KEY ("datanet_id") REFERENCES "datanets"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "datanet_version_rows" ADD CONSTRAINT "datanet_version_rows_version_id_fkey" FOREIGN KEY ("version_id") REFERENCES "datanet_versions"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "datanet_version_rows" ADD CONSTRAINT "datanet_version_rows_row_id_fkey" FOREIGN KEY ("row_id") REFERENCES "datanet_rows"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "slashing_proposals" ADD CONSTRAINT "slashing_proposals_datanet_id_fkey" FOREIGN KEY ("datanet_id") REFERENCES "datanets"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "slashing_proposals" ADD CONSTRAINT "slashing_proposals_contributor_address_fkey" FOREIGN KEY ("contributor_address") REFERENCES "contributors"("address") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "slashing_proposals" ADD CONSTRAINT "slashing_proposals_contribution_id_fkey" FOREIGN KEY ("contribution_id") REFERENCES "contributions"("id") ON DELETE SET NULL ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "model_training_versions" ADD CONSTRAINT "model_training_versions_model_id_fkey" FOREIGN KEY ("model_id") REFERENCES "models"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "model_training_versions" ADD CONSTRAINT "model_training_versions_datanet_version_id_fkey" FOREIGN KEY ("datanet_version_id") REFERENCES "datanet_versions"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "inferences" ADD CONSTRAINT "inferences_model_id_fkey" FOREIGN KEY ("model_id") REFERENCES "models"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "attribution_results" ADD CONSTRAINT "attribution_results_inference_id_fkey" FOREIGN KEY ("inference_id") REFERENCES "inferences"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "attribution_weights" ADD CONSTRAINT "attribution_weights_result_id_fkey" FOREIGN KEY ("result_id") REFERENCES "attribution_results"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "settlements" ADD CONSTRAINT "settlements_inference_id_fkey" FOREIGN KEY ("inference_id") REFERENCES "inferences"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "settlements" ADD CONSTRAINT "settlements_transaction_id_fkey" FOREIGN KEY ("transaction_id") REFERENCES "ledger_transactions"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "settlements" ADD CONSTRAINT "settlements_epoch_id_fkey" FOREIGN KEY ("epoch_id") REFERENCES "epochs"("id") ON DELETE SET NULL ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "ledger_entries" ADD CONSTRAINT "ledger_entries_transaction_id_fkey" FOREIGN KEY ("transaction_id") REFERENCES "ledger_transactions"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "epoch_attestations" ADD CONSTRAINT "epoch_attestations_epoch_id_fkey" FOREIGN KEY ("epoch_id") REFERENCES "epochs"("id") ON DELETE RESTRICT ON UPDATE CASCADE;
