-- AlterTable
ALTER TABLE "datanet_rows" ADD COLUMN     "metadata" JSONB,
ADD COLUMN     "signature" BYTEA,
ADD COLUMN     "similarity_ppm" INTEGER;

-- CreateTable
CREATE TABLE "slashing_events" (
    "id" BIGSERIAL NOT NULL,
    "proposal_id" UUID NOT NULL,
    "from_status" "SlashingStatus",
    "to_status" "SlashingStatus" NOT NULL,
    "actor" VARCHAR(42) NOT NULL,
    "note" TEXT,
    "tx_hash" CHAR(66),
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "slashing_events_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "slashing_events_proposal_id_id_idx" ON "slashing_events"("proposal_id", "id");

-- AddForeignKey
ALTER TABLE "slashing_events" ADD CONSTRAINT "slashing_events_proposal_id_fkey" FOREIGN KEY ("proposal_id") REFERENCES "slashing_proposals"("id") ON DELETE RESTRICT ON UPDATE CASCADE;
