-- CreateTable
CREATE TABLE "gateway_reservations" (
    "id" UUID NOT NULL,
    "account_address" VARCHAR(42) NOT NULL,
    "max_cost_wei" DECIMAL(78,0) NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "expires_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "gateway_reservations_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "gateway_reservations_account_address_expires_at_idx" ON "gateway_reservations"("account_address", "expires_at");

-- CreateIndex
CREATE INDEX "gateway_reservations_expires_at_idx" ON "gateway_reservations"("expires_at");
