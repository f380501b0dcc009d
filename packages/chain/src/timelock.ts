import {
  type Abi,
  type Address,
  encodeFunctionData,
  type Hash,
  type Hex,
  keccak256,
  type TransactionReceipt,
  toHex,
  zeroHash,
} from "viem";
import type { ChainPublicClient, ChainWalletClient } from "./clients.ts";
import { openTimelockAbi } from "./generated/abis.ts";

/** One call the timelock makes (it holds every admin role of the platform). */
export interface AdminCall {
  address: Address;
  abi: Abi;
  functionName: string;
  args: readonly unknown[];
}

export interface TimelockBatch {
  targets: Address[];
  values: bigint[];
  payloads: Hex[];
  predecessor: Hex;
  salt: Hex;
}

/** The (targets, values, payloads) of a batch of admin calls, as the timelock and the governor take them. */
export function encodeAdminCalls(
  calls: readonly AdminCall[],
): Pick<TimelockBatch, "targets" | "values" | "payloads"> {
  return {
    targets: calls.map((c) => c.address),
    values: calls.map(() => 0n),
    payloads: calls.map((c) =>
      encodeFunctionData({ abi: c.abi, functionName: c.functionName, args: c.args } as never),
    ),
  };
}

let saltCounter = 0n;

/**
 * Run admin calls as the timelock: `scheduleBatch` with the timelock's minimum delay, then `executeBatch`.
 * The wallet must hold PROPOSER_ROLE and EXECUTOR_ROLE on the timelock and the delay must be 0 — the dev
 * profile's dev admin, or a deployment wiring itself before it hands the timelock to the governor. In
 * production only the governor proposes, after a vote: use the governor (see governance.ts).
 * A call that reverts makes `executeBatch` revert with that call's own error (the timelock bubbles it up).
 */
export async function executeAsTimelock(options: {
  publicClient: ChainPublicClient;
  walletClient: ChainWalletClient;
  timelock: Address;
  calls: readonly AdminCall[];
  salt?: Hex;
  onReceipt?: (what: "scheduleBatch" | "executeBatch", receipt: TransactionReceipt) => void;
}): Promise<TransactionReceipt> {
  const { publicClient, walletClient, timelock } = options;
  const delay = await publicClient.readContract({
    address: timelock,
    abi: openTimelockAbi,
    functionName: "getMinDelay",
  });
  if (delay !== 0n) {
    throw new Error(`the timelock's delay is ${delay} s: admin calls go through a governance proposal`);
  }
  const { targets, values, payloads } = encodeAdminCalls(options.calls);
  // A fresh salt per batch, so the same calls can be run again later (operation ids are unique).
  const salt =
    options.salt ??
    keccak256(toHex(`${walletClient.account.address}:${Date.now()}:${saltCounter++}:${Math.random()}`));
  const send = async (functionName: "scheduleBatch" | "executeBatch", args: readonly unknown[]) => {
    const hash: Hash = await walletClient.writeContract({
      address: timelock,
      abi: openTimelockAbi,
      functionName,
      args,
      account: walletClient.account,
      chain: walletClient.chain,
    } as never);
    const receipt = await publicClient.waitForTransactionReceipt({ hash });
    if (receipt.status !== "success") throw new Error(`timelock ${functionName} reverted (${hash})`);
    options.onReceipt?.(functionName, receipt);
    return receipt;
  };
  await send("scheduleBatch", [targets, values, payloads, zeroHash, salt, 0n]);
  return send("executeBatch", [targets, values, payloads, zeroHash, salt]);
}
