-- Settlement charges consumers before it closes an epoch, and carries over the fees of a consumer
-- who cannot cover them (instead of one short consumer reverting the whole escrow charge batch).
-- Settlements in epochs closed under the old flow were charged with their epoch, so they count as
-- charged; an epoch still in flight under the old flow (charges not all applied) cannot be finished
-- by the new one, so this migration refuses to run until it is confirmed.
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM "epochs" WHERE "status" <> 'confirmed') THEN
    RAISE EXCEPTION 'an epoch is still in flight: let settlement confirm it (or POST /v1/epochs/close) before migrating';
  END IF;
END $$;

-- Prices of the model when the gateway served the inference: settlement prices from these, so a
-- price change afterwards does not re-price it. Existing rows get the model's current price (the
-- one they would have been charged before this migration).
ALTER TABLE "inferences" ADD COLUMN "price_in_per_1k_wei" DECIMAL(78,0),
ADD COLUMN "price_out_per_1k_wei" DECIMAL(78,0);

UPDATE "inferences" i SET "price_in_per_1k_wei" = m."price_in_per_1k_wei",
                          "price_out_per_1k_wei" = m."price_out_per_1k_wei"
  FROM "models" m WHERE m."id" = i."model_id";

-- CreateTable
CREATE TABLE "escrow_charges" (
    "id" UUID NOT NULL,
    "batch_id" CHAR(66) NOT NULL,
    "status" VARCHAR(16) NOT NULL DEFAULT 'planned',
    "items" JSONB NOT NULL,
    "total_wei" DECIMAL(78,0) NOT NULL,
    "charged_wei" DECIMAL(78,0) NOT NULL DEFAULT 0,
    "tx_hash" CHAR(66),
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "applied_at" TIMESTAMPTZ(3),

    CONSTRAINT "escrow_charges_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "escrow_charges_status_check" CHECK ("status" IN ('planned', 'applied'))
);

-- CreateTable
CREATE TABLE "escrow_deferrals" (
    "consumer" VARCHAR(42) NOT NULL,
    "deferred_wei" DECIMAL(78,0) NOT NULL,
    "settlement_count" INTEGER NOT NULL,
    "balance_wei" DECIMAL(78,0) NOT NULL,
    "since" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "checked_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "escrow_deferrals_pkey" PRIMARY KEY ("consumer")
);

-- CreateIndex
CREATE UNIQUE INDEX "escrow_charges_batch_id_key" ON "escrow_charges"("batch_id");

-- CreateIndex
CREATE INDEX "escrow_charges_status_idx" ON "escrow_charges"("status");

-- AlterTable
ALTER TABLE "settlements" ADD COLUMN "charge_id" UUID;

-- CreateIndex
CREATE INDEX "settlements_charge_id_idx" ON "settlements"("charge_id");

-- AddForeignKey
ALTER TABLE "settlements" ADD CONSTRAINT "settlements_charge_id_fkey" FOREIGN KEY ("charge_id") REFERENCES "escrow_charges"("id") ON DELETE SET NULL ON UPDATE CASCADE;
