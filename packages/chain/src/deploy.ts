import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  type Abi,
  type Address,
  getAddress,
  type Hash,
  type Hex,
  isAddress,
  type TransactionReceipt,
} from "viem";
import {
  type ChainPublicClient,
  type ChainWalletClient,
  createChainPublicClient,
  createChainWalletClient,
} from "./clients.ts";
import { CONTRACT_NAMES, type ContractName } from "./contract-names.ts";
import {
  datanetRegistryAbi,
  inferenceEscrowAbi,
  modelRegistryAbi,
  openTokenAbi,
  rewardDistributorAbi,
  stakingAbi,
} from "./generated/abis.ts";
import { contractBytecode } from "./generated/bytecode.ts";
import {
  DISTRIBUTOR_ROLE,
  GUARDIAN_ROLE,
  OPEN,
  PUBLISHER_ROLE,
  REGISTRAR_ROLE,
  SETTLER_ROLE,
  SLASHER_ROLE,
  StakeRole,
  ZERO_SUBJECT,
} from "./roles.ts";

/** Who holds which role after deployment. */
export interface PlatformRoles {
  /** DEFAULT_ADMIN_ROLE of every contract (AccessControlDefaultAdminRules: transfer takes `adminDelay`). */
  admin: Address;
  /** SLASHER_ROLE (Staking), PUBLISHER_ROLE (DatanetRegistry), REGISTRAR_ROLE (ModelRegistry). */
  operator: Address;
  /** SETTLER_ROLE (InferenceEscrow): charges consumers' settled fees. */
  settlement: Address;
  /** Receives slashed stake. */
  treasury: Address;
  /** GUARDIAN_ROLE (RewardDistributor): revokes pending roots, pauses. */
  guardian: Address;
  /** Registered in RewardDistributor and staked (by the deployer, via Staking.stakeFor). */
  validators: Address[];
  /** Receives the OPEN the deployer still holds at the end of deployment. */
  tokenHolder: Address;
}

export interface PlatformParams {
  /** Seconds an admin transfer must wait (AccessControlDefaultAdminRules). */
  adminDelay: number;
  unbondingPeriod: number;
  reporterCutBps: number;
  withdrawalDelay: number;
  activationDelay: number;
  /** k of the k-of-n validator quorum. Default: ceil(2n/3). */
  quorum: number;
  minStake: { contributor: bigint; validator: bigint; modelPublisher: bigint };
  /** Staked for each validator by the deployer. Default: the validator minimum. */
  validatorStake: bigint;
}

export const DEFAULT_PLATFORM_PARAMS: Omit<PlatformParams, "quorum" | "validatorStake"> = {
  adminDelay: 24 * 3600,
  unbondingPeriod: 7 * 24 * 3600,
  reporterCutBps: 1_000,
  withdrawalDelay: 24 * 3600,
  activationDelay: 3600,
  minStake: { contributor: 100n * OPEN, validator: 10_000n * OPEN, modelPublisher: 1_000n * OPEN },
};

export type PlatformContracts = Record<ContractName, Address>;

/** The JSON file written by deployPlatform and read by every service through `loadAddresses`. */
export interface PlatformAddresses {
  chainId: number;
  deployedAtBlock: string;
  contracts: PlatformContracts;
  roles: PlatformRoles;
  params: { quorum: number; activationDelay: number; withdrawalDelay: number; unbondingPeriod: number };
}

type ClientsInput =
  | { publicClient: ChainPublicClient; walletClient: ChainWalletClient }
  | { rpcUrl: string; chainId: number; deployerPrivateKey: Hex };

export type DeployPlatformOptions = ClientsInput & {
  roles: Partial<Omit<PlatformRoles, "validators">> & { validators: Address[] };
  params?: Partial<PlatformParams>;
  /** Use this ERC20 instead of deploying OpenToken (tests with hostile tokens). The deployer must hold it. */
  token?: Address;
  /** OPEN sent by the deployer after wiring, before the remainder goes to `tokenHolder`. */
  fund?: { address: Address; amount: bigint }[];
  /** Write the addresses JSON here (e.g. `defaultAddressesPath(chainId)`). */
  outFile?: string;
  /** Progress lines (default: silent). */
  log?: (line: string) => void;
  /** Called with every receipt (step name, e.g. "deploy Staking"), e.g. to record deployment gas. */
  onReceipt?: (step: string, receipt: TransactionReceipt) => void;
};

/** Repository root (three levels above this file). */
export const REPO_ROOT = fileURLToPath(new URL("../../../", import.meta.url));

/** Default location of the addresses file for a chain: `<repo>/.data/chain/addresses.<chainId>.json`. */
export function defaultAddressesPath(chainId: number, root = REPO_ROOT): string {
  return join(root, ".data", "chain", `addresses.${chainId}.json`);
}

export async function writeAddresses(path: string, addresses: PlatformAddresses): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, `${JSON.stringify(addresses, null, 2)}\n`);
  await rename(tmp, path); // atomic: readers never see a half-written file
}

/** Read and validate an addresses file written by deployPlatform. */
export async function loadAddresses(path: string): Promise<PlatformAddresses> {
  const raw = JSON.parse(await readFile(path, "utf8")) as PlatformAddresses;
  if (typeof raw.chainId !== "number" || !raw.contracts) throw new Error(`${path}: not an addresses file`);
  for (const name of CONTRACT_NAMES) {
    const a = raw.contracts[name];
    if (!a || !isAddress(a)) throw new Error(`${path}: missing or invalid address for ${name}`);
  }
  return raw;
}

/**
 * Deploy every contract with viem from the committed bytecode, wire the roles, register and stake the
 * validators, and (optionally) write the addresses file. Works on any RPC; transactions are sent one by one
 * and each receipt is awaited, so a failure says exactly which step failed.
 */
export async function deployPlatform(options: DeployPlatformOptions): Promise<PlatformAddresses> {
  const { publicClient, walletClient } =
    "publicClient" in options
      ? options
      : {
          publicClient: createChainPublicClient({ rpcUrl: options.rpcUrl, chainId: options.chainId }),
          walletClient: createChainWalletClient({
            rpcUrl: options.rpcUrl,
            chainId: options.chainId,
            privateKey: options.deployerPrivateKey,
          }),
        };
  const log = options.log ?? (() => {});
  const deployer = walletClient.account.address;
  const chainId = await publicClient.getChainId();
  const validators = options.roles.validators.map((v) => getAddress(v));
  if (new Set(validators).size !== validators.length) throw new Error("duplicate validator address");
  const roles: PlatformRoles = {
    admin: getAddress(options.roles.admin ?? deployer),
    operator: getAddress(options.roles.operator ?? deployer),
    settlement: getAddress(options.roles.settlement ?? deployer),
    treasury: getAddress(options.roles.treasury ?? deployer),
    guardian: getAddress(options.roles.guardian ?? deployer),
    validators,
    tokenHolder: getAddress(options.roles.tokenHolder ?? deployer),
  };
  const minStake = { ...DEFAULT_PLATFORM_PARAMS.minStake, ...options.params?.minStake };
  const params: PlatformParams = {
    ...DEFAULT_PLATFORM_PARAMS,
    quorum: Math.max(1, Math.ceil((2 * validators.length) / 3)),
    validatorStake: minStake.validator,
    ...options.params,
    minStake,
  };
  if (validators.length > 0 && (params.quorum < 1 || params.quorum > validators.length)) {
    throw new Error(`quorum ${params.quorum} impossible with ${validators.length} validators`);
  }

  const wait = async (what: string, hash: Hash) => {
    const receipt = await publicClient.waitForTransactionReceipt({ hash });
    if (receipt.status !== "success") throw new Error(`deployPlatform: ${what} reverted (${hash})`);
    log(`${what}: gas ${receipt.gasUsed}`);
    options.onReceipt?.(what, receipt);
    return receipt;
  };
  const deploy = async (name: ContractName, abi: Abi, args: readonly unknown[]): Promise<Address> => {
    const hash = await walletClient.deployContract({
      abi,
      bytecode: contractBytecode[name],
      args,
      account: walletClient.account,
      chain: walletClient.chain,
    });
    const receipt = await wait(`deploy ${name}`, hash);
    if (!receipt.contractAddress) throw new Error(`deploy ${name}: no contract address`);
    return getAddress(receipt.contractAddress);
  };
  const call = async (
    what: string,
    address: Address,
    abi: Abi,
    functionName: string,
    args: readonly unknown[],
  ) => {
    const hash = await walletClient.writeContract({
      address,
      abi,
      functionName,
      args,
      account: walletClient.account,
      chain: walletClient.chain,
    });
    return wait(what, hash);
  };

  const startBlock = await publicClient.getBlockNumber();
  // Admin rights start with the deployer (it must grant roles); handed to `roles.admin` at the end.
  const token = options.token
    ? getAddress(options.token)
    : await deploy("OpenToken", openTokenAbi, [deployer]);
  const staking = await deploy("Staking", stakingAbi, [
    token,
    deployer,
    params.adminDelay,
    roles.treasury,
    params.unbondingPeriod,
    params.reporterCutBps,
  ]);
  const datanets = await deploy("DatanetRegistry", datanetRegistryAbi, [deployer, params.adminDelay]);
  const models = await deploy("ModelRegistry", modelRegistryAbi, [datanets, deployer, params.adminDelay]);
  const escrow = await deploy("InferenceEscrow", inferenceEscrowAbi, [
    token,
    deployer,
    params.adminDelay,
    params.withdrawalDelay,
  ]);
  const distributor = await deploy("RewardDistributor", rewardDistributorAbi, [
    token,
    escrow,
    staking,
    deployer,
    params.adminDelay,
    params.activationDelay,
  ]);

  await call("Staking SLASHER_ROLE", staking, stakingAbi, "grantRole", [SLASHER_ROLE, roles.operator]);
  await call("Staking minStake contributor", staking, stakingAbi, "setMinStake", [
    StakeRole.Contributor,
    minStake.contributor,
  ]);
  await call("Staking minStake validator", staking, stakingAbi, "setMinStake", [
    StakeRole.Validator,
    minStake.validator,
  ]);
  await call("Staking minStake modelPublisher", staking, stakingAbi, "setMinStake", [
    StakeRole.ModelPublisher,
    minStake.modelPublisher,
  ]);
  await call("DatanetRegistry PUBLISHER_ROLE", datanets, datanetRegistryAbi, "grantRole", [
    PUBLISHER_ROLE,
    roles.operator,
  ]);
  await call("ModelRegistry REGISTRAR_ROLE", models, modelRegistryAbi, "grantRole", [
    REGISTRAR_ROLE,
    roles.operator,
  ]);
  await call("InferenceEscrow SETTLER_ROLE", escrow, inferenceEscrowAbi, "grantRole", [
    SETTLER_ROLE,
    roles.settlement,
  ]);
  await call("InferenceEscrow DISTRIBUTOR_ROLE", escrow, inferenceEscrowAbi, "grantRole", [
    DISTRIBUTOR_ROLE,
    distributor,
  ]);
  await call("RewardDistributor GUARDIAN_ROLE", distributor, rewardDistributorAbi, "grantRole", [
    GUARDIAN_ROLE,
    roles.guardian,
  ]);
  for (const v of validators) {
    await call(`add validator ${v}`, distributor, rewardDistributorAbi, "addValidator", [v]);
  }
  if (validators.length > 0) {
    await call("quorum", distributor, rewardDistributorAbi, "setThreshold", [BigInt(params.quorum)]);
    if (params.validatorStake > 0n) {
      await call("approve validator stakes", token, openTokenAbi, "approve", [
        staking,
        params.validatorStake * BigInt(validators.length),
      ]);
      for (const v of validators) {
        await call(`stake for validator ${v}`, staking, stakingAbi, "stakeFor", [
          v,
          StakeRole.Validator,
          ZERO_SUBJECT,
          params.validatorStake,
        ]);
      }
    }
  }
  for (const f of options.fund ?? []) {
    await call(`fund ${f.address}`, token, openTokenAbi, "transfer", [getAddress(f.address), f.amount]);
  }
  if (roles.tokenHolder !== deployer) {
    const rest = await publicClient.readContract({
      address: token,
      abi: openTokenAbi,
      functionName: "balanceOf",
      args: [deployer],
    });
    if (rest > 0n)
      await call("transfer to token holder", token, openTokenAbi, "transfer", [roles.tokenHolder, rest]);
  }
  if (roles.admin !== deployer) {
    // Two-step, delayed handover (AccessControlDefaultAdminRules): the new admin accepts after adminDelay.
    for (const [name, address] of [
      ["Staking", staking],
      ["DatanetRegistry", datanets],
      ["ModelRegistry", models],
      ["InferenceEscrow", escrow],
      ["RewardDistributor", distributor],
    ] as const) {
      await call(`${name} begin admin transfer`, address, stakingAbi, "beginDefaultAdminTransfer", [
        roles.admin,
      ]);
    }
  }

  const addresses: PlatformAddresses = {
    chainId,
    deployedAtBlock: (startBlock + 1n).toString(),
    contracts: {
      OpenToken: token,
      Staking: staking,
      DatanetRegistry: datanets,
      ModelRegistry: models,
      InferenceEscrow: escrow,
      RewardDistributor: distributor,
    },
    roles,
    params: {
      quorum: validators.length > 0 ? params.quorum : 0,
      activationDelay: params.activationDelay,
      withdrawalDelay: params.withdrawalDelay,
      unbondingPeriod: params.unbondingPeriod,
    },
  };
  if (options.outFile) await writeAddresses(options.outFile, addresses);
  return addresses;
}
