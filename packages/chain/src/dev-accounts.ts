import type { Address, Hex } from "viem";
import { mnemonicToAccount } from "viem/accounts";

/*
 * The well-known Hardhat dev accounts and the roles the local deployment gives them. Public
 * knowledge: only ever used on a local chain, and by services only in the explicit dev profile
 * (CHAIN_PROFILE=dev, see connector.ts). Kept apart from `testing.ts`, which spawns Hardhat and
 * must never be imported by production code.
 */

/** Hardhat's default dev mnemonic: its accounts are public knowledge, for local chains only. */
export const HARDHAT_MNEMONIC = "test test test test test test test test test test test junk";

export interface DevAccount {
  address: Address;
  privateKey: Hex;
}

function devAccount(index: number): DevAccount {
  const account = mnemonicToAccount(HARDHAT_MNEMONIC, { addressIndex: index });
  const key = account.getHdKey().privateKey;
  if (!key) throw new Error("no private key derived");
  return { address: account.address, privateKey: `0x${Buffer.from(key).toString("hex")}` };
}

/** The 20 well-known accounts a `hardhat node` starts with (10,000 ETH each). */
export const HARDHAT_DEV_ACCOUNTS: readonly DevAccount[] = Array.from({ length: 20 }, (_, i) =>
  devAccount(i),
);

/**
 * Which dev account plays which role on a local chain (indices into HARDHAT_DEV_ACCOUNTS):
 * 0 deployer (in the dev profile also the dev admin: proposer and executor of the timelock, delay 0),
 * 1 operator (slash proposer — and slasher in dev —, datanet publisher, model registrar), 2 settlement (escrow
 * settler), 3 treasury (dev profile; production: the timelock), 4 guardian, 5-7 validators (quorum 2 of 3),
 * 8-13 users (1,000,000 OPEN each), 14 the production profile's token holder (the deployer keeps the rest of
 * the OPEN, and its votes, in the dev profile).
 */
export interface LocalAccounts {
  deployer: DevAccount;
  operator: DevAccount;
  settlement: DevAccount;
  treasury: DevAccount;
  guardian: DevAccount;
  validators: DevAccount[];
  users: DevAccount[];
  tokenHolder: DevAccount;
}

export function localAccounts(): LocalAccounts {
  const a = HARDHAT_DEV_ACCOUNTS;
  return {
    deployer: a[0]!,
    operator: a[1]!,
    settlement: a[2]!,
    treasury: a[3]!,
    guardian: a[4]!,
    validators: [a[5]!, a[6]!, a[7]!],
    users: a.slice(8, 14),
    tokenHolder: a[14]!,
  };
}
