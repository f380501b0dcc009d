-- Settlement follows the RewardDistributor's activation delay and the guardian's revocations (issue #14).
--
-- A posted root is claimable only from `activates_at` (the distributor's `activatesAt`, on the CHAIN's
-- clock); once the chain's clock has passed it and the root is not revoked it can never be revoked
-- (`final_at`: when settlement saw that). A root the guardian revoked is `revoked`: claims never serve it,
-- its settlements are held out of later epochs (`settlements.held_by_epoch_id`) and the ledger records
-- the correction explicitly (a transaction `epoch_revoked:<id>` moving the epoch's credits to a
-- `held:epoch:<id>` account; `epoch_released:<id>` reverses it when an operator releases them).
ALTER TYPE "EpochStatus" ADD VALUE 'revoked';

ALTER TABLE "epochs"
    ADD COLUMN "activates_at" TIMESTAMPTZ(3),
    ADD COLUMN "final_at" TIMESTAMPTZ(3),
    ADD COLUMN "revoked_at" TIMESTAMPTZ(3),
    ADD COLUMN "released_at" TIMESTAMPTZ(3);

ALTER TABLE "settlements" ADD COLUMN "held_by_epoch_id" INTEGER;

-- AddForeignKey
ALTER TABLE "settlements" ADD CONSTRAINT "settlements_held_by_epoch_id_fkey" FOREIGN KEY ("held_by_epoch_id") REFERENCES "epochs"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- CreateIndex
CREATE INDEX "settlements_held_by_epoch_id_idx" ON "settlements"("held_by_epoch_id");
