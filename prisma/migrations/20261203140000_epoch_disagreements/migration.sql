-- Independent validators (issue #14): a validator whose recount of a closed epoch's root differs from the
-- root settlement closed does not attest it; the disagreement is recorded here (one row per epoch and
-- validator) for operators and for a dispute.
CREATE TABLE "epoch_disagreements" (
    "epoch_id" INTEGER NOT NULL,
    "validator_address" VARCHAR(42) NOT NULL,
    "closed_root" VARCHAR(66) NOT NULL,
    "recounted_root" VARCHAR(66) NOT NULL,
    "closed_total_wei" DECIMAL(78,0) NOT NULL,
    "recounted_total_wei" DECIMAL(78,0) NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "epoch_disagreements_pkey" PRIMARY KEY ("epoch_id", "validator_address")
);

ALTER TABLE "epoch_disagreements" ADD CONSTRAINT "epoch_disagreements_epoch_id_fkey"
    FOREIGN KEY ("epoch_id") REFERENCES "epochs"("id") ON DELETE RESTRICT ON UPDATE CASCADE;
