-- Commit-reveal for validators (issue #14): a validator first records a signed commitment to its result
-- (keccak256(resultHash, validator, salt), EIP-712 AttributionCommitment), and stores the result itself
-- (the reveal, with its salt) only later. A reveal counts only when its commitment was recorded before
-- the inference's first reveal, so a validator that copies a revealed result is too late to count.
--
-- "Before" is the order the database assigns: one sequence numbers commitments and reveals alike, the
-- number is drawn when the row is inserted (so a commitment numbered below a reveal was inserted before
-- that reveal existed), and triggers make it unforgeable for anyone with only DML rights: an inserted
-- number is always replaced by the next one, and neither a commitment nor a reveal's number can be
-- updated; a commitment cannot be deleted. Who could still reorder (the database owner) is in
-- ARCHITECTURE.md "Validator protocol".
CREATE SEQUENCE "attribution_order_seq";

CREATE TABLE "attribution_commitments" (
    "inference_id" UUID NOT NULL,
    "validator_address" VARCHAR(42) NOT NULL,
    "commitment" CHAR(66) NOT NULL,
    "signature" VARCHAR(132) NOT NULL,
    "seq" BIGINT NOT NULL DEFAULT nextval('attribution_order_seq'),
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "attribution_commitments_pkey" PRIMARY KEY ("inference_id", "validator_address")
);

ALTER TABLE "attribution_commitments" ADD CONSTRAINT "attribution_commitments_inference_id_fkey"
    FOREIGN KEY ("inference_id") REFERENCES "inferences"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- Reveals: the salt that opens the commitment, and the reveal's place in the same order.
ALTER TABLE "attribution_results" ADD COLUMN "salt" CHAR(66);
ALTER TABLE "attribution_results" ADD COLUMN "reveal_seq" BIGINT NOT NULL DEFAULT nextval('attribution_order_seq');

CREATE FUNCTION "attribution_commitment_order"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    NEW.seq := nextval('attribution_order_seq');
    RETURN NEW;
  END IF;
  RAISE EXCEPTION 'attribution commitments are immutable (% refused)', TG_OP;
END $$;

CREATE TRIGGER "attribution_commitments_order" BEFORE INSERT OR UPDATE OR DELETE ON "attribution_commitments"
    FOR EACH ROW EXECUTE FUNCTION "attribution_commitment_order"();

CREATE FUNCTION "attribution_reveal_order"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    NEW.reveal_seq := nextval('attribution_order_seq');
  ELSIF NEW.reveal_seq IS DISTINCT FROM OLD.reveal_seq OR NEW.salt IS DISTINCT FROM OLD.salt
     OR NEW.result_hash IS DISTINCT FROM OLD.result_hash THEN
    RAISE EXCEPTION 'a reveal''s order, salt and hash are immutable';
  END IF;
  RETURN NEW;
END $$;

CREATE TRIGGER "attribution_results_order" BEFORE INSERT OR UPDATE ON "attribution_results"
    FOR EACH ROW EXECUTE FUNCTION "attribution_reveal_order"();
