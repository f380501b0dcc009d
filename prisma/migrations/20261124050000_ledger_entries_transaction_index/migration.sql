-- An epoch close joins the epoch's settlements to their ledger entries, and the journal
-- route reads one transaction's entries: both scanned all of ledger_entries without this.
CREATE INDEX "ledger_entries_transaction_id_idx" ON "ledger_entries"("transaction_id");
