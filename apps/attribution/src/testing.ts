import { ChainConnector } from "@openledger/chain";
import { localAccounts } from "@openledger/chain/testing";
import type { Db } from "@openledger/db";
import { privateKeyToAccount } from "viem/accounts";
import { attestClosedEpochs } from "./lib/epoch-attestor.ts";

/**
 * The local validators' epoch attestors, for tests of settlement that post roots without running the
 * attribution service: each of the local deployment's validators (Hardhat #5-7, or `keys`) runs the
 * validator's own attestor (`attestClosedEpochs`: recount, then sign) every `intervalMs`, as a validator
 * process does. Settlement holds no validator key, so without these no root is ever posted.
 */
export function startTestAttestors(options: {
  db: Db;
  rpcUrl: string;
  addressesFile: string;
  keys?: readonly `0x${string}`[];
  intervalMs?: number;
}): { stop(): Promise<void> } {
  const keys = options.keys ?? localAccounts().validators.map((v) => v.privateKey);
  const connector = new ChainConnector({
    rpcUrl: options.rpcUrl,
    addressesFile: options.addressesFile,
    profile: "dev",
  });
  const identities = keys.map((k) => {
    const account = privateKeyToAccount(k);
    return { address: account.address.toLowerCase(), account };
  });
  const quiet = { info() {}, warn() {} };
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      try {
        const chain = await connector.get();
        for (const identity of identities) await attestClosedEpochs(options.db, chain, identity, quiet);
      } catch {
        // the chain or database went away (a test of outages): try again next round
      }
      await new Promise((r) => setTimeout(r, options.intervalMs ?? 100));
    }
  })();
  return {
    async stop() {
      stopped = true;
      await loop;
    },
  };
}
