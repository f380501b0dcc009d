/**
 * Where an inference's epoch began: the chain block recorded when the last epoch before it closed
 * (`epochs.closed_block`, the latest closed at or before the inference's creation), as text; NULL while no
 * epoch has closed before it. The validator set and quorum an inference's results are counted against are
 * the distributor's at that block — settlement when it pays, validators when they dispute — so a validator
 * added or removed after the inference changes neither. `inference` is the SQL alias of an `inferences` row.
 */
export function inferenceEpochBlockSql(inference: string): string {
  if (!/^[a-z_][a-z0-9_]*$/.test(inference)) throw new Error(`not an SQL alias: ${inference}`);
  return `(SELECT e.closed_block::text FROM epochs e
            WHERE e.closed_at <= ${inference}.created_at AND e.closed_block IS NOT NULL
            ORDER BY e.closed_at DESC LIMIT 1)`;
}
