// Helpers of the gateway's tests (not used by the service).
import { createChainClients, inferenceEscrowAbi, openTokenAbi } from "@openledger/chain";
import type { LocalChain } from "@openledger/chain/testing";
import type { Hex } from "viem";

/** Deposits `amount` wei of OPEN into InferenceEscrow for a funded dev account; returns its address (lower case). */
export async function depositToEscrow(
  chain: LocalChain,
  user: { address: string; privateKey: string },
  amount: bigint,
): Promise<string> {
  const { publicClient, walletClient } = createChainClients({
    rpcUrl: chain.rpcUrl,
    chainId: chain.chainId,
    privateKey: user.privateKey as Hex,
  });
  const c = chain.addresses!.contracts;
  const approve = await walletClient.writeContract({
    address: c.OpenToken,
    abi: openTokenAbi,
    functionName: "approve",
    args: [c.InferenceEscrow, amount],
  });
  await publicClient.waitForTransactionReceipt({ hash: approve });
  const deposit = await walletClient.writeContract({
    address: c.InferenceEscrow,
    abi: inferenceEscrowAbi,
    functionName: "deposit",
    args: [amount],
  });
  await publicClient.waitForTransactionReceipt({ hash: deposit });
  return user.address.toLowerCase();
}
