-- AlterTable
ALTER TABLE "epochs" ADD COLUMN     "cumulative_total_wei" DECIMAL(78,0) NOT NULL DEFAULT 0,
ADD COLUMN     "recipient_count" INTEGER NOT NULL DEFAULT 0,
ADD COLUMN     "settlement_count" INTEGER NOT NULL DEFAULT 0;

-- CreateTable
CREATE TABLE "epoch_balances" (
    "epoch_id" INTEGER NOT NULL,
    "address" VARCHAR(42) NOT NULL,
    "cumulative_wei" DECIMAL(78,0) NOT NULL,

    CONSTRAINT "epoch_balances_pkey" PRIMARY KEY ("epoch_id","address")
);

-- CreateIndex
CREATE INDEX "settlements_epoch_id_idx" ON "settlements"("epoch_id");

-- AddForeignKey
ALTER TABLE "epoch_balances" ADD CONSTRAINT "epoch_balances_epoch_id_fkey" FOREIGN KEY ("epoch_id") REFERENCES "epochs"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- CreateTable
CREATE TABLE "settlement_pending" (
    "inference_id" UUID NOT NULL,
    "first_seen_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "checked_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "checks" INTEGER NOT NULL DEFAULT 1,

    CONSTRAINT "settlement_pending_pkey" PRIMARY KEY ("inference_id")
);

-- CreateIndex
CREATE INDEX "settlement_pending_checked_at_idx" ON "settlement_pending"("checked_at");
