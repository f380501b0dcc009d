// The `openledger` commands' heavy dependencies, imported by main.ts's preAction hook when a command
// runs (not for --help or a usage error): viem, the chain package (ABIs, bytecode) and the SDK's clients.
import { formatUnits } from "viem";

export { getAddress, isAddress, parseUnits } from "viem";
export { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
export { subjectOf, ZERO_SUBJECT } from "../chain.ts";
export { createContext, promptSecret } from "./context.ts";
export { keystoreAddress, writeKeystore } from "./keystore.ts";

/** OPEN with up to 6 decimals shown (exact wei in --json). */
export function open(wei: bigint | string): string {
  const s = formatUnits(BigInt(wei), 18);
  const [i, f = ""] = s.split(".");
  const frac = f.slice(0, 6).replace(/0+$/, "");
  return `${i}${frac ? `.${frac}` : ""}${f.length > 6 && /[1-9]/.test(f.slice(6)) ? "…" : ""} OPEN`;
}
