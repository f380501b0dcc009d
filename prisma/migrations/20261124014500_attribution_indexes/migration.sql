-- CreateEnum
CREATE TYPE "AttributionIndexKind" AS ENUM ('span', 'influence');

-- CreateEnum
CREATE TYPE "AttributionIndexStatus" AS ENUM ('building', 'ready', 'failed');

-- CreateTable
CREATE TABLE "attribution_indexes" (
    "id" UUID NOT NULL,
    "datanet_version_id" UUID NOT NULL,
    "kind" "AttributionIndexKind" NOT NULL,
    "status" "AttributionIndexStatus" NOT NULL DEFAULT 'building',
    "blob_hash" CHAR(64),
    "onnx_blob_hash" CHAR(64),
    "tokenizer" VARCHAR(64) NOT NULL,
    "token_count" BIGINT NOT NULL DEFAULT 0,
    "row_count" INTEGER NOT NULL DEFAULT 0,
    "stats" JSONB NOT NULL,
    "error" TEXT,
    "job_id" VARCHAR(200),
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "attribution_indexes_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE UNIQUE INDEX "attribution_indexes_datanet_version_id_kind_key" ON "attribution_indexes"("datanet_version_id", "kind");

-- AddForeignKey
ALTER TABLE "attribution_indexes" ADD CONSTRAINT "attribution_indexes_datanet_version_id_fkey" FOREIGN KEY ("datanet_version_id") REFERENCES "datanet_versions"("id") ON DELETE RESTRICT ON UPDATE CASCADE;
