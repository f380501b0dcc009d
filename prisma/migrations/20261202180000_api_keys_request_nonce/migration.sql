-- API keys are created by the paying account's own signed request (POST /v1/api-keys), no longer
-- minted by an admin. The request's nonce is kept, unique, so a captured request cannot be replayed
-- to mint another key for the same account. NULL for keys created before this column existed.
ALTER TABLE "api_keys" ADD COLUMN "request_nonce" CHAR(66);

-- CreateIndex
CREATE UNIQUE INDEX "api_keys_request_nonce_key" ON "api_keys"("request_nonce");
