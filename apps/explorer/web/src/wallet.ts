// The injected EIP-1193 wallet (MetaMask, Rabby, a test's provider): viem's `custom` transport
// over window.ethereum, so the user's wallet signs and sends; the explorer never holds a key.
import { rewardDistributorAbi } from "@openledger/chain/abis";
import {
  type Address,
  createPublicClient,
  createWalletClient,
  custom,
  type EIP1193Provider,
  type Hex,
  toHex,
} from "viem";
import type { ClaimInfo } from "./api.ts";

declare global {
  interface Window {
    ethereum?: EIP1193Provider;
  }
}

export const hasWallet = () => typeof window !== "undefined" && window.ethereum !== undefined;

function provider(): EIP1193Provider {
  if (!window.ethereum) throw new Error("No wallet found: install a browser wallet (EIP-1193) to sign.");
  return window.ethereum;
}

/** Asks the wallet for its account (a prompt in a real wallet). */
export async function connect(): Promise<Address> {
  const accounts = (await provider().request({ method: "eth_requestAccounts" })) as Address[];
  const first = accounts[0];
  if (!first) throw new Error("The wallet shared no account.");
  return first.toLowerCase() as Address;
}

/** Puts the wallet on the distributor's chain (asks the user to switch when it is elsewhere). */
async function ensureChain(chainId: number): Promise<void> {
  const current = Number.parseInt((await provider().request({ method: "eth_chainId" })) as string, 16);
  if (current === chainId) return;
  await provider().request({ method: "wallet_switchEthereumChain", params: [{ chainId: toHex(chainId) }] });
}

export interface ClaimOutcome {
  hash: Hex;
  status: "success" | "reverted";
  blockNumber: bigint;
}

/**
 * Claims `info.address`'s unclaimed earnings with the proof of the active epoch:
 * `RewardDistributor.claim(epoch, account, cumulativeAmount, proof)`, signed by the wallet's account.
 * Anyone may send it; the tokens always go to `info.address`.
 */
export async function claim(info: ClaimInfo): Promise<ClaimOutcome> {
  if (info.epoch === null) throw new Error("No active epoch to claim from.");
  const account = await connect();
  await ensureChain(info.chainId);
  const transport = custom(provider());
  const wallet = createWalletClient({ account, transport });
  const hash = await wallet.writeContract({
    address: info.distributor as Address,
    abi: rewardDistributorAbi,
    functionName: "claim",
    args: [BigInt(info.epoch), info.address as Address, BigInt(info.cumulativeAmount), info.proof as Hex[]],
    chain: null,
  });
  const receipt = await createPublicClient({ transport }).waitForTransactionReceipt({
    hash,
    pollingInterval: 500,
  });
  return { hash, status: receipt.status, blockNumber: receipt.blockNumber };
}
