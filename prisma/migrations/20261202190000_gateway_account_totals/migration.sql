-- The gateway's balance check in O(1) of an account's history: a running total per account,
-- maintained in the transactions that change it (apps/gateway README, "Billing check"):
--   billed_wei   += fee of every completed inference, in the transaction that records it (gateway)
--   cleared_wei  += what the escrow took, in the transaction that records a charge batch applied
--                  (settlement); owed = billed_wei - cleared_wei
--   reserved_wei  = sum of max_cost_wei of the account's gateway_reservations rows (admission adds,
--                  recording / release / finalisation subtracts, in the statement that deletes the row)
-- CreateTable
CREATE TABLE "gateway_accounts" (
    "account_address" VARCHAR(42) NOT NULL,
    "billed_wei" DECIMAL(78,0) NOT NULL DEFAULT 0,
    "cleared_wei" DECIMAL(78,0) NOT NULL DEFAULT 0,
    "reserved_wei" DECIMAL(78,0) NOT NULL DEFAULT 0,
    "updated_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "gateway_accounts_pkey" PRIMARY KEY ("account_address")
);

-- A reservation is also the request in flight: what it would record if its replica died, written
-- at admission and, for a stream, updated with what was delivered before it is sent; and who holds it
-- (the replica and its process start), so a restarted replica releases its own at once.
ALTER TABLE "gateway_reservations"
    ADD COLUMN "replica_id" VARCHAR(200),
    ADD COLUMN "boot_id" UUID,
    ADD COLUMN "model_id" VARCHAR(128),
    ADD COLUMN "prompt" TEXT,
    ADD COLUMN "input_tokens" INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN "price_in_per_1k_wei" DECIMAL(78,0),
    ADD COLUMN "price_out_per_1k_wei" DECIMAL(78,0),
    ADD COLUMN "output" TEXT NOT NULL DEFAULT '',
    ADD COLUMN "output_tokens" INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN "ttft_ms" INTEGER;

-- CreateIndex
CREATE INDEX "gateway_reservations_replica_id_boot_id_idx" ON "gateway_reservations"("replica_id", "boot_id");

-- Backfill from the full history, with the definition the gateway used until now: owed = fees of
-- completed inferences the escrow has not taken (no settlement; or settled, in no epoch, its charge
-- batch not applied), settled ones at their settled fee, unsettled ones at their stored prices.
INSERT INTO "gateway_accounts" ("account_address", "billed_wei", "cleared_wei")
SELECT i."account_address",
       SUM(f.fee),
       COALESCE(SUM(f.fee) FILTER (WHERE s."epoch_id" IS NOT NULL OR c."status" = 'applied'), 0)
  FROM "inferences" i
  JOIN "models" m ON m."id" = i."model_id"
  LEFT JOIN "settlements" s ON s."inference_id" = i."id"
  LEFT JOIN "escrow_charges" c ON c."id" = s."charge_id"
  CROSS JOIN LATERAL (SELECT COALESCE(s."fee_wei",
           CEIL(i."input_tokens" * COALESCE(i."price_in_per_1k_wei", m."price_in_per_1k_wei") / 1000)
         + CEIL(i."output_tokens" * COALESCE(i."price_out_per_1k_wei", m."price_out_per_1k_wei") / 1000)) AS fee) f
 WHERE i."status" = 'completed'
 GROUP BY i."account_address";

INSERT INTO "gateway_accounts" ("account_address", "reserved_wei")
SELECT "account_address", SUM("max_cost_wei") FROM "gateway_reservations" GROUP BY "account_address"
ON CONFLICT ("account_address") DO UPDATE SET "reserved_wei" = EXCLUDED."reserved_wei";
