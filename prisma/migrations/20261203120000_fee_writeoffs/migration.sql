-- Fees that can never be collected, written off by an operator (POST /v1/writeoffs): one row per
-- write-off, its settlements point at it (never charged, never in an epoch), and the ledger reverses
-- their fee transactions in one transaction `writeoff:<id>`.
CREATE TABLE "fee_writeoffs" (
    "id" UUID NOT NULL,
    "consumer" VARCHAR(42) NOT NULL,
    "total_wei" NUMERIC(78,0) NOT NULL,
    "settlement_count" INTEGER NOT NULL,
    "reason" TEXT NOT NULL,
    "deferred_since" TIMESTAMPTZ(3) NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "fee_writeoffs_pkey" PRIMARY KEY ("id")
);
CREATE INDEX "fee_writeoffs_consumer_idx" ON "fee_writeoffs"("consumer");

ALTER TABLE "settlements" ADD COLUMN "writeoff_id" UUID;
ALTER TABLE "settlements" ADD CONSTRAINT "settlements_writeoff_id_fkey" FOREIGN KEY ("writeoff_id")
    REFERENCES "fee_writeoffs"("id") ON DELETE RESTRICT ON UPDATE CASCADE;
CREATE INDEX "settlements_writeoff_id_idx" ON "settlements"("writeoff_id");
