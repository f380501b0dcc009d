import type { IntentDb, IntentRow, IntentSpec } from "@openledger/chain";
import type { SettlementChain } from "./chain.ts";

// The intent protocol (record, sign, store hash + raw bytes, broadcast, confirm from the receipt)
// is packages/chain's one executor, reached through the kit's connector as the settler.
export { IntentRejectedError, type IntentSpec } from "@openledger/chain";

/** Records the intent and submits it with the settler key (see @openledger/chain `submitIntent`). */
export function submitIntent(
  db: IntentDb,
  chain: SettlementChain,
  spec: IntentSpec,
  options: { crashBeforeBroadcast?: boolean } = {},
): Promise<IntentRow> {
  return chain.connection.submit(db, "settler", spec, options);
}

/** Drives the intent to `confirmed` with the settler key (see @openledger/chain `executeIntent`). */
export function executeIntent(
  db: IntentDb,
  chain: SettlementChain,
  spec: IntentSpec,
  options: { receiptTimeoutMs?: number } = {},
): Promise<{ txHash: string | null }> {
  return chain.connection.execute(db, "settler", spec, options);
}
