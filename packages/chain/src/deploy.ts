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
  zeroAddress,
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
  openGovernorAbi,
  openTimelockAbi,
  openTokenAbi,
  rewardDistributorAbi,
  stakingAbi,
  validatorDisputesAbi,
} from "./generated/abis.ts";
import { contractBytecode } from "./generated/bytecode.ts";
import {
  CANCELLER_ROLE,
  DISTRIBUTOR_ROLE,
  EXECUTOR_ROLE,
  GUARDIAN_ROLE,
  OPEN,
  PROPOSER_ROLE,
  PUBLISHER_ROLE,
  REGISTRAR_ROLE,
  SETTLER_ROLE,
  SLASH_PROPOSER_ROLE,
  SLASHER_ROLE,
  StakeRole,
  ZERO_SUBJECT,
} from "./roles.ts";
import { type AdminCall, executeAsTimelock } from "./timelock.ts";

/**
 * `production`: every admin role of every contract is held by the timelock, which only the governor (a vote
 * of OPEN holders) can schedule on; floors at or above PRODUCTION_FLOORS; no externally owned account holds a
 * role that moves funds or grants roles (`npm run roles`).
 *
 * `dev` (what `npm start`, the demo and the tests use): the same contracts and the same timelock holding every
 * admin role, but the timelock's delay is 0 and the deployer stays one of its proposers and executors — a dev
 * admin that changes any parameter in two transactions (`executeAsTimelock`), no vote. The operator key also
 * holds SLASHER_ROLE (slash at once, as the datanets service does today), delays and floors are 0, and the
 * governor's voting windows are short.
 */
export type DeployProfile = "dev" | "production";

/** Who holds which role after deployment. */
export interface PlatformRoles {
  /** dev profile: the EOA that may schedule and execute timelock operations with no delay. null in production. */
  devAdmin: Address | null;
  /** Staking SLASH_PROPOSER_ROLE (+ SLASHER_ROLE in dev), DatanetRegistry PUBLISHER_ROLE, ModelRegistry REGISTRAR_ROLE. */
  operator: Address;
  /** SETTLER_ROLE (InferenceEscrow): charges consumers' settled fees, within their daily caps. */
  settlement: Address;
  /** Receives slashed stake and forfeited proposal deposits (production default: the timelock). */
  treasury: Address;
  /** GUARDIAN_ROLE (distributor: pause, revoke pending roots; escrow: pause charges; staking: veto slashes)
   *  and the governor's proposal guardian (cancel live proposals). Meant to be a multisig. */
  guardian: Address;
  /** Admitted in RewardDistributor and staked (by the deployer, via Staking.stakeFor). */
  validators: Address[];
  /** Receives the OPEN the deployer still holds at the end of deployment. */
  tokenHolder: Address;
}

export interface GovernanceParams {
  /** Seconds between a proposal's queueing and its execution (the timelock's delay). */
  timelockDelay: number;
  /** The timelock's delay can never go below this (OpenTimelock.minDelayFloor). */
  timelockDelayFloor: number;
  /** Seconds from proposing to the vote's start (votes are counted at that moment). */
  votingDelay: number;
  votingPeriod: number;
  /** OpenGovernor.minVotingPeriod. */
  minVotingPeriod: number;
  /** Votes (OPEN wei) a proposer needs. */
  proposalThreshold: bigint;
  /** Quorum: percent of the OPEN supply (as votes at the snapshot) that must vote for or abstain. */
  quorumPercent: number;
  /** OpenGovernor.minQuorumNumerator. */
  minQuorumPercent: number;
  /** OPEN locked per proposal (proposal staking). */
  proposalDeposit: bigint;
}

/** Basis points, summing to 10,000 (RewardDistributor.FeeSplit). */
export interface FeeSplitBps {
  treasuryBps: number;
  validatorsBps: number;
  modelOwnerBps: number;
  contributorsBps: number;
}

export interface PlatformParams {
  /** Seconds an admin handover must wait (AccessControlDefaultAdminRules). */
  adminDelay: number;
  unbondingPeriod: number;
  reporterCutBps: number;
  withdrawalDelay: number;
  activationDelay: number;
  /** RewardDistributor.minActivationDelay: the guardian's revocation window can never be shorter. */
  minActivationDelay: number;
  /** Signatures for a root = max(ceil(active * numerator / denominator), minSignatures); >= 2/3 on chain. */
  quorumFraction: { numerator: number; denominator: number; minSignatures: number };
  feeSplit: FeeSplitBps;
  /** InferenceEscrow.defaultDailyCap: what the settler may charge per UTC day a consumer who set no cap. */
  defaultDailyCap: bigint;
  /** InferenceEscrow.maxDefaultDailyCap: the highest default governance can ever set. */
  maxDefaultDailyCap: bigint;
  slashDisputeWindow: number;
  /** ValidatorDisputes.slashBps: share of a disputed validator's stake (active + unbonding) a quorum's dispute
   *  proposes to slash (within Staking's maxSlashBps). */
  validatorDisputeSlashBps: number;
  /** Staking.minSlashDisputeWindow. */
  minSlashDisputeWindow: number;
  minStake: { contributor: bigint; validator: bigint; modelPublisher: bigint };
  /** Staked for each validator by the deployer. Default: the validator minimum. */
  validatorStake: bigint;
  governance: GovernanceParams;
}

const HOUR = 3600;
const DAY = 24 * HOUR;

export const DEFAULT_FEE_SPLIT: FeeSplitBps = {
  treasuryBps: 1_000,
  validatorsBps: 1_000,
  modelOwnerBps: 3_000,
  contributorsBps: 5_000,
};

const COMMON_PARAMS = {
  adminDelay: DAY,
  unbondingPeriod: 7 * DAY,
  reporterCutBps: 1_000,
  withdrawalDelay: DAY,
  quorumFraction: { numerator: 2, denominator: 3, minSignatures: 1 },
  feeSplit: DEFAULT_FEE_SPLIT,
  minStake: { contributor: 100n * OPEN, validator: 10_000n * OPEN, modelPublisher: 1_000n * OPEN },
};

/**
 * The lowest values the production profile accepts for user-protecting parameters (deployPlatform refuses
 * less), and the highest for the default daily cap. They are written into the contracts as floors (ceilings)
 * that governance cannot cross later.
 */
export const PRODUCTION_FLOORS = {
  timelockDelayFloor: 2 * DAY,
  minVotingPeriod: 3 * DAY,
  minQuorumPercent: 4,
  minActivationDelay: HOUR,
  minSlashDisputeWindow: DAY,
  /** A ceiling: a consumer who set no cap can never be charged more per day than this. */
  maxDefaultDailyCap: 10_000n * OPEN,
  /** Roots need at least two validators' signatures, whatever the active set. */
  minSignatures: 2,
} as const;

export const PRODUCTION_PARAMS: Omit<PlatformParams, "validatorStake"> = {
  ...COMMON_PARAMS,
  activationDelay: HOUR,
  minActivationDelay: PRODUCTION_FLOORS.minActivationDelay,
  quorumFraction: { numerator: 2, denominator: 3, minSignatures: PRODUCTION_FLOORS.minSignatures },
  defaultDailyCap: 1_000n * OPEN,
  maxDefaultDailyCap: PRODUCTION_FLOORS.maxDefaultDailyCap,
  slashDisputeWindow: 3 * DAY,
  validatorDisputeSlashBps: 1_000,
  minSlashDisputeWindow: PRODUCTION_FLOORS.minSlashDisputeWindow,
  governance: {
    timelockDelay: 2 * DAY,
    timelockDelayFloor: PRODUCTION_FLOORS.timelockDelayFloor,
    votingDelay: DAY,
    votingPeriod: 5 * DAY,
    minVotingPeriod: PRODUCTION_FLOORS.minVotingPeriod,
    proposalThreshold: 100_000n * OPEN,
    quorumPercent: 4,
    minQuorumPercent: PRODUCTION_FLOORS.minQuorumPercent,
    proposalDeposit: 10_000n * OPEN,
  },
};

export const DEV_PARAMS: Omit<PlatformParams, "validatorStake"> = {
  ...COMMON_PARAMS,
  activationDelay: 0,
  minActivationDelay: 0,
  defaultDailyCap: 1_000_000n * OPEN,
  maxDefaultDailyCap: 1_000_000n * OPEN,
  slashDisputeWindow: 0,
  validatorDisputeSlashBps: 1_000,
  minSlashDisputeWindow: 0,
  governance: {
    timelockDelay: 0,
    timelockDelayFloor: 0,
    votingDelay: 1,
    votingPeriod: 60,
    minVotingPeriod: 1,
    proposalThreshold: 0n,
    quorumPercent: 4,
    minQuorumPercent: 1,
    proposalDeposit: 100n * OPEN,
  },
};

/** @deprecated kept for callers of the old name: the dev profile's parameters. */
export const DEFAULT_PLATFORM_PARAMS = DEV_PARAMS;

export type PlatformContracts = Record<ContractName, Address>;

/** The JSON file written by deployPlatform and read by every service through `loadAddresses`. */
export interface PlatformAddresses {
  chainId: number;
  profile: DeployProfile;
  deployedAtBlock: string;
  contracts: PlatformContracts;
  roles: PlatformRoles;
  params: {
    /** Signatures a root needed at deployment (all validators staked). */
    quorum: number;
    quorumFraction: PlatformParams["quorumFraction"];
    activationDelay: number;
    withdrawalDelay: number;
    unbondingPeriod: number;
    timelockDelay: number;
  };
}

type ClientsInput =
  | { publicClient: ChainPublicClient; walletClient: ChainWalletClient }
  | { rpcUrl: string; chainId: number; deployerPrivateKey: Hex };

export interface PlatformParamsInput
  extends Partial<Omit<PlatformParams, "minStake" | "governance" | "quorumFraction">> {
  minStake?: Partial<PlatformParams["minStake"]>;
  governance?: Partial<GovernanceParams>;
  quorumFraction?: Partial<PlatformParams["quorumFraction"]>;
}

export type DeployPlatformOptions = ClientsInput & {
  /** Default "dev". */
  profile?: DeployProfile;
  roles: Partial<Omit<PlatformRoles, "validators" | "devAdmin">> & { validators: Address[] };
  params?: PlatformParamsInput;
  /** Use this ERC20 instead of deploying OpenToken (tests with hostile tokens). The deployer must hold it.
   *  Governance still needs ERC20Votes, so only the dev profile accepts it. */
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
 * What a dev-profile deployment must say when it starts (undefined in production): who the dev admin is and
 * what it can do, so nobody mistakes a local chain's shortcuts for the production guarantees.
 */
export function devProfileNotice(addresses: PlatformAddresses): string | undefined {
  if (addresses.profile === "production") return undefined;
  return (
    `DEV PROFILE: ${addresses.roles.devAdmin ?? "the deployer"} is a dev admin — a proposer and executor of ` +
    `the timelock with delay 0 — and can change any parameter or role at once, without a vote; the operator ` +
    `key can slash at once; activation, withdrawal and slash-dispute floors are 0. Production deployments ` +
    `(\`PROFILE=production npm run deploy -w @openledger/contracts\`) have none of this: see \`npm run roles\`.`
  );
}

/** Resolve a profile's parameters with overrides; throws when the production profile gets less than its floors. */
export function resolvePlatformParams(
  profile: DeployProfile,
  input: PlatformParamsInput | undefined,
  validatorCount: number,
): PlatformParams {
  const base = profile === "production" ? PRODUCTION_PARAMS : DEV_PARAMS;
  const minStake = { ...base.minStake, ...input?.minStake };
  const params: PlatformParams = {
    ...base,
    validatorStake: minStake.validator,
    ...input,
    minStake,
    governance: { ...base.governance, ...input?.governance },
    quorumFraction: { ...base.quorumFraction, ...input?.quorumFraction },
  } as PlatformParams;
  if (profile === "production") {
    const f = PRODUCTION_FLOORS;
    const g = params.governance;
    const low: string[] = [];
    if (g.timelockDelayFloor < f.timelockDelayFloor) low.push("governance.timelockDelayFloor");
    if (g.timelockDelay < g.timelockDelayFloor) low.push("governance.timelockDelay");
    if (g.minVotingPeriod < f.minVotingPeriod) low.push("governance.minVotingPeriod");
    if (g.minQuorumPercent < f.minQuorumPercent) low.push("governance.minQuorumPercent");
    if (params.minActivationDelay < f.minActivationDelay) low.push("minActivationDelay");
    if (params.minSlashDisputeWindow < f.minSlashDisputeWindow) low.push("minSlashDisputeWindow");
    if (params.maxDefaultDailyCap > f.maxDefaultDailyCap) low.push("maxDefaultDailyCap (a ceiling)");
    if (params.quorumFraction.minSignatures < f.minSignatures) low.push("quorumFraction.minSignatures");
    if (params.validatorStake < params.minStake.validator) low.push("validatorStake");
    if (low.length > 0) throw new Error(`production profile: below its floors: ${low.join(", ")}`);
    if (validatorCount < params.quorumFraction.minSignatures) {
      throw new Error(
        `production profile: ${validatorCount} validators cannot reach minSignatures ${params.quorumFraction.minSignatures}`,
      );
    }
  }
  return params;
}

/** Signatures a root needs with `active` validators (RewardDistributor.requiredSignatures). */
export function requiredSignatures(
  active: number,
  q: { numerator: number; denominator: number; minSignatures: number },
): number {
  if (active === 0) return 0;
  return Math.max(Math.ceil((active * q.numerator) / q.denominator), q.minSignatures);
}

/**
 * Deploy every contract with viem from the committed bytecode, wire the roles through the timelock, admit and
 * stake the validators, and (optionally) write the addresses file. Works on any RPC; transactions are sent
 * one by one and each receipt is awaited, so a failure says exactly which step failed.
 *
 * Every contract is born with the timelock as its admin. The deployer starts as the timelock's only proposer
 * and executor with a delay of 0, wires everything in one timelock batch, and — in production — the same
 * batch gives those roles to the governor, takes them from the deployer and raises the delay: the deployer
 * never holds a role on a platform contract, and every grant in the event log was made by the timelock.
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
  const profile = options.profile ?? "dev";
  const production = profile === "production";
  const log = options.log ?? (() => {});
  const deployer = getAddress(walletClient.account.address);
  const chainId = await publicClient.getChainId();
  const validators = options.roles.validators.map((v) => getAddress(v));
  if (new Set(validators).size !== validators.length) throw new Error("duplicate validator address");
  if (production) {
    for (const r of ["operator", "settlement", "guardian"] as const) {
      const v = options.roles[r];
      if (!v || getAddress(v) === deployer) {
        throw new Error(`production profile: roles.${r} must be given and differ from the deployer`);
      }
    }
    if (options.token) throw new Error("production profile: governance needs OpenToken (ERC20Votes)");
  }
  const params = resolvePlatformParams(profile, options.params, validators.length);
  const g = params.governance;

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
  const token = options.token
    ? getAddress(options.token)
    : await deploy("OpenToken", openTokenAbi, [deployer]);
  // Delay 0 while the deployer wires the platform through it; raised at the end in production.
  const timelock = await deploy("OpenTimelock", openTimelockAbi, [
    0n,
    [deployer],
    [deployer],
    zeroAddress,
    BigInt(g.timelockDelayFloor),
  ]);
  const roles: PlatformRoles = {
    devAdmin: production ? null : deployer,
    operator: getAddress(options.roles.operator ?? deployer),
    settlement: getAddress(options.roles.settlement ?? deployer),
    treasury: getAddress(options.roles.treasury ?? (production ? timelock : deployer)),
    guardian: getAddress(options.roles.guardian ?? deployer),
    validators,
    tokenHolder: getAddress(options.roles.tokenHolder ?? deployer),
  };
  const staking = await deploy("Staking", stakingAbi, [
    token,
    timelock,
    params.adminDelay,
    roles.treasury,
    params.unbondingPeriod,
    params.reporterCutBps,
    BigInt(params.minSlashDisputeWindow),
  ]);
  const datanets = await deploy("DatanetRegistry", datanetRegistryAbi, [timelock, params.adminDelay]);
  const models = await deploy("ModelRegistry", modelRegistryAbi, [datanets, timelock, params.adminDelay]);
  const escrow = await deploy("InferenceEscrow", inferenceEscrowAbi, [
    token,
    timelock,
    params.adminDelay,
    params.withdrawalDelay,
    params.defaultDailyCap,
    params.maxDefaultDailyCap,
  ]);
  const distributor = await deploy("RewardDistributor", rewardDistributorAbi, [
    token,
    escrow,
    staking,
    timelock,
    params.adminDelay,
    params.activationDelay,
    params.minActivationDelay,
    params.feeSplit,
  ]);
  // Files validator slash proposals only with a quorum of validators' signed disputes (holds SLASH_PROPOSER_ROLE).
  const disputes = await deploy("ValidatorDisputes", validatorDisputesAbi, [
    staking,
    distributor,
    BigInt(params.validatorDisputeSlashBps),
  ]);
  const governor = await deploy("OpenGovernor", openGovernorAbi, [
    token,
    timelock,
    staking,
    {
      votingDelay: g.votingDelay,
      votingPeriod: g.votingPeriod,
      proposalThreshold: g.proposalThreshold,
      quorumNumerator: BigInt(g.quorumPercent),
      proposalDeposit: g.proposalDeposit,
      guardian: roles.guardian,
      minVotingPeriod: g.minVotingPeriod,
      minQuorumNumerator: BigInt(g.minQuorumPercent),
    },
  ]);

  // Everything an admin does, as one timelock batch.
  const S = stakingAbi as Abi;
  const E = inferenceEscrowAbi as Abi;
  const R = rewardDistributorAbi as Abi;
  const T = openTimelockAbi as Abi;
  const grant = (address: Address, abi: Abi, role: Hex, holder: Address): AdminCall => ({
    address,
    abi,
    functionName: "grantRole",
    args: [role, holder],
  });
  const batch: AdminCall[] = [
    grant(staking, S, SLASH_PROPOSER_ROLE, roles.operator),
    grant(staking, S, SLASH_PROPOSER_ROLE, disputes),
    grant(staking, S, GUARDIAN_ROLE, roles.guardian),
    ...(production ? [] : [grant(staking, S, SLASHER_ROLE, roles.operator)]),
    ...(
      [
        [StakeRole.Contributor, params.minStake.contributor],
        [StakeRole.Validator, params.minStake.validator],
        [StakeRole.ModelPublisher, params.minStake.modelPublisher],
      ] as const
    ).map(([role, amount]) => ({
      address: staking,
      abi: S,
      functionName: "setMinStake",
      args: [role, amount],
    })),
    ...(params.slashDisputeWindow !== params.minSlashDisputeWindow
      ? [
          {
            address: staking,
            abi: S,
            functionName: "setSlashDisputeWindow",
            args: [BigInt(params.slashDisputeWindow)],
          },
        ]
      : []),
    grant(datanets, datanetRegistryAbi as Abi, PUBLISHER_ROLE, roles.operator),
    grant(models, modelRegistryAbi as Abi, REGISTRAR_ROLE, roles.operator),
    grant(escrow, E, SETTLER_ROLE, roles.settlement),
    grant(escrow, E, DISTRIBUTOR_ROLE, distributor),
    grant(escrow, E, GUARDIAN_ROLE, roles.guardian),
    grant(distributor, R, GUARDIAN_ROLE, roles.guardian),
    ...validators.map((v) => ({ address: distributor, abi: R, functionName: "addValidator", args: [v] })),
    {
      address: distributor,
      abi: R,
      functionName: "setQuorum",
      args: [
        params.quorumFraction.numerator,
        params.quorumFraction.denominator,
        params.quorumFraction.minSignatures,
      ],
    },
    grant(timelock, T, PROPOSER_ROLE, governor),
    grant(timelock, T, CANCELLER_ROLE, governor),
    grant(timelock, T, EXECUTOR_ROLE, governor),
  ];
  if (production) {
    for (const role of [PROPOSER_ROLE, CANCELLER_ROLE, EXECUTOR_ROLE]) {
      batch.push({ address: timelock, abi: T, functionName: "revokeRole", args: [role, deployer] });
    }
  }
  if (g.timelockDelay > 0) {
    batch.push({ address: timelock, abi: T, functionName: "updateDelay", args: [BigInt(g.timelockDelay)] });
  }
  await executeAsTimelock({
    publicClient,
    walletClient,
    timelock,
    calls: batch,
    onReceipt: (what, receipt) => {
      log(`timelock ${what}: gas ${receipt.gasUsed}`);
      options.onReceipt?.(`timelock ${what}`, receipt);
    },
  });

  if (validators.length > 0 && params.validatorStake > 0n) {
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
  for (const f of options.fund ?? []) {
    await call(`fund ${f.address}`, token, openTokenAbi, "transfer", [getAddress(f.address), f.amount]);
  }
  if (!options.token && roles.tokenHolder === deployer) {
    // ERC20Votes counts delegated balances only: the holder votes with its own tokens.
    await call("delegate votes", token, openTokenAbi, "delegate", [deployer]);
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

  const addresses: PlatformAddresses = {
    chainId,
    profile,
    deployedAtBlock: (startBlock + 1n).toString(),
    contracts: {
      OpenToken: token,
      OpenTimelock: timelock,
      Staking: staking,
      DatanetRegistry: datanets,
      ModelRegistry: models,
      InferenceEscrow: escrow,
      RewardDistributor: distributor,
      ValidatorDisputes: disputes,
      OpenGovernor: governor,
    },
    roles,
    params: {
      quorum: requiredSignatures(validators.length, params.quorumFraction),
      quorumFraction: params.quorumFraction,
      activationDelay: params.activationDelay,
      withdrawalDelay: params.withdrawalDelay,
      unbondingPeriod: params.unbondingPeriod,
      timelockDelay: g.timelockDelay,
    },
  };
  if (options.outFile) await writeAddresses(options.outFile, addresses);
  return addresses;
}
