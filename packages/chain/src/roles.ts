import { type Hex, keccak256, toBytes } from "viem";

/** AccessControl role ids, identical to the contracts' `keccak256("<NAME>")` constants. */
export const DEFAULT_ADMIN_ROLE: Hex = `0x${"00".repeat(32)}`;
export const SLASHER_ROLE = keccak256(toBytes("SLASHER_ROLE"));
export const PUBLISHER_ROLE = keccak256(toBytes("PUBLISHER_ROLE"));
export const REGISTRAR_ROLE = keccak256(toBytes("REGISTRAR_ROLE"));
export const SETTLER_ROLE = keccak256(toBytes("SETTLER_ROLE"));
export const DISTRIBUTOR_ROLE = keccak256(toBytes("DISTRIBUTOR_ROLE"));
export const GUARDIAN_ROLE = keccak256(toBytes("GUARDIAN_ROLE"));

/** Staking.StakeRole (uint8 in the ABI). */
export const StakeRole = { Contributor: 0, Validator: 1, ModelPublisher: 2 } as const;
export type StakeRole = (typeof StakeRole)[keyof typeof StakeRole];

/** ModelRegistry.ModelKind (uint8 in the ABI). */
export const ModelKind = { Model: 0, Adapter: 1 } as const;
export type ModelKind = (typeof ModelKind)[keyof typeof ModelKind];

/** The Staking subject for a datanet / model id (uint256 id as bytes32); validators use ZERO_SUBJECT. */
export const ZERO_SUBJECT: Hex = `0x${"00".repeat(32)}`;
export function subjectOf(id: bigint): Hex {
  return `0x${id.toString(16).padStart(64, "0")}`;
}

export const OPEN = 10n ** 18n;
