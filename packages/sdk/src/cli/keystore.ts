import { chmod, readFile, writeFile } from "node:fs/promises";
import type { Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { OpenLedgerError } from "../errors.ts";

/*
 * Encrypted key files in the Web3 Secret Storage format (v3: scrypt + AES-128-CTR), the format geth,
 * Foundry's `cast wallet` and MetaMask import/export, through ethers' implementation. Only the address
 * is ever printed.
 */

/** scrypt N: 2^17 (geth's standard) unless light (2^12, geth's --lightkdf) is asked for. */
function scryptN(light: boolean): number {
  return light ? 1 << 12 : 1 << 17;
}

export async function writeKeystore(
  file: string,
  privateKey: Hex,
  password: string,
  opts: { light?: boolean } = {},
): Promise<string> {
  if (password.length < 8)
    throw new OpenLedgerError("WEAK_PASSWORD", "use a keystore password of at least 8 characters");
  const { encryptKeystoreJson } = await import("ethers");
  const address = privateKeyToAccount(privateKey).address;
  const json = await encryptKeystoreJson({ address, privateKey }, password, {
    scrypt: { N: scryptN(opts.light ?? false) },
  });
  await writeFile(file, `${json}\n`, { mode: 0o600, flag: "wx" }).catch((err: NodeJS.ErrnoException) => {
    if (err.code === "EEXIST")
      throw new OpenLedgerError("FILE_EXISTS", `${file} exists: not overwriting a key file`);
    throw err;
  });
  await chmod(file, 0o600);
  return address;
}

export async function readKeystore(file: string, password: string): Promise<Hex> {
  const json = await readFile(file, "utf8").catch(() => {
    throw new OpenLedgerError("KEYSTORE_NOT_FOUND", `no keystore file at ${file}`);
  });
  const { decryptKeystoreJson, isKeystoreJson } = await import("ethers");
  if (!isKeystoreJson(json))
    throw new OpenLedgerError("KEYSTORE_INVALID", `${file} is not a keystore (v3) file`);
  try {
    return (await decryptKeystoreJson(json, password)).privateKey as Hex;
  } catch {
    throw new OpenLedgerError("WRONG_PASSWORD", `could not decrypt ${file}: wrong password`);
  }
}

/** The address a keystore file names (no password needed). */
export async function keystoreAddress(file: string): Promise<string> {
  const raw = JSON.parse(await readFile(file, "utf8")) as { address?: string };
  if (!raw.address) throw new OpenLedgerError("KEYSTORE_INVALID", `${file} names no address`);
  return raw.address.startsWith("0x") ? raw.address : `0x${raw.address}`;
}
