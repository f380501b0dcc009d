import {
  executeIntent as executeChainIntent,
  type IntentDb,
  type IntentRow,
  type IntentSpec,
  submitIntent as submitChainIntent,
} from "@openledger/chain";
import type { SettlementChain } from "./chain.ts";

// The intent protocol (record, sign, store hash + raw bytes, broadcast, confirm from the receipt)
// lives in @openledger/chain, shared with the gateway; settlement sends with its settler key.
export { IntentRejectedError, type IntentSpec } from "@openledger/chain";

const signerOf = (chain: SettlementChain) => ({ publicClient: chain.publicClient, wallet: chain.settler });

/** Records the intent and submits it with the settler key (see @openledger/chain `submitIntent`). */
export function submitIntent(
  db: IntentDb,
  chain: SettlementChain,
  spec: IntentSpec,
  options: { crashBeforeBroadcast?: boolean } = {},
): Promise<IntentRow> {
  return submitChainIntent(db, signerOf(chain), spec, options);
}

/** Drives the intent to `confirmed` with the settler key (see @openledger/chain `executeIntent`). */
export function executeIntent(
  db: IntentDb,
  chain: SettlementChain,
  spec: IntentSpec,
  options: { receiptTimeoutMs?: number } = {},
): Promise<{ txHash: string | null }> {
  return executeChainIntent(db, signerOf(chain), spec, options);
}
