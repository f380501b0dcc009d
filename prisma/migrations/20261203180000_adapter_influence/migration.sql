-- LoRA influence (issue #19): the per-example gradients of a factory-trained adapter's training rows,
-- at the trained adapter, as a content-addressed blob. The first validator that builds it records its
-- hash here; every other validator rebuilds from public inputs and must reproduce this hash.
CREATE TABLE "adapter_influence" (
    "model_id" VARCHAR(128) NOT NULL,
    "blob_hash" CHAR(64) NOT NULL,
    "adapter_hash" CHAR(64) NOT NULL,
    "base_model_hash" CHAR(64) NOT NULL,
    "training_config_hash" CHAR(64) NOT NULL,
    "row_count" INTEGER NOT NULL,
    "stats" JSONB NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "adapter_influence_pkey" PRIMARY KEY ("model_id")
);

ALTER TABLE "adapter_influence" ADD CONSTRAINT "adapter_influence_model_id_fkey"
    FOREIGN KEY ("model_id") REFERENCES "models"("id") ON DELETE RESTRICT ON UPDATE CASCADE;
