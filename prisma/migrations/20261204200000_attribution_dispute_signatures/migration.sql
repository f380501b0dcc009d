-- Validators file disputes by themselves: a validator whose own result equals the quorum's signs, for each
-- validator that signed a different result, the EIP-712 AttributionDispute{validator, inferenceId,
-- signedResultHash, quorumResultHash} of ValidatorDisputes, and records it here where the other validators see
-- it; once `requiredSignatures()` active validators other than the accused have, one of them files
-- ValidatorDisputes.fileDispute through a chain intent. One signature per (accused, inference, signer).
CREATE TABLE "attribution_dispute_signatures" (
    "accused" VARCHAR(42) NOT NULL,
    "inference_id" UUID NOT NULL,
    "signer" VARCHAR(42) NOT NULL,
    "signed_result_hash" CHAR(66) NOT NULL,
    "quorum_result_hash" CHAR(66) NOT NULL,
    "signature" VARCHAR(132) NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "attribution_dispute_signatures_pkey" PRIMARY KEY ("accused", "inference_id", "signer")
);

ALTER TABLE "attribution_dispute_signatures" ADD CONSTRAINT "attribution_dispute_signatures_inference_id_fkey"
    FOREIGN KEY ("inference_id") REFERENCES "inferences"("id") ON DELETE RESTRICT ON UPDATE CASCADE;
