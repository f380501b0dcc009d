-- Settlement pays exactly what the validator quorum signed (issue #14): the weights come from the signed
-- canonical result; when the attribution service's weight rows beside it differ (or the signed bytes
-- are not a payable result) the inference is held (nobody is paid) and reported here. The sweeper keeps
-- re-checking it; `resolved_at` is set when it settles.
CREATE TABLE "settlement_anomalies" (
    "inference_id" UUID NOT NULL,
    "kind" VARCHAR(64) NOT NULL,
    "detail" JSONB NOT NULL,
    "first_seen_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "last_seen_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "resolved_at" TIMESTAMPTZ(3),

    CONSTRAINT "settlement_anomalies_pkey" PRIMARY KEY ("inference_id")
);

-- CreateIndex
CREATE INDEX "settlement_anomalies_resolved_at_idx" ON "settlement_anomalies"("resolved_at");
