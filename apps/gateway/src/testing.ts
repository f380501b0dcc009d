// Helpers of the gateway's tests (not used by the service).
import { createChainClients, inferenceEscrowAbi, openTokenAbi } from "@openledger/chain";
import type { LocalChain } from "@openledger/chain/testing";
import { TINY_MODEL_ENV } from "@openledger/config";
import type { App } from "@openledger/service-kit";
import type { Hex } from "viem";
import { buildGateway, gatewayConfig } from "./app.ts";

export interface TestGatewayOptions {
  /** The test's Postgres schema and Redis prefix (`testEnvironment(...).env`). */
  env: Record<string, string | undefined>;
  /** GATEWAY_DATA_DIR (the adapter store, the tiny model). */
  dataDir: string;
  /** The local chain and its addresses file; none: the gateway starts without a chain. */
  chain?: { rpcUrl: string; addressesFile: string };
  /** Any other GATEWAY_* / service setting of this test. */
  settings?: Record<string, string>;
}

/**
 * A gateway for a test, listening on a free port of 127.0.0.1: the tiny model on one thread, the test's
 * Postgres schema and Redis prefix, the local chain when given, then the test's own settings.
 * `url` is its origin (no path).
 */
export async function startTestGateway(options: TestGatewayOptions): Promise<{ app: App; url: string }> {
  const app = await buildGateway(
    gatewayConfig({
      ...TINY_MODEL_ENV,
      ...options.env,
      ...(options.chain
        ? { CHAIN_RPC_URL: options.chain.rpcUrl, CHAIN_ADDRESSES_FILE: options.chain.addressesFile }
        : {}),
      GATEWAY_DATA_DIR: options.dataDir,
      GATEWAY_THREADS: "1",
      ...options.settings,
    }),
  );
  await app.listen({ port: 0, host: "127.0.0.1" });
  return { app, url: originOf(app) };
}

/** A listening app's origin, `http://127.0.0.1:<port>`. */
export function originOf(app: App): string {
  const addr = app.server.address();
  return `http://127.0.0.1:${typeof addr === "object" && addr ? addr.port : 0}`;
}

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
