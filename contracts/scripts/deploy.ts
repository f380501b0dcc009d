// Deploy and wire the whole platform on any RPC and write the addresses file services read.
//
//   RPC_URL=http://127.0.0.1:8545 npm run deploy -w @openledger/contracts
//
// Environment (all optional on a local Hardhat chain, where the well-known dev accounts are used):
//   PROFILE                 "production" (default off the local chain) or "dev" (default on 31337/1337):
//                           see DeployProfile in packages/chain/src/deploy.ts
//   RPC_URL                 default http://127.0.0.1:8545
//   DEPLOYER_PRIVATE_KEY    required unless the chain id is 31337/1337 (then Hardhat dev account #0)
//   OPERATOR_ADDRESS, SETTLEMENT_ADDRESS, GUARDIAN_ADDRESS (required in production), TREASURY_ADDRESS
//   (production default: the timelock), TOKEN_HOLDER_ADDRESS
//   VALIDATOR_ADDRESSES     comma-separated
//   ACTIVATION_DELAY, WITHDRAWAL_DELAY, UNBONDING_PERIOD (seconds; production refuses values below its floors)
//   ADDRESSES_FILE          default <repo>/.data/chain/addresses.<chainId>.json
import {
  type DeployProfile,
  defaultAddressesPath,
  deployPlatform,
  devProfileNotice,
  loadAddresses,
  type PlatformParamsInput,
} from "@openledger/chain";
import { localAccounts, USER_FUNDING } from "@openledger/chain/testing";
import { type Address, createPublicClient, type Hex, http } from "viem";

async function main(): Promise<void> {
  const env = process.env;
  const rpcUrl = env.RPC_URL ?? "http://127.0.0.1:8545";
  const chainId = await createPublicClient({ transport: http(rpcUrl) }).getChainId();
  const local = chainId === 31337 || chainId === 1337;
  // Hardhat's public dev accounts: defaults on a local chain only.
  const dev = localAccounts();
  const key = (env.DEPLOYER_PRIVATE_KEY as Hex | undefined) ?? (local ? dev.deployer.privateKey : undefined);
  if (!key) throw new Error(`DEPLOYER_PRIVATE_KEY is required on chain ${chainId}`);
  const pick = (name: string, fallback: Address): Address => (env[name] as Address | undefined) ?? fallback;
  const need = (name: string, fallback: Address): Address => {
    const v = env[name] as Address | undefined;
    if (v) return v;
    if (!local) throw new Error(`${name} is required on chain ${chainId}`);
    return fallback;
  };
  const validators = env.VALIDATOR_ADDRESSES
    ? (env.VALIDATOR_ADDRESSES.split(",").map((s) => s.trim()) as Address[])
    : local
      ? dev.validators.map((v) => v.address)
      : [];
  const profile: DeployProfile = (env.PROFILE as DeployProfile | undefined) ?? (local ? "dev" : "production");
  if (profile !== "dev" && profile !== "production") throw new Error(`PROFILE must be dev or production`);
  const params: PlatformParamsInput = {};
  if (env.ACTIVATION_DELAY) params.activationDelay = Number(env.ACTIVATION_DELAY);
  if (env.WITHDRAWAL_DELAY) params.withdrawalDelay = Number(env.WITHDRAWAL_DELAY);
  if (env.UNBONDING_PERIOD) params.unbondingPeriod = Number(env.UNBONDING_PERIOD);
  const outFile = env.ADDRESSES_FILE ?? defaultAddressesPath(chainId);
  // Compose runs this job at every `up`: a chain that still holds the deployment the addresses file
  // names keeps it (redeploying would orphan the database's rows). A new, empty chain gets a new one.
  if (env.SKIP_IF_DEPLOYED === "true") {
    const existing = await loadAddresses(outFile).catch(() => undefined);
    const code = existing
      ? await createPublicClient({ transport: http(rpcUrl) }).getCode({
          address: existing.contracts.OpenToken,
        })
      : undefined;
    if (existing && existing.chainId === chainId && code && code !== "0x") {
      console.error(`the contracts of ${outFile} are deployed on chain ${chainId}: kept`);
      return;
    }
  }

  const addresses = await deployPlatform({
    rpcUrl,
    chainId,
    deployerPrivateKey: key,
    profile,
    roles: {
      operator: need("OPERATOR_ADDRESS", dev.operator.address),
      settlement: need("SETTLEMENT_ADDRESS", dev.settlement.address),
      ...(env.TREASURY_ADDRESS || profile === "dev"
        ? { treasury: pick("TREASURY_ADDRESS", dev.treasury.address) }
        : {}),
      guardian: need("GUARDIAN_ADDRESS", dev.guardian.address),
      ...(env.TOKEN_HOLDER_ADDRESS
        ? { tokenHolder: pick("TOKEN_HOLDER_ADDRESS", dev.deployer.address) }
        : {}),
      validators,
    },
    params,
    fund: local ? dev.users.map((u) => ({ address: u.address, amount: USER_FUNDING })) : [],
    outFile,
    log: (line) => console.error(line),
  });
  console.error(`addresses written to ${outFile}`);
  const notice = devProfileNotice(addresses);
  if (notice) console.error(notice);
  console.log(JSON.stringify(addresses, null, 2));
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
