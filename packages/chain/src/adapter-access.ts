import { type Address, type Hex, type LocalAccount, recoverMessageAddress } from "viem";

/*
 * Validators fetch a registered adapter's files from the gateway by content hash (LoRA influence needs
 * the weights; independent validators share no disk with the gateway). The weights are the builder's
 * asset, so the gateway gives them to the active validators only: the request carries an EIP-191
 * signature (personal_sign) by a validator key over the adapter's content hash, the gateway's origin and
 * a timestamp, and the gateway checks the signer against RewardDistributor.activeValidators()
 * (`readValidatorQuorum`). The gateway (apps/gateway), the validators' fetcher (apps/attribution) and
 * the SDK build and check the request with these helpers: one definition.
 */

/** How long after its timestamp a signed request is accepted (s). */
export const ADAPTER_FETCH_TTL_SECONDS = 300;
/** How far ahead of the gateway's clock a timestamp may be (s): clock skew between operators. */
export const ADAPTER_FETCH_SKEW_SECONDS = 60;

/** The request headers (lower case, as Node presents them). */
export const ADAPTER_FETCH_HEADER = {
  /** The validator's address (the key that signed). */
  validator: "x-openledger-validator",
  /** Unix seconds when the request was signed. */
  timestamp: "x-openledger-timestamp",
  /** The gateway origin the validator signed for (scheme://host[:port]); its host must be the request's. */
  origin: "x-openledger-origin",
  /** The EIP-191 signature of `adapterFetchMessage`. */
  signature: "x-openledger-signature",
} as const;

export interface AdapterFetchRequest {
  /** The adapter's content hash (models.content_hash), 64 hex digits. */
  contentHash: string;
  /** The gateway's origin, e.g. `https://gateway.example.org`. */
  origin: string;
  /** Unix seconds. */
  timestamp: number;
}

/** The text a validator signs (EIP-191) to fetch one adapter's files from one gateway. */
export function adapterFetchMessage(r: AdapterFetchRequest): string {
  return [
    "OpenLedger: a validator fetches an adapter's files",
    `Adapter: ${r.contentHash.toLowerCase()}`,
    `Gateway: ${r.origin}`,
    `Timestamp: ${r.timestamp}`,
  ].join("\n");
}

/** The signed headers for fetching `contentHash`'s files from the gateway at `gatewayUrl`. */
export async function adapterFetchHeaders(
  account: LocalAccount,
  contentHash: string,
  gatewayUrl: string,
  nowMs = Date.now(),
): Promise<Record<string, string>> {
  const origin = new URL(gatewayUrl).origin;
  const timestamp = Math.floor(nowMs / 1000);
  const signature = await account.signMessage({
    message: adapterFetchMessage({ contentHash, origin, timestamp }),
  });
  return {
    [ADAPTER_FETCH_HEADER.validator]: account.address.toLowerCase(),
    [ADAPTER_FETCH_HEADER.timestamp]: String(timestamp),
    [ADAPTER_FETCH_HEADER.origin]: origin,
    [ADAPTER_FETCH_HEADER.signature]: signature,
  };
}

/** The address that signed the request (any address for a signature of other bytes); throws on a malformed signature. */
export function recoverAdapterFetchSigner(r: AdapterFetchRequest, signature: Hex): Promise<Address> {
  return recoverMessageAddress({ message: adapterFetchMessage(r), signature });
}
