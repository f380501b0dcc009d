import {
  type Address,
  encodePacked,
  type Hex,
  hashTypedData,
  keccak256,
  type LocalAccount,
  pad,
  recoverTypedDataAddress,
  type TypedDataDomain,
} from "viem";

/**
 * EIP-712 definitions shared by settlement (which collects epoch attestations), validator workers (which sign
 * them and their attribution results) and the RewardDistributor contract (which verifies epoch roots).
 */

/** Must match RewardDistributor's `EIP712("OpenLedger RewardDistributor", "1")` and EPOCH_ROOT_TYPEHASH. */
export const EPOCH_ROOT_DOMAIN_NAME = "OpenLedger RewardDistributor";
export const EPOCH_ROOT_DOMAIN_VERSION = "1";

export const epochRootTypes = {
  EpochRoot: [
    { name: "epoch", type: "uint64" },
    { name: "root", type: "bytes32" },
    { name: "cumulativeTotal", type: "uint256" },
  ],
} as const;

export interface EpochRootMessage {
  epoch: bigint;
  root: Hex;
  /** Sum of every account's cumulative earnings in this root (wei of OPEN). */
  cumulativeTotal: bigint;
}

export function epochRootDomain(chainId: number, distributor: Address): TypedDataDomain {
  return {
    name: EPOCH_ROOT_DOMAIN_NAME,
    version: EPOCH_ROOT_DOMAIN_VERSION,
    chainId,
    verifyingContract: distributor,
  };
}

export function epochRootTypedData(chainId: number, distributor: Address, message: EpochRootMessage) {
  return {
    domain: epochRootDomain(chainId, distributor),
    types: epochRootTypes,
    primaryType: "EpochRoot" as const,
    message,
  };
}

export function epochRootDigest(chainId: number, distributor: Address, message: EpochRootMessage): Hex {
  return hashTypedData(epochRootTypedData(chainId, distributor, message));
}

export async function signEpochRoot(
  account: LocalAccount,
  chainId: number,
  distributor: Address,
  message: EpochRootMessage,
): Promise<Hex> {
  return account.signTypedData(epochRootTypedData(chainId, distributor, message));
}

export async function recoverEpochRootSigner(
  chainId: number,
  distributor: Address,
  message: EpochRootMessage,
  signature: Hex,
): Promise<Address> {
  return recoverTypedDataAddress({ ...epochRootTypedData(chainId, distributor, message), signature });
}

export interface SignerSignature {
  signer: Address;
  signature: Hex;
}

/**
 * Order attestations the way RewardDistributor.postEpoch requires: strictly ascending signer address.
 * Throws on a duplicate signer (the contract would reject it).
 */
export function sortSignatures(signatures: readonly SignerSignature[]): Hex[] {
  const sorted = [...signatures].sort((a, b) => {
    const x = BigInt(a.signer);
    const y = BigInt(b.signer);
    return x < y ? -1 : x > y ? 1 : 0;
  });
  for (let i = 1; i < sorted.length; i++) {
    if (BigInt(sorted[i]!.signer) === BigInt(sorted[i - 1]!.signer)) {
      throw new Error(`duplicate signer ${sorted[i]!.signer}`);
    }
  }
  return sorted.map((s) => s.signature);
}

// ------------------------------------------------------------------ attribution results

/** Validator workers sign their (deterministic) attribution result; settlement counts matching signatures. */
export const ATTRIBUTION_DOMAIN_NAME = "OpenLedger Attribution";
export const ATTRIBUTION_DOMAIN_VERSION = "1";

export const attributionResultTypes = {
  AttributionResult: [
    { name: "inferenceId", type: "bytes32" },
    { name: "resultHash", type: "bytes32" },
  ],
} as const;

export interface AttributionResultMessage {
  inferenceId: Hex;
  /** Hash of the canonical encoding of the per-contributor weights (computed by attribution-core). */
  resultHash: Hex;
}

/**
 * The attribution domain is bound to the chain and, when given, to the RewardDistributor the earnings will be
 * paid from, so a signature cannot be replayed on another deployment.
 */
export function attributionResultDomain(chainId: number, verifyingContract?: Address): TypedDataDomain {
  return {
    name: ATTRIBUTION_DOMAIN_NAME,
    version: ATTRIBUTION_DOMAIN_VERSION,
    chainId,
    ...(verifyingContract ? { verifyingContract } : {}),
  };
}

export function attributionResultTypedData(
  chainId: number,
  message: AttributionResultMessage,
  verifyingContract?: Address,
) {
  return {
    domain: attributionResultDomain(chainId, verifyingContract),
    types: attributionResultTypes,
    primaryType: "AttributionResult" as const,
    message,
  };
}

export async function signAttributionResult(
  account: LocalAccount,
  chainId: number,
  message: AttributionResultMessage,
  verifyingContract?: Address,
): Promise<Hex> {
  return account.signTypedData(attributionResultTypedData(chainId, message, verifyingContract));
}

export async function recoverAttributionResultSigner(
  chainId: number,
  message: AttributionResultMessage,
  signature: Hex,
  verifyingContract?: Address,
): Promise<Address> {
  return recoverTypedDataAddress({
    ...attributionResultTypedData(chainId, message, verifyingContract),
    signature,
  });
}

/**
 * The bytes32 an inference id is signed as (AttributionResult, AttributionCommitment, ValidatorDisputes): the
 * UUID's 16 bytes, left-padded with zeros (reversible; validators sign and settlement verifies with this one).
 */
export function inferenceIdToBytes32(inferenceId: string): Hex {
  const hex = inferenceId.replaceAll("-", "").toLowerCase();
  if (!/^[0-9a-f]{32}$/.test(hex)) throw new RangeError(`not a UUID: ${inferenceId}`);
  return pad(`0x${hex}`, { size: 32 });
}

// ------------------------------------------------------------------ attribution commitments (commit-reveal)

/**
 * Before a validator's result is readable anywhere, the validator records a signed commitment to it:
 * keccak256(abi.encodePacked(resultHash, validator, salt)), signed as EIP-712 `AttributionCommitment` in the
 * attribution domain. The salt (32 bytes, secret until the reveal) keeps the commitment from being checked
 * against a guessed result; the validator's address inside keeps one validator's commitment from being
 * replayed as another's. The reveal is the result with its salt; it counts only when it opens a commitment
 * recorded before the inference's first reveal.
 */
export const attributionCommitmentTypes = {
  AttributionCommitment: [
    { name: "inferenceId", type: "bytes32" },
    { name: "commitment", type: "bytes32" },
  ],
} as const;

export interface AttributionCommitmentMessage {
  inferenceId: Hex;
  /** `attributionCommitment(resultHash, validator, salt)`. */
  commitment: Hex;
}

/** keccak256(abi.encodePacked(bytes32 resultHash, address validator, bytes32 salt)), lower-case. */
export function attributionCommitment(resultHash: Hex, validator: Address, salt: Hex): Hex {
  return keccak256(encodePacked(["bytes32", "address", "bytes32"], [resultHash, validator, salt]));
}

/**
 * Whether a reveal (resultHash, validator, salt) opens a recorded commitment; false for malformed input
 * (not 32-byte hashes, not an address) rather than an exception: stored rows are untrusted.
 */
export function opensAttributionCommitment(
  commitment: string | null | undefined,
  resultHash: string,
  validator: string,
  salt: string | null | undefined,
): boolean {
  if (!commitment || !salt) return false;
  if (!/^0x[0-9a-fA-F]{64}$/.test(resultHash) || !/^0x[0-9a-fA-F]{64}$/.test(salt)) return false;
  if (!/^0x[0-9a-fA-F]{40}$/.test(validator)) return false;
  return (
    attributionCommitment(resultHash as Hex, validator as Address, salt as Hex) === commitment.toLowerCase()
  );
}

export function attributionCommitmentTypedData(
  chainId: number,
  message: AttributionCommitmentMessage,
  verifyingContract?: Address,
) {
  return {
    domain: attributionResultDomain(chainId, verifyingContract),
    types: attributionCommitmentTypes,
    primaryType: "AttributionCommitment" as const,
    message,
  };
}

export async function signAttributionCommitment(
  account: LocalAccount,
  chainId: number,
  message: AttributionCommitmentMessage,
  verifyingContract?: Address,
): Promise<Hex> {
  return account.signTypedData(attributionCommitmentTypedData(chainId, message, verifyingContract));
}

export async function recoverAttributionCommitmentSigner(
  chainId: number,
  message: AttributionCommitmentMessage,
  signature: Hex,
  verifyingContract?: Address,
): Promise<Address> {
  return recoverTypedDataAddress({
    ...attributionCommitmentTypedData(chainId, message, verifyingContract),
    signature,
  });
}

/**
 * A validator's salt for one inference: keccak256 of its own signature over a fixed message naming the
 * inference and the deployment. Only the key holder can produce it (secret until revealed), and ECDSA
 * signatures here are deterministic (RFC 6979), so a restarted validator derives the same salt and can
 * still open the commitment it recorded before the restart.
 */
export async function attributionCommitmentSalt(
  account: LocalAccount,
  chainId: number,
  inferenceId: Hex,
  verifyingContract?: Address,
): Promise<Hex> {
  const where = `${chainId}:${(verifyingContract ?? "0x").toLowerCase()}`;
  return keccak256(
    await account.signMessage({
      message: `OpenLedger attribution commitment salt\n${where}\n${inferenceId}`,
    }),
  );
}

/**
 * Test and bench helper: what a validator records for a result, in order — the signed commitment, then the
 * reveal (salt and the result's signature).
 */
export async function commitAndRevealAttribution(
  account: LocalAccount,
  chainId: number,
  inferenceId: Hex,
  resultHash: Hex,
  verifyingContract?: Address,
): Promise<{ commitment: Hex; commitmentSignature: Hex; salt: Hex; signature: Hex }> {
  const salt = await attributionCommitmentSalt(account, chainId, inferenceId, verifyingContract);
  const commitment = attributionCommitment(resultHash, account.address, salt);
  return {
    commitment,
    commitmentSignature: await signAttributionCommitment(
      account,
      chainId,
      { inferenceId, commitment },
      verifyingContract,
    ),
    salt,
    signature: await signAttributionResult(account, chainId, { inferenceId, resultHash }, verifyingContract),
  };
}

// ------------------------------------------------------------------ validator disputes

/**
 * Must match ValidatorDisputes' `EIP712("OpenLedger ValidatorDisputes", "1")` and DISPUTE_TYPEHASH: an active
 * validator's statement that `validator` signed `signedResultHash` for the inference while the result
 * recomputed from public inputs is `quorumResultHash` (`fileDispute` needs a quorum of them).
 */
export const attributionDisputeTypes = {
  AttributionDispute: [
    { name: "validator", type: "address" },
    { name: "inferenceId", type: "bytes32" },
    { name: "signedResultHash", type: "bytes32" },
    { name: "quorumResultHash", type: "bytes32" },
  ],
} as const;

export interface AttributionDisputeMessage {
  validator: Address;
  inferenceId: Hex;
  signedResultHash: Hex;
  quorumResultHash: Hex;
}

export function attributionDisputeTypedData(
  chainId: number,
  disputes: Address,
  message: AttributionDisputeMessage,
) {
  return {
    domain: { name: "OpenLedger ValidatorDisputes", version: "1", chainId, verifyingContract: disputes },
    types: attributionDisputeTypes,
    primaryType: "AttributionDispute" as const,
    message,
  };
}

/** Must match DatanetRegistry's `EIP712("OpenLedger DatanetRegistry", "1")` and BUILDER_APPROVAL_TYPEHASH. */
export const builderApprovalTypes = {
  BuilderApproval: [
    { name: "datanetId", type: "uint256" },
    { name: "builder", type: "address" },
    { name: "approved", type: "bool" },
    { name: "nonce", type: "uint256" },
    { name: "deadline", type: "uint256" },
  ],
} as const;

/** A datanet owner's approval of a builder for small models (DatanetRegistry.approveBuilderBySig). */
export interface BuilderApprovalMessage {
  datanetId: bigint;
  builder: Address;
  approved: boolean;
  /** The owner's current `DatanetRegistry.nonces(owner)`. */
  nonce: bigint;
  /** Unix seconds after which the chain refuses it. */
  deadline: bigint;
}

export function builderApprovalTypedData(
  chainId: number,
  registry: Address,
  message: BuilderApprovalMessage,
) {
  return {
    domain: { name: "OpenLedger DatanetRegistry", version: "1", chainId, verifyingContract: registry },
    types: builderApprovalTypes,
    primaryType: "BuilderApproval" as const,
    message,
  };
}

/**
 * An account asks the gateway for an API key of its own (POST /v1/api-keys): EIP-712 `CreateApiKey`, domain
 * "OpenLedger Gateway" v1 on the platform's chain (no verifying contract: the gateway checks it off chain, an
 * ERC-1271 contract account through the chain). `issuedAt` bounds its life; `nonce` makes it single-use.
 */
export const apiKeyRequestTypes = {
  CreateApiKey: [
    { name: "account", type: "address" },
    { name: "name", type: "string" },
    { name: "issuedAt", type: "uint256" },
    { name: "nonce", type: "bytes32" },
  ],
} as const;

export interface ApiKeyRequestMessage {
  account: Address;
  name: string;
  /** Unix seconds. */
  issuedAt: bigint;
  /** 32 random bytes. */
  nonce: Hex;
}

export function apiKeyRequestTypedData(chainId: number, message: ApiKeyRequestMessage) {
  return {
    domain: { name: "OpenLedger Gateway", version: "1", chainId },
    types: apiKeyRequestTypes,
    primaryType: "CreateApiKey" as const,
    message,
  };
}

/** The JSON body of POST /v1/api-keys, signed by `account` (a fresh nonce, issued now). */
export async function signApiKeyRequest(
  account: LocalAccount,
  chainId: number,
  name = "",
): Promise<{ account: Address; name: string; issued_at: number; nonce: Hex; signature: Hex }> {
  const issuedAt = Math.floor(Date.now() / 1000);
  const nonce = `0x${Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("hex")}` as Hex;
  const signature = await account.signTypedData(
    apiKeyRequestTypedData(chainId, { account: account.address, name, issuedAt: BigInt(issuedAt), nonce }),
  );
  return { account: account.address, name, issued_at: issuedAt, nonce, signature };
}
