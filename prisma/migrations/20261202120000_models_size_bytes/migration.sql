-- Size of an uploaded adapter's files (bytes), for the gateway's per-account adapter quota
-- (GATEWAY_ADAPTER_QUOTA_BYTES). NULL for the base model, small models and adapters uploaded
-- before this column existed (they count as 0 bytes).
ALTER TABLE "models" ADD COLUMN "size_bytes" BIGINT;

-- CreateIndex
CREATE INDEX "models_owner_address_kind_status_idx" ON "models"("owner_address", "kind", "status");
