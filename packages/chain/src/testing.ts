import { type ChildProcess, spawn } from "node:child_process";
import { createRequire } from "node:module";
import { join } from "node:path";
import { freePort } from "@openledger/queue/testing";
import { type Abi, type Address, type Hex, keccak256, type TransactionReceipt, toBytes } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { createChainPublicClient, createChainWalletClient, rpcRequest } from "./clients.ts";
import { CONTRACTS_DIR } from "./codegen.ts";
import {
  type DeployProfile,
  defaultAddressesPath,
  deployPlatform,
  type PlatformAddresses,
  type PlatformParamsInput,
} from "./deploy.ts";
import { HARDHAT_DEV_ACCOUNTS, type LocalAccounts, localAccounts } from "./dev-accounts.ts";
import { OPEN } from "./roles.ts";
import { type AdminCall, executeAsTimelock } from "./timelock.ts";
import {
  attributionCommitment,
  attributionCommitmentSalt,
  inferenceIdToBytes32,
  signApiKeyRequest,
  signAttributionCommitment,
  signAttributionResult,
} from "./typed-data.ts";

export {
  type DevAccount,
  HARDHAT_DEV_ACCOUNTS,
  HARDHAT_MNEMONIC,
  type LocalAccounts,
  localAccounts,
} from "./dev-accounts.ts";

export const USER_FUNDING = 1_000_000n * OPEN;

/** The body of the gateway's POST /v1/api-keys for a local dev account, signed with its well-known key. */
export async function devApiKeyRequest(address: string, chainId: number, name = "test") {
  const dev = HARDHAT_DEV_ACCOUNTS.find((a) => a.address.toLowerCase() === address.toLowerCase());
  if (!dev) throw new Error(`${address} is not a Hardhat dev account`);
  return signApiKeyRequest(privateKeyToAccount(dev.privateKey), chainId, name);
}

export interface StartLocalChainOptions {
  /** Port for the node; a free one is picked when omitted. */
  port?: number;
  /** Deploy the platform after the node is up (default true). */
  deploy?: boolean;
  /**
   * "dev" (default): the dev profile (DEV_PARAMS: delays 0, the deployer is the dev admin). "production":
   * the production profile (PRODUCTION_PARAMS, every admin role with the timelock behind governance, treasury =
   * the timelock, the OPEN held by account #14).
   */
  profile?: DeployProfile;
  /** Overrides of the profile's deployment parameters. */
  params?: PlatformParamsInput;
  /** Write the addresses file: true = defaultAddressesPath(chainId), a string = that path. Default false. */
  writeAddresses?: boolean | string;
  /** Milliseconds to wait for the node to answer (default 60 s). */
  startTimeoutMs?: number;
  /** Progress lines (default: silent). */
  log?: (line: string) => void;
}

export interface LocalChain {
  rpcUrl: string;
  chainId: number;
  port: number;
  /** Undefined only when started with deploy: false. */
  addresses: PlatformAddresses | undefined;
  accounts: LocalAccounts;
  /** Advance the chain clock and mine a block (activation, unbonding and withdrawal delays). */
  increaseTime(seconds: number): Promise<void>;
  /** Raw JSON-RPC call against the node. */
  rpc<T = unknown>(method: string, params?: unknown[]): Promise<T>;
  /**
   * Run admin calls as the timelock (which holds every admin role) with the dev admin's key: the dev profile's
   * shortcut (timelock delay 0). In the production profile admin calls need a governance proposal.
   */
  asAdmin(calls: readonly AdminCall[]): Promise<TransactionReceipt>;
  /** The node's process id (fault drills freeze it with SIGSTOP). */
  pid: number | undefined;
  /** Settles when the node's process ends, however (stop(), a crash, a kill). */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stop(): Promise<void>;
}

const running = new Set<ChildProcess>();
let exitHookInstalled = false;
function installExitHook() {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Never leave a node behind when the test process ends without calling stop().
  process.once("exit", () => {
    for (const child of running) child.kill("SIGKILL");
  });
}

/**
 * Spawn a real `hardhat node` (from contracts/, no compile needed: the bytecode is committed in
 * packages/chain), wait until it answers, deploy and wire the platform, and return everything a service or a
 * test needs to talk to it.
 */
export async function startLocalChain(options: StartLocalChainOptions = {}): Promise<LocalChain> {
  const log = options.log ?? (() => {});
  const port = options.port ?? (await freePort());
  const rpcUrl = `http://127.0.0.1:${port}`;
  const requireFromContracts = createRequire(join(CONTRACTS_DIR, "package.json"));
  const cli = requireFromContracts.resolve("hardhat/internal/cli/cli.js");
  const child = spawn(process.execPath, [cli, "node", "--hostname", "127.0.0.1", "--port", String(port)], {
    cwd: CONTRACTS_DIR,
    env: {
      ...process.env,
      HARDHAT_CONFIG: join(CONTRACTS_DIR, "hardhat.config.js"),
      HARDHAT_NETWORK: "hardhat",
      HARDHAT_DISABLE_TELEMETRY_PROMPT: "true",
    },
    // stdout carries one line per RPC call: discard it so the pipe never fills and blocks the node.
    stdio: ["ignore", "ignore", "pipe"],
  });
  running.add(child);
  installExitHook();
  let stderr = "";
  child.stderr?.on("data", (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  let exited: number | null | undefined;
  const exitPromise = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once("exit", (code, signal) => {
      exited = code;
      running.delete(child);
      resolve({ code, signal });
    });
  });

  const stop = async () => {
    if (exited !== undefined) return;
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
    await exitPromise;
    clearTimeout(timer);
  };

  const deadline = Date.now() + (options.startTimeoutMs ?? 60_000);
  let chainId: number | undefined;
  while (chainId === undefined) {
    if (exited !== undefined) throw new Error(`hardhat node exited (${exited}) before answering: ${stderr}`);
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`hardhat node on ${rpcUrl} did not answer in time: ${stderr}`);
    }
    try {
      chainId = Number(await rpcRequest<string>(rpcUrl, "eth_chainId"));
    } catch {
      await new Promise((r) => setTimeout(r, 150));
    }
  }
  log(`hardhat node up at ${rpcUrl} (chain ${chainId})`);

  const accounts = localAccounts();
  let addresses: PlatformAddresses | undefined;
  try {
    if (options.deploy !== false) {
      const outFile =
        options.writeAddresses === true
          ? defaultAddressesPath(chainId)
          : typeof options.writeAddresses === "string"
            ? options.writeAddresses
            : undefined;
      const production = options.profile === "production";
      addresses = await deployPlatform({
        rpcUrl,
        chainId,
        deployerPrivateKey: accounts.deployer.privateKey,
        profile: options.profile ?? "dev",
        roles: {
          operator: accounts.operator.address,
          settlement: accounts.settlement.address,
          ...(production
            ? { tokenHolder: accounts.tokenHolder.address }
            : { treasury: accounts.treasury.address }),
          guardian: accounts.guardian.address,
          validators: accounts.validators.map((v) => v.address),
        },
        ...(options.params ? { params: options.params } : {}),
        fund: accounts.users.map((u) => ({ address: u.address, amount: USER_FUNDING })),
        ...(outFile ? { outFile } : {}),
        log,
      });
    }
  } catch (err) {
    await stop();
    throw err;
  }

  return {
    rpcUrl,
    chainId,
    port,
    addresses,
    accounts,
    pid: child.pid,
    exited: exitPromise,
    rpc: <T>(method: string, params: unknown[] = []) => rpcRequest<T>(rpcUrl, method, params),
    async asAdmin(calls: readonly AdminCall[]) {
      if (!addresses) throw new Error("asAdmin: the platform is not deployed on this chain");
      const opts = { rpcUrl, chainId };
      return executeAsTimelock({
        publicClient: createChainPublicClient(opts),
        walletClient: createChainWalletClient({ ...opts, privateKey: accounts.deployer.privateKey }),
        timelock: addresses.contracts.OpenTimelock,
        calls,
      });
    },
    async increaseTime(seconds: number) {
      await rpcRequest(rpcUrl, "evm_increaseTime", [seconds]);
      await rpcRequest(rpcUrl, "evm_mine");
    },
    stop,
  };
}

// ------------------------------------------------------------------ validators' rows, as a validator writes them

/** What the helpers below need of a database client (Prisma's raw query; keeps this package free of db). */
/**
 * Sends one call to the local chain as a funded dev account (simulated first, so a revert throws with
 * its reason), waits for it to be mined and returns the call's result (e.g. a new datanet's id).
 */
export async function sendAs<T = unknown>(
  chain: Pick<LocalChain, "rpcUrl" | "chainId">,
  privateKey: string,
  call: { address: Address; abi: Abi; functionName: string; args: readonly unknown[] },
): Promise<T> {
  const opts = { rpcUrl: chain.rpcUrl, chainId: chain.chainId };
  const publicClient = createChainPublicClient(opts);
  const walletClient = createChainWalletClient({ ...opts, privateKey: privateKey as Hex });
  const { request, result } = await publicClient.simulateContract({
    account: walletClient.account,
    address: call.address,
    abi: call.abi,
    functionName: call.functionName,
    args: call.args,
  } as never);
  const hash = await walletClient.writeContract(request as never);
  await publicClient.waitForTransactionReceipt({ hash });
  return result as T;
}

export interface RawQueryClient {
  $queryRawUnsafe<T = unknown>(query: string, ...values: unknown[]): Promise<T>;
}

export interface ValidatorResultInput {
  /** The validator's private key. */
  privateKey: Hex;
  chainId: number;
  /** The RewardDistributor (the attribution domain's verifying contract). */
  verifyingContract: Address;
  /** The inference's UUID. */
  inferenceId: string;
  canonicalJson: string;
  method?: "span" | "influence";
  /** The weights rows stored beside the result (a cache of the signed bytes). */
  weights?: { contributorAddress: string; weightPpm: number }[];
}

/**
 * Validator `i`'s (Hardhat #5 + i) input for a weights-only result in the attribution service's canonical
 * layout ({inferenceId, weights: [{contributorId, ppm}]}, addresses lower-case), signed for `chain`'s
 * distributor: the set-up settlement tests share.
 */
export function validatorWeightsResult(
  chain: Pick<LocalChain, "chainId" | "accounts" | "addresses">,
  i: number,
  inferenceId: string,
  weights: readonly { address: string; ppm: number }[],
): ValidatorResultInput {
  const { addresses } = chain;
  if (!addresses) throw new Error("validatorWeightsResult: the platform is not deployed");
  return {
    privateKey: chain.accounts.validators[i]!.privateKey,
    chainId: chain.chainId,
    verifyingContract: addresses.contracts.RewardDistributor,
    inferenceId,
    canonicalJson: JSON.stringify({
      inferenceId,
      weights: weights.map((w) => ({ contributorId: w.address.toLowerCase(), ppm: w.ppm })),
    }),
    weights: weights.map((w) => ({ contributorAddress: w.address.toLowerCase(), weightPpm: w.ppm })),
  };
}

/**
 * Step 1 of commit-reveal, as the attribution service's validator writes it: the signed commitment to the
 * result (the database orders it). Returns the salt for `revealValidatorResult`.
 */
export async function commitValidatorResult(db: RawQueryClient, r: ValidatorResultInput): Promise<Hex> {
  const account = privateKeyToAccount(r.privateKey);
  const id32 = inferenceIdToBytes32(r.inferenceId);
  const salt = await attributionCommitmentSalt(account, r.chainId, id32, r.verifyingContract);
  const commitment = attributionCommitment(keccak256(toBytes(r.canonicalJson)), account.address, salt);
  const signature = await signAttributionCommitment(
    account,
    r.chainId,
    { inferenceId: id32, commitment },
    r.verifyingContract,
  );
  await db.$queryRawUnsafe(
    `INSERT INTO attribution_commitments (inference_id, validator_address, commitment, signature)
     VALUES ($1::uuid, $2, $3, $4)`,
    r.inferenceId,
    account.address.toLowerCase(),
    commitment,
    signature,
  );
  return salt;
}

/** Step 2: the reveal — the result, its EIP-712 signature and the salt (and its weights rows). Returns its id. */
export async function revealValidatorResult(db: RawQueryClient, r: ValidatorResultInput): Promise<string> {
  const account = privateKeyToAccount(r.privateKey);
  const id32 = inferenceIdToBytes32(r.inferenceId);
  const resultHash = keccak256(toBytes(r.canonicalJson));
  const salt = await attributionCommitmentSalt(account, r.chainId, id32, r.verifyingContract);
  const signature = await signAttributionResult(
    account,
    r.chainId,
    { inferenceId: id32, resultHash },
    r.verifyingContract,
  );
  const [row] = await db.$queryRawUnsafe<{ id: string }[]>(
    `INSERT INTO attribution_results (id, inference_id, validator_address, method, canonical_json, result_hash,
                                      signature, salt)
     VALUES (gen_random_uuid(), $1::uuid, $2, $3::"AttributionMethod", $4, $5, $6, $7) RETURNING id::text AS id`,
    r.inferenceId,
    account.address.toLowerCase(),
    r.method ?? "span",
    r.canonicalJson,
    resultHash,
    signature,
    salt,
  );
  for (const w of r.weights ?? []) {
    await db.$queryRawUnsafe(
      `INSERT INTO attribution_weights (result_id, contributor_address, weight_ppm) VALUES ($1::uuid, $2, $3)`,
      row!.id,
      w.contributorAddress,
      w.weightPpm,
    );
  }
  return row!.id;
}
