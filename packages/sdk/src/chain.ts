import {
  builderApprovalTypedData,
  type ChainPublicClient,
  type ChainWalletClient,
  chainFromOptions,
  createChainPublicClient,
  datanetRegistryAbi,
  executeAsTimelock,
  inferenceEscrowAbi,
  openTokenAbi,
  type PlatformAddresses,
  rewardDistributorAbi,
  StakeRole,
  stakingAbi,
  subjectOf,
  ZERO_SUBJECT,
} from "@openledger/chain";
import {
  type Abi,
  type Address,
  BaseError,
  ContractFunctionRevertedError,
  createWalletClient,
  type Hash,
  type Hex,
  http,
  type LocalAccount,
  type TransactionReceipt,
} from "viem";
import { OpenLedgerError } from "./errors.ts";
import type { ClaimInfo } from "./settlement.ts";

export { StakeRole, subjectOf, ZERO_SUBJECT };
export type StakeRoleName = keyof typeof StakeRole;

export interface ChainStepsOptions {
  rpcUrl: string;
  addresses: PlatformAddresses;
  /** Signs transactions and messages; reads work without it. */
  account?: LocalAccount;
  pollingIntervalMs?: number;
}

/** A transaction the SDK sent and saw mined successfully. */
export interface Sent {
  hash: Hash;
  receipt: TransactionReceipt;
}

export interface StakePosition {
  active: bigint;
  unbonding: bigint;
  /** Unix seconds when the unbonding amount can be withdrawn (0: nothing unbonding). */
  unbondingEnd: bigint;
}

export interface ValidatorStatus {
  address: Address;
  /** In RewardDistributor's validator set (governance adds validators). */
  registered: boolean;
  /** Registered and holding the minimum Validator stake: counted in quorums. */
  active: boolean;
  stake: StakePosition;
  minStakeWei: bigint;
  activeValidators: Address[];
  requiredSignatures: bigint;
}

/**
 * The chain steps of every role, through viem: staking, escrow, claims, validator registration,
 * builder approvals and, on a local dev chain, the faucet. Each write is simulated first (a revert
 * becomes `CHAIN_REVERTED` with the contract's error name before any gas is spent), then sent and
 * waited for.
 */
export class ChainSteps {
  readonly addresses: PlatformAddresses;
  readonly publicClient: ChainPublicClient;
  readonly account: LocalAccount | undefined;
  private readonly rpcUrl: string;
  private readonly pollingIntervalMs: number | undefined;
  private wallet?: ChainWalletClient;

  constructor(opts: ChainStepsOptions) {
    this.addresses = opts.addresses;
    this.rpcUrl = opts.rpcUrl;
    this.account = opts.account;
    this.pollingIntervalMs = opts.pollingIntervalMs;
    this.publicClient = createChainPublicClient({
      rpcUrl: opts.rpcUrl,
      chainId: opts.addresses.chainId,
      ...(opts.pollingIntervalMs !== undefined ? { pollingIntervalMs: opts.pollingIntervalMs } : {}),
    });
  }

  get chainId(): number {
    return this.addresses.chainId;
  }
  private get c() {
    return this.addresses.contracts;
  }

  /** The signing account (CHAIN: a write needs a key). */
  requireAccount(): LocalAccount {
    if (!this.account)
      throw new OpenLedgerError(
        "KEY_REQUIRED",
        "this step signs: give a key (keystore file or OPENLEDGER_PRIVATE_KEY)",
      );
    return this.account;
  }

  walletFor(account: LocalAccount = this.requireAccount()): ChainWalletClient {
    if (account === this.account && this.wallet) return this.wallet;
    const w = createWalletClient({
      account,
      chain: chainFromOptions({ rpcUrl: this.rpcUrl, chainId: this.chainId }),
      transport: http(this.rpcUrl),
      pollingInterval: this.pollingIntervalMs ?? (this.chainId === 31337 ? 100 : 1000),
    }) as ChainWalletClient;
    if (account === this.account) this.wallet = w;
    return w;
  }

  /** Simulates, sends and waits for one contract call; reverts become CHAIN_REVERTED with the error name. */
  async write(
    call: { address: Address; abi: Abi; functionName: string; args?: readonly unknown[] },
    account: LocalAccount = this.requireAccount(),
  ): Promise<Sent> {
    try {
      const { request } = await this.publicClient.simulateContract({ ...call, account } as never);
      const hash = await this.walletFor(account).writeContract(request as never);
      const receipt = await this.publicClient.waitForTransactionReceipt({ hash });
      if (receipt.status !== "success")
        throw new OpenLedgerError("CHAIN_REVERTED", `${call.functionName} reverted in ${hash}`, {
          source: "chain",
        });
      return { hash, receipt };
    } catch (err) {
      throw chainError(err, call.functionName);
    }
  }

  // ---- balances
  openBalance(address: Address): Promise<bigint> {
    return this.publicClient.readContract({
      address: this.c.OpenToken,
      abi: openTokenAbi,
      functionName: "balanceOf",
      args: [address],
    });
  }
  ethBalance(address: Address): Promise<bigint> {
    return this.publicClient.getBalance({ address });
  }

  /** Approves `spender` for `amount` when the allowance is short (one approval per shortfall). */
  async ensureAllowance(spender: Address, amount: bigint): Promise<Sent | null> {
    const owner = this.requireAccount().address;
    const allowance = await this.publicClient.readContract({
      address: this.c.OpenToken,
      abi: openTokenAbi,
      functionName: "allowance",
      args: [owner, spender],
    });
    if (allowance >= amount) return null;
    return this.write({
      address: this.c.OpenToken,
      abi: openTokenAbi,
      functionName: "approve",
      args: [spender, amount],
    });
  }

  // ---- staking
  async stake(role: StakeRoleName, subject: Hex, amount: bigint): Promise<Sent> {
    if (amount <= 0n) throw new OpenLedgerError("VALIDATION_FAILED", "stake a positive amount");
    await this.ensureAllowance(this.c.Staking, amount);
    return this.write({
      address: this.c.Staking,
      abi: stakingAbi,
      functionName: "stake",
      args: [StakeRole[role], subject, amount],
    });
  }
  /** Stakes as a contributor on a datanet (its DatanetRegistry id). */
  stakeOnDatanet(chainDatanetId: bigint | string, amount: bigint): Promise<Sent> {
    return this.stake("Contributor", subjectOf(BigInt(chainDatanetId)), amount);
  }
  /** Starts the unbonding period for `amount` of active stake. */
  unbond(role: StakeRoleName, subject: Hex, amount: bigint): Promise<Sent> {
    return this.write({
      address: this.c.Staking,
      abi: stakingAbi,
      functionName: "unbond",
      args: [StakeRole[role], subject, amount],
    });
  }
  /** Withdraws stake whose unbonding period ended. */
  withdrawStake(role: StakeRoleName, subject: Hex): Promise<Sent> {
    return this.write({
      address: this.c.Staking,
      abi: stakingAbi,
      functionName: "withdraw",
      args: [StakeRole[role], subject],
    });
  }
  async position(address: Address, role: StakeRoleName, subject: Hex): Promise<StakePosition> {
    const p = await this.publicClient.readContract({
      address: this.c.Staking,
      abi: stakingAbi,
      functionName: "positionOf",
      args: [address, StakeRole[role], subject],
    });
    return { active: BigInt(p.active), unbonding: BigInt(p.unbonding), unbondingEnd: BigInt(p.unbondingEnd) };
  }
  minStake(role: StakeRoleName): Promise<bigint> {
    return this.publicClient.readContract({
      address: this.c.Staking,
      abi: stakingAbi,
      functionName: "minStake",
      args: [StakeRole[role]],
    });
  }

  // ---- escrow (consumers pay inferences from it)
  async depositEscrow(amount: bigint): Promise<Sent> {
    if (amount <= 0n) throw new OpenLedgerError("VALIDATION_FAILED", "deposit a positive amount");
    await this.ensureAllowance(this.c.InferenceEscrow, amount);
    return this.write({
      address: this.c.InferenceEscrow,
      abi: inferenceEscrowAbi,
      functionName: "deposit",
      args: [amount],
    });
  }
  /** Starts the withdrawal delay for `amount` (replaces an earlier request). */
  requestEscrowWithdrawal(amount: bigint): Promise<Sent> {
    return this.write({
      address: this.c.InferenceEscrow,
      abi: inferenceEscrowAbi,
      functionName: "requestWithdrawal",
      args: [amount],
    });
  }
  /** After the delay: takes the requested amount (less anything charged meanwhile). */
  withdrawEscrow(): Promise<Sent> {
    return this.write({
      address: this.c.InferenceEscrow,
      abi: inferenceEscrowAbi,
      functionName: "withdraw",
      args: [],
    });
  }
  async escrow(
    address: Address,
  ): Promise<{ balance: bigint; spendable: bigint; pendingWithdrawal: bigint; withdrawableAt: bigint }> {
    const [a, spendable] = await Promise.all([
      this.publicClient.readContract({
        address: this.c.InferenceEscrow,
        abi: inferenceEscrowAbi,
        functionName: "accountOf",
        args: [address],
      }),
      this.publicClient.readContract({
        address: this.c.InferenceEscrow,
        abi: inferenceEscrowAbi,
        functionName: "spendableOf",
        args: [address],
      }),
    ]);
    return {
      balance: BigInt(a.balance),
      spendable,
      pendingWithdrawal: BigInt(a.pendingWithdrawal),
      withdrawableAt: BigInt(a.withdrawableAt),
    };
  }

  // ---- claims
  /**
   * Claims what the settlement service's proof says (its `claim` answer for this account): the
   * distributor pays cumulative minus already claimed. Answers the OPEN received (0 when nothing is claimable).
   */
  async claim(info: ClaimInfo): Promise<{ amountWei: bigint; sent: Sent | null }> {
    const account = this.requireAccount();
    if (info.address.toLowerCase() !== account.address.toLowerCase())
      throw new OpenLedgerError(
        "WRONG_ACCOUNT",
        `the proof is for ${info.address}, the key is ${account.address}`,
      );
    if (info.epoch === null || BigInt(info.claimable) === 0n) return { amountWei: 0n, sent: null };
    if (!info.active)
      throw new OpenLedgerError("EPOCH_NOT_ACTIVE", `epoch ${info.epoch} is not active for claims yet`);
    const before = await this.openBalance(account.address);
    const sent = await this.write({
      address: this.c.RewardDistributor,
      abi: rewardDistributorAbi,
      functionName: "claim",
      args: [BigInt(info.epoch), account.address, BigInt(info.cumulativeAmount), info.proof as Hex[]],
    });
    const after = await this.publicClient.readContract({
      address: this.c.OpenToken,
      abi: openTokenAbi,
      functionName: "balanceOf",
      args: [account.address],
      blockNumber: sent.receipt.blockNumber,
    });
    return { amountWei: after - before, sent };
  }

  // ---- validators
  async validatorStatus(address: Address): Promise<ValidatorStatus> {
    const rd = { address: this.c.RewardDistributor, abi: rewardDistributorAbi } as const;
    const [registered, active, activeValidators, requiredSignatures, stake, minStakeWei] = await Promise.all([
      this.publicClient.readContract({ ...rd, functionName: "isValidator", args: [address] }),
      this.publicClient.readContract({ ...rd, functionName: "isActiveValidator", args: [address] }),
      this.publicClient.readContract({ ...rd, functionName: "activeValidators" }),
      this.publicClient.readContract({ ...rd, functionName: "requiredSignatures" }),
      this.position(address, "Validator", ZERO_SUBJECT),
      this.minStake("Validator"),
    ]);
    return {
      address,
      registered,
      active,
      stake,
      minStakeWei,
      activeValidators: [...activeValidators],
      requiredSignatures,
    };
  }

  /**
   * Registers the account as a validator: stakes up to the Validator minimum (or `stakeWei`) on the
   * validator subject. Joining the validator set is governance's decision
   * (RewardDistributor.addValidator through the timelock): `addValidatorCall` is the call to propose,
   * and on a dev chain `addValidatorAsDevAdmin` runs it with the dev admin's key.
   */
  async registerValidator(
    opts: { stakeWei?: bigint } = {},
  ): Promise<{ staked: Sent | null; status: ValidatorStatus }> {
    const me = this.requireAccount().address;
    const before = await this.validatorStatus(me);
    const target = opts.stakeWei ?? before.minStakeWei;
    const missing = target - before.stake.active;
    const staked = missing > 0n ? await this.stake("Validator", ZERO_SUBJECT, missing) : null;
    return { staked, status: await this.validatorStatus(me) };
  }

  addValidatorCall(address: Address) {
    return {
      address: this.c.RewardDistributor,
      abi: rewardDistributorAbi as Abi,
      functionName: "addValidator",
      args: [address] as const,
    };
  }

  /** Dev profile only (timelock delay 0): the dev admin adds `address` to the validator set at once. */
  async addValidatorAsDevAdmin(devAdmin: LocalAccount, address: Address): Promise<TransactionReceipt> {
    if (this.addresses.profile !== "dev")
      throw new OpenLedgerError(
        "NOT_DEV_CHAIN",
        "adding a validator needs a governance proposal on this chain",
      );
    try {
      return await executeAsTimelock({
        publicClient: this.publicClient,
        walletClient: this.walletFor(devAdmin),
        timelock: this.c.OpenTimelock,
        calls: [this.addValidatorCall(address)],
      });
    } catch (err) {
      throw chainError(err, "addValidator");
    }
  }

  // ---- datanet owners
  /** The owner's EIP-712 BuilderApproval letting `builder` register models of the datanet (no gas; the gateway relays it). */
  async signBuilderApproval(
    chainDatanetId: bigint | string,
    builder: Address,
    ttlSeconds = 3600,
  ): Promise<{ deadline: string; signature: Hex }> {
    const owner = this.requireAccount();
    const deadline = BigInt(Math.floor(Date.now() / 1000) + ttlSeconds);
    const nonce = await this.publicClient.readContract({
      address: this.c.DatanetRegistry,
      abi: datanetRegistryAbi,
      functionName: "nonces",
      args: [owner.address],
    });
    const signature = await owner.signTypedData(
      builderApprovalTypedData(this.chainId, this.c.DatanetRegistry, {
        datanetId: BigInt(chainDatanetId),
        builder,
        approved: true,
        nonce,
        deadline,
      }),
    );
    return { deadline: deadline.toString(), signature };
  }

  // ---- local dev chain
  /**
   * Dev chain only: gives `to` native gas (hardhat_setBalance) and OPEN from `funder` (a dev account
   * holding OPEN, e.g. the deployer), so a fresh key can act.
   */
  async faucet(
    funder: LocalAccount,
    to: Address,
    opts: { openWei: bigint; ethWei?: bigint },
  ): Promise<Sent | null> {
    if (this.addresses.profile !== "dev")
      throw new OpenLedgerError("NOT_DEV_CHAIN", "the faucet only exists on a local dev chain");
    const eth = opts.ethWei ?? 10n ** 20n;
    if ((await this.ethBalance(to)) < eth) {
      await this.publicClient.request({
        method: "hardhat_setBalance" as never,
        params: [to, `0x${eth.toString(16)}`] as never,
      });
    }
    if (opts.openWei <= 0n) return null;
    return this.write(
      { address: this.c.OpenToken, abi: openTokenAbi, functionName: "transfer", args: [to, opts.openWei] },
      funder,
    );
  }
}

/** A viem error as OpenLedgerError: a revert keeps the contract's error name and arguments. */
export function chainError(err: unknown, what: string): unknown {
  if (err instanceof OpenLedgerError) return err;
  if (err instanceof BaseError) {
    const revert = err.walk((e) => e instanceof ContractFunctionRevertedError);
    if (revert instanceof ContractFunctionRevertedError) {
      const name = revert.data?.errorName ?? revert.reason ?? "unknown";
      const args = revert.data?.args?.map((a) => (typeof a === "bigint" ? a.toString() : a));
      return new OpenLedgerError(
        "CHAIN_REVERTED",
        `${what} reverted: ${name}${args?.length ? `(${args.join(", ")})` : ""}`,
        {
          source: "chain",
          details: { errorName: name, args },
        },
      );
    }
    if (err.walk((e) => (e as { name?: string }).name === "HttpRequestError"))
      return new OpenLedgerError("UNREACHABLE", `the chain does not answer (${err.shortMessage})`, {
        source: "chain",
      });
    return new OpenLedgerError("CHAIN_ERROR", `${what}: ${err.shortMessage}`, { source: "chain" });
  }
  return err;
}
