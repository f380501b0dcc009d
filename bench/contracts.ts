// Gas of every external state-changing function of the OpenLedger contracts, and the cost of posting an
// epoch root (and claiming from it with a real proof) for 10, 1,000 and 100,000 recipients.
//
//   npm run bench:contracts            human table
//   npm run bench:contracts -- --json  one JSON object: {"gas": {...}, "epochPostGas": {...}, ...}
//
// Runs a real `hardhat node` (startLocalChain), so the numbers are receipts' gasUsed. Baselines measured in
// the same run: a plain ERC20 transfer (claims are shown as a ratio of it) and the 10-recipient post.
import {
  type AdminCall,
  buildEarningsTree,
  castVote,
  createChainClients,
  datanetRegistryAbi,
  deployPlatform,
  type EarningsEntry,
  executeAsTimelock,
  executeProposal,
  governorSettings,
  inferenceEscrowAbi,
  ModelKind,
  modelRegistryAbi,
  OPEN,
  openGovernorAbi,
  openTokenAbi,
  type PlatformAddresses,
  type Proposal,
  propose,
  queueProposal,
  rewardDistributorAbi,
  StakeRole,
  signEpochRoot,
  sortSignatures,
  stakingAbi,
  subjectOf,
} from "@openledger/chain";
import { type DevAccount, HARDHAT_DEV_ACCOUNTS, startLocalChain } from "@openledger/chain/testing";
import { type Abi, type Address, getAddress, type Hex, keccak256, toHex } from "viem";
import { privateKeyToAccount } from "viem/accounts";

const json = process.argv.includes("--json");
const BATCH = 20;
const sizes = (process.env.BENCH_RECIPIENTS ?? "10,1000,100000").split(",").map(Number);
const progress = (line: string) => process.stderr.write(`[bench:contracts] ${line}\n`);

const gas: Record<string, number> = {};
const chain = await startLocalChain({ deploy: false });
try {
  const a = chain.accounts;
  const opts = { rpcUrl: chain.rpcUrl, chainId: chain.chainId };
  // Deployment gas comes from a dev-profile deployment with an activation delay of 1 h (the production
  // profile deploys the same bytecode; it differs in who holds the roles and in its floors).
  const addresses: PlatformAddresses = await deployPlatform({
    ...opts,
    deployerPrivateKey: a.deployer.privateKey,
    roles: {
      operator: a.operator.address,
      settlement: a.settlement.address,
      treasury: a.treasury.address,
      guardian: a.guardian.address,
      validators: a.validators.map((v) => v.address),
    },
    params: { activationDelay: 3600 },
    fund: a.users.map((u) => ({ address: u.address, amount: 1_000_000n * OPEN })),
    onReceipt: (step, r) => {
      const m = /^deploy (\w+)$/.exec(step);
      if (m) gas[`${m[1]}.constructor`] = Number(r.gasUsed);
      if (step.startsWith("stake for validator")) gas["Staking.stakeFor"] = Number(r.gasUsed);
      if (step === "timelock executeBatch")
        gas["deploy: wiring batch (timelock executeBatch)"] = Number(r.gasUsed);
    },
  });
  progress(`deployed on ${chain.rpcUrl}`);
  const c = addresses.contracts;
  const client = (who: DevAccount) => createChainClients({ ...opts, privateKey: who.privateKey });
  const pc = client(a.deployer).publicClient;
  const send = async (
    who: DevAccount,
    key: string | undefined,
    address: Address,
    abi: Abi,
    functionName: string,
    args: readonly unknown[],
  ) => {
    const { walletClient } = client(who);
    const hash = await walletClient.writeContract({ address, abi, functionName, args });
    const r = await pc.waitForTransactionReceipt({ hash });
    if (r.status !== "success") throw new Error(`${key ?? functionName} reverted`);
    if (key) gas[key] = Number(r.gasUsed);
    return r;
  };
  // An admin call: the timelock holds every admin role, so the figure is the timelock's executeBatch of that
  // one call (the call itself plus ~10-15k of timelock bookkeeping); scheduling is another transaction.
  const admin = async (
    key: string | undefined,
    address: Address,
    abi: Abi,
    functionName: string,
    args: readonly unknown[],
  ) => {
    const { publicClient, walletClient } = client(a.deployer);
    const calls: AdminCall[] = [{ address, abi, functionName, args }];
    const r = await executeAsTimelock({ publicClient, walletClient, timelock: c.OpenTimelock, calls });
    if (key) gas[`${key} (via timelock)`] = Number(r.gasUsed);
    return r;
  };
  const [alice, bob, carol, dave] = a.users as [DevAccount, DevAccount, DevAccount, DevAccount];
  const T = openTokenAbi as Abi;
  const S = stakingAbi as Abi;
  const D = datanetRegistryAbi as Abi;
  const M = modelRegistryAbi as Abi;
  const E = inferenceEscrowAbi as Abi;
  const R = rewardDistributorAbi as Abi;

  // ---- OpenToken
  await send(alice, "OpenToken.transfer", c.OpenToken, T, "transfer", [
    getAddress("0x00000000000000000000000000000000000b0b00"),
    OPEN,
  ]);
  await send(alice, "OpenToken.approve", c.OpenToken, T, "approve", [c.Staking, 10_000n * OPEN]);
  await send(a.users[4]!, "OpenToken.delegate", c.OpenToken, T, "delegate", [a.users[4]!.address]);
  {
    const deadline = (await pc.getBlock()).timestamp + 3600n;
    const signature = await privateKeyToAccount(alice.privateKey).signTypedData({
      domain: { name: "OpenLedger", version: "1", chainId: chain.chainId, verifyingContract: c.OpenToken },
      types: {
        Permit: [
          { name: "owner", type: "address" },
          { name: "spender", type: "address" },
          { name: "value", type: "uint256" },
          { name: "nonce", type: "uint256" },
          { name: "deadline", type: "uint256" },
        ],
      },
      primaryType: "Permit",
      message: { owner: alice.address, spender: bob.address, value: OPEN, nonce: 0n, deadline },
    });
    const r = `0x${signature.slice(2, 66)}` as Hex;
    const s = `0x${signature.slice(66, 130)}` as Hex;
    const v = Number.parseInt(signature.slice(130, 132), 16);
    await send(bob, "OpenToken.permit", c.OpenToken, T, "permit", [
      alice.address,
      bob.address,
      OPEN,
      deadline,
      v,
      r,
      s,
    ]);
  }

  // ---- Staking
  const DN = subjectOf(1n);
  await send(alice, "Staking.stake", c.Staking, S, "stake", [StakeRole.Contributor, DN, 1_000n * OPEN]);
  await send(alice, "Staking.unbond", c.Staking, S, "unbond", [StakeRole.Contributor, DN, 500n * OPEN]);
  await send(a.operator, "Staking.slash", c.Staking, S, "slash", [
    alice.address,
    StakeRole.Contributor,
    DN,
    10n * OPEN,
    keccak256(toHex("e")),
  ]);
  await send(a.operator, "Staking.slashWithReporter", c.Staking, S, "slashWithReporter", [
    alice.address,
    StakeRole.Contributor,
    DN,
    10n * OPEN,
    keccak256(toHex("e")),
    bob.address,
  ]);
  await chain.increaseTime(7 * 24 * 3600);
  await send(alice, "Staking.withdraw", c.Staking, S, "withdraw", [StakeRole.Contributor, DN]);
  await admin("Staking.setUnbondingPeriod", c.Staking, S, "setUnbondingPeriod", [7 * 24 * 3600]);
  await admin("Staking.setTreasury", c.Staking, S, "setTreasury", [a.treasury.address]);
  await admin("Staking.setReporterCutBps", c.Staking, S, "setReporterCutBps", [1_000]);
  await admin("Staking.setMinStake", c.Staking, S, "setMinStake", [StakeRole.Contributor, 100n * OPEN]);
  await admin("Staking.setSlashDisputeWindow", c.Staking, S, "setSlashDisputeWindow", [3600]);
  // The bounded slash path (production's): propose, wait the dispute window, execute; or veto.
  await send(alice, undefined, c.Staking, S, "stake", [StakeRole.Contributor, DN, 500n * OPEN]);
  await send(a.operator, "Staking.proposeSlash", c.Staking, S, "proposeSlash", [
    alice.address,
    StakeRole.Contributor,
    DN,
    10n * OPEN,
    keccak256(toHex("e")),
    bob.address,
  ]);
  await send(a.operator, undefined, c.Staking, S, "proposeSlash", [
    alice.address,
    StakeRole.Contributor,
    DN,
    10n * OPEN,
    keccak256(toHex("e2")),
    bob.address,
  ]);
  await send(a.guardian, "Staking.vetoSlash", c.Staking, S, "vetoSlash", [2n]);
  await chain.increaseTime(3600);
  await send(bob, "Staking.executeSlash", c.Staking, S, "executeSlash", [1n]);

  // ---- DatanetRegistry
  await send(alice, "DatanetRegistry.createDatanet", c.DatanetRegistry, D, "createDatanet", [
    "ipfs://bafy-datanet-metadata",
  ]);
  await send(a.operator, "DatanetRegistry.createDatanetFor", c.DatanetRegistry, D, "createDatanetFor", [
    bob.address,
    "ipfs://bafy-datanet-metadata-2",
  ]);
  await send(a.operator, "DatanetRegistry.publishVersion", c.DatanetRegistry, D, "publishVersion", [
    1n,
    keccak256(toHex("rows")),
    10_000n,
    120n,
  ]);
  await send(alice, "DatanetRegistry.setMetadataURI", c.DatanetRegistry, D, "setMetadataURI", [
    1n,
    "ipfs://bafy-datanet-metadata-v2",
  ]);
  await send(
    bob,
    "DatanetRegistry.transferDatanetOwnership",
    c.DatanetRegistry,
    D,
    "transferDatanetOwnership",
    [2n, carol.address],
  );

  // ---- ModelRegistry
  const reg = (h: string) => ({
    kind: ModelKind.Adapter,
    contentHash: keccak256(toHex(h)),
    baseModel: keccak256(toHex("SmolLM-135M")),
    trainedOn: [{ datanetId: 1n, version: 1 }],
    pricePer1kInput: 2n * 10n ** 15n,
    pricePer1kOutput: 6n * 10n ** 15n,
    metadataURI: "ipfs://bafy-adapter",
  });
  await send(bob, "ModelRegistry.registerModel", c.ModelRegistry, M, "registerModel", [reg("m1")]);
  await send(a.operator, "ModelRegistry.registerModelFor", c.ModelRegistry, M, "registerModelFor", [
    carol.address,
    reg("m2"),
  ]);
  await send(bob, "ModelRegistry.updatePrices", c.ModelRegistry, M, "updatePrices", [
    1n,
    3n * 10n ** 15n,
    7n * 10n ** 15n,
  ]);
  await send(bob, "ModelRegistry.transferModelOwnership", c.ModelRegistry, M, "transferModelOwnership", [
    1n,
    carol.address,
  ]);
  await send(carol, "ModelRegistry.retire", c.ModelRegistry, M, "retire", [1n]);

  // ---- InferenceEscrow
  for (const u of [alice, bob, carol, dave])
    await send(u, undefined, c.OpenToken, T, "approve", [c.InferenceEscrow, 1_000_000n * OPEN]);
  await send(alice, "InferenceEscrow.deposit", c.InferenceEscrow, E, "deposit", [100_000n * OPEN]);
  await send(bob, "InferenceEscrow.depositFor", c.InferenceEscrow, E, "depositFor", [
    carol.address,
    1_000n * OPEN,
  ]);
  await send(bob, undefined, c.InferenceEscrow, E, "deposit", [1_000n * OPEN]);
  await send(bob, "InferenceEscrow.requestWithdrawal", c.InferenceEscrow, E, "requestWithdrawal", [
    100n * OPEN,
  ]);
  await send(bob, "InferenceEscrow.cancelWithdrawal", c.InferenceEscrow, E, "cancelWithdrawal", []);
  await send(bob, undefined, c.InferenceEscrow, E, "requestWithdrawal", [100n * OPEN]);
  await chain.increaseTime(24 * 3600);
  await send(bob, "InferenceEscrow.withdraw", c.InferenceEscrow, E, "withdraw", []);
  await send(a.settlement, "InferenceEscrow.charge", c.InferenceEscrow, E, "charge", [
    keccak256(toHex("b1")),
    [alice.address],
    [OPEN],
  ]);
  await send(a.settlement, "InferenceEscrow.charge[3 consumers]", c.InferenceEscrow, E, "charge", [
    keccak256(toHex("b2")),
    [alice.address, bob.address, carol.address],
    [OPEN, OPEN, OPEN],
  ]);
  // Steady state: consumers charged before today (their daily-cap slot exists, today's counter is updated).
  await send(a.settlement, "InferenceEscrow.charge (repeat consumer)", c.InferenceEscrow, E, "charge", [
    keccak256(toHex("b1-repeat")),
    [alice.address],
    [OPEN],
  ]);
  await send(
    a.settlement,
    "InferenceEscrow.charge[3 consumers] (repeat consumers)",
    c.InferenceEscrow,
    E,
    "charge",
    [keccak256(toHex("b2-repeat")), [alice.address, bob.address, carol.address], [OPEN, OPEN, OPEN]],
  );
  // A consumer short of balance is skipped (ChargeSkipped), the others are charged.
  await send(a.settlement, "InferenceEscrow.charge[3 consumers, 1 skipped]", c.InferenceEscrow, E, "charge", [
    keccak256(toHex("b2-skip")),
    [alice.address, bob.address, carol.address],
    [OPEN, 10_000n * OPEN, OPEN],
  ]);
  // Daily caps (the settler's bound): a consumer with its own cap, and one skipped for being over it.
  await send(carol, "InferenceEscrow.setDailyCap (raise)", c.InferenceEscrow, E, "setDailyCap", [
    2_000_000n * OPEN,
  ]);
  await send(bob, "InferenceEscrow.setDailyCap (lower: scheduled)", c.InferenceEscrow, E, "setDailyCap", [
    2n * OPEN,
  ]);
  await chain.increaseTime(24 * 3600);
  await send(a.settlement, "InferenceEscrow.charge (own cap)", c.InferenceEscrow, E, "charge", [
    keccak256(toHex("b-cap")),
    [carol.address],
    [OPEN],
  ]);
  await send(
    a.settlement,
    "InferenceEscrow.charge[3 consumers, 1 over its cap]",
    c.InferenceEscrow,
    E,
    "charge",
    [keccak256(toHex("b-cap-skip")), [alice.address, bob.address, carol.address], [OPEN, 3n * OPEN, OPEN]],
  );
  await admin("InferenceEscrow.setWithdrawalDelay", c.InferenceEscrow, E, "setWithdrawalDelay", [24 * 3600]);
  await admin("InferenceEscrow.setDefaultDailyCap", c.InferenceEscrow, E, "setDefaultDailyCap", [
    1_000_000n * OPEN,
  ]);
  await send(a.guardian, "InferenceEscrow.pause", c.InferenceEscrow, E, "pause", []);
  await admin("InferenceEscrow.unpause", c.InferenceEscrow, E, "unpause", []);

  // ---- RewardDistributor: one epoch per tree size, each with a real tree and a claim with its proof.
  const signers = a.validators.slice(0, 2).map((v) => privateKeyToAccount(v.privateKey));
  let epoch = 0n;
  let cumulative = new Map<Address, bigint>();
  const post = async (entries: EarningsEntry[], key: string | undefined) => {
    epoch += 1n;
    const t0 = performance.now();
    const tree = buildEarningsTree({
      chainId: chain.chainId,
      distributor: c.RewardDistributor,
      epoch,
      entries,
    });
    const built = performance.now() - t0;
    const prevTotal = [...cumulative.values()].reduce((x, y) => x + y, 0n);
    const need = tree.cumulativeTotal - prevTotal;
    if (need > 0n) {
      await send(dave, undefined, c.InferenceEscrow, E, "deposit", [need]);
      await send(a.settlement, undefined, c.InferenceEscrow, E, "charge", [
        keccak256(toHex(`fund-${epoch}`)),
        [dave.address],
        [need],
      ]);
    }
    const message = { epoch, root: tree.root, cumulativeTotal: tree.cumulativeTotal };
    const sigs = sortSignatures(
      await Promise.all(
        signers.map(async (s) => ({
          signer: s.address,
          signature: await signEpochRoot(s, chain.chainId, c.RewardDistributor, message),
        })),
      ),
    );
    const r = await send(a.settlement, key, c.RewardDistributor, R, "postEpoch", [
      epoch,
      tree.root,
      tree.cumulativeTotal,
      sigs,
    ]);
    cumulative = new Map(entries.map((e) => [e.account, e.cumulativeAmount]));
    return { tree, postGas: Number(r.gasUsed), buildMs: built };
  };
  const recipients = (n: number, salt: bigint): EarningsEntry[] =>
    Array.from({ length: n }, (_, i) => ({
      // Deterministic, well-spread addresses (multiplicative hash of the index).
      account:
        `0x${((BigInt(i + 1) * 0x9e3779b97f4a7c15f39cc0605cedc835n + salt) % (1n << 160n)).toString(16).padStart(40, "0")}` as Address,
      cumulativeAmount: 10n ** 15n + BigInt(i),
    }));

  // Claimants, besides the tree's anonymous recipients (fresh addresses: no OPEN, never claimed):
  //  - holders: first claim by an account that already holds OPEN (dev accounts #14.., given 1 OPEN);
  //  - bob: a repeat claimer (claimed in an earlier epoch, holds OPEN, not delegated).
  const holders = [14, 15, 16, 17].map((i) => HARDHAT_DEV_ACCOUNTS[i]!.address);
  for (const h of holders) await send(a.deployer, undefined, c.OpenToken, T, "transfer", [h, OPEN]);
  // Warm-up epoch (first writes to the escrow's and distributor's counters), so sizes compare like for like.
  {
    // holders[3] never claims, so the distributor's OPEN balance never returns to zero (a 0 -> non-zero balance
    // write would make the next post look 17k gas dearer for reasons unrelated to the number of recipients).
    const { tree } = await post(
      [
        { account: bob.address, cumulativeAmount: 10n ** 15n },
        { account: holders[3]!, cumulativeAmount: 10n ** 15n },
      ],
      undefined,
    );
    await chain.increaseTime(3600);
    const cl = tree.claimFor(bob.address)!;
    await send(dave, undefined, c.RewardDistributor, R, "claim", [
      epoch,
      cl.account,
      cl.cumulativeAmount,
      cl.proof,
    ]);
  }
  const epochPostGas: Record<string, number> = {};
  const claimGas: Record<string, number> = {};
  const claimGasByCase: Record<string, Record<string, number>> = {};
  const proofLength: Record<string, number> = {};
  const buildMs: Record<string, number> = {};
  for (const [k, n] of sizes.entries()) {
    progress(`building a ${n}-recipient tree`);
    const holder = holders[k % holders.length]!;
    // Cumulative roots: bob keeps his leaf with a larger amount; the rest are new.
    const entries: EarningsEntry[] = [
      { account: bob.address, cumulativeAmount: cumulative.get(bob.address)! + 10n ** 15n },
      { account: holder, cumulativeAmount: 10n ** 15n },
      { account: holders[3]!, cumulativeAmount: 10n ** 15n },
      ...recipients(n - 3, BigInt(n)),
    ];
    const { tree, postGas, buildMs: ms } = await post(entries, "RewardDistributor.postEpoch");
    epochPostGas[String(n)] = postGas;
    buildMs[String(n)] = Math.round(ms);
    await chain.increaseTime(3600);
    const claimFor = async (who: Address, key?: string) => {
      const cl = tree.claimFor(who)!;
      const r = await send(dave, key, c.RewardDistributor, R, "claim", [
        epoch,
        cl.account,
        cl.cumulativeAmount,
        cl.proof,
      ]);
      return Number(r.gasUsed);
    };
    // A recipient in the middle of the list, first claim, no OPEN yet: two new storage slots (worst case).
    const middle = Math.floor(entries.length / 2);
    const fresh = await claimFor(entries[middle]!.account, "RewardDistributor.claim");
    const holderGas = await claimFor(holder, "RewardDistributor.claim (first claim, holds OPEN)");
    const repeat = await claimFor(bob.address, "RewardDistributor.claim (repeat claimer)");
    // Relayed batch of fresh recipients: per-claim cost once the 21k intrinsic and cold reads are shared.
    const batch = entries
      .filter((_, i) => i >= 3 && i !== middle)
      .slice(0, BATCH)
      .map((e) => tree.claimFor(e.account)!);
    const rb = await send(
      dave,
      batch.length === BATCH ? `RewardDistributor.claimMany[${BATCH} fresh]` : undefined,
      c.RewardDistributor,
      R,
      "claimMany",
      [
        epoch,
        batch.map((b) => ({ account: b.account, cumulativeAmount: b.cumulativeAmount, proof: b.proof })),
      ],
    );
    const perClaim = Math.round(Number(rb.gasUsed) / batch.length);
    claimGas[String(n)] = fresh;
    claimGasByCase[String(n)] = {
      freshRecipient: fresh,
      firstClaimHoldsOpen: holderGas,
      repeatClaimer: repeat,
      batchedFreshPerClaim: perClaim,
    };
    proofLength[String(n)] = tree.claimFor(bob.address)!.proof.length;
    progress(
      `${n} recipients: post ${postGas} gas, claim ${fresh}/${holderGas}/${repeat} gas (fresh/holder/repeat), tree ${Math.round(ms)} ms`,
    );
  }
  // Guardian and admin paths.
  {
    const entries = [...cumulative].map(([account, v]) => ({ account, cumulativeAmount: v + 1n }));
    await post(entries, undefined);
    await send(a.guardian, "RewardDistributor.revokeEpoch", c.RewardDistributor, R, "revokeEpoch", [epoch]);
  }
  await send(a.guardian, "RewardDistributor.pause", c.RewardDistributor, R, "pause", []);
  await admin("RewardDistributor.unpause", c.RewardDistributor, R, "unpause", []);
  await admin("RewardDistributor.setActivationDelay", c.RewardDistributor, R, "setActivationDelay", [3600]);
  await admin("RewardDistributor.addValidator", c.RewardDistributor, R, "addValidator", [carol.address]);
  await admin("RewardDistributor.removeValidator", c.RewardDistributor, R, "removeValidator", [
    carol.address,
  ]);
  await admin("RewardDistributor.setQuorum", c.RewardDistributor, R, "setQuorum", [3, 4, 2]);
  const split = { treasuryBps: 500, validatorsBps: 1_500, modelOwnerBps: 2_500, contributorsBps: 5_500 };
  await admin("RewardDistributor.setFeeSplit", c.RewardDistributor, R, "setFeeSplit", [split]);

  // ---- OpenGovernor: one full cycle (the deployer holds the votes in the dev profile).
  {
    const { publicClient, walletClient } = client(a.deployer);
    const ctx = { publicClient, governor: c.OpenGovernor };
    const proposal: Proposal = {
      calls: [
        {
          address: c.RewardDistributor,
          abi: R,
          functionName: "setFeeSplit",
          args: [{ ...split, treasuryBps: 1_000, contributorsBps: 5_000 }],
        },
      ],
      description: "bench: fee split back",
    };
    const settings = await governorSettings(ctx);
    const last = async (key: string) => {
      const block = await publicClient.getBlock({ includeTransactions: false });
      const r = await publicClient.getTransactionReceipt({ hash: block.transactions.at(-1)! });
      gas[key] = Number(r.gasUsed);
    };
    const id = await propose(ctx, walletClient, proposal);
    await last("OpenGovernor.propose (locks the deposit)");
    await chain.increaseTime(Number(settings.votingDelay) + 1);
    gas["OpenGovernor.castVote"] = Number((await castVote(ctx, walletClient, id, 1)).gasUsed);
    await chain.increaseTime(Number(settings.votingPeriod) + 1);
    gas["OpenGovernor.queue"] = Number((await queueProposal(ctx, walletClient, proposal)).gasUsed);
    await chain.increaseTime(Number(settings.timelockDelay) + 1);
    gas["OpenGovernor.execute (setFeeSplit)"] = Number(
      (await executeProposal(ctx, walletClient, proposal)).gasUsed,
    );
    await send(
      a.deployer,
      "OpenGovernor.settleDeposit",
      c.OpenGovernor,
      openGovernorAbi as Abi,
      "settleDeposit",
      [id],
    );
  }

  const transfer = gas["OpenToken.transfer"]!;
  const base = epochPostGas[String(sizes[0])]!;
  const result = {
    gas: Object.fromEntries(Object.entries(gas).sort(([x], [y]) => (x < y ? -1 : 1))),
    epochPostGas,
    claimGas,
    claimGasByCase,
    proofLength,
    treeBuildMs: buildMs,
    ratios: {
      claimVsErc20Transfer: Object.fromEntries(
        Object.entries(claimGas).map(([k, v]) => [k, Number((v / transfer).toFixed(2))]),
      ),
      epochPostVsSmallest: Object.fromEntries(
        Object.entries(epochPostGas).map(([k, v]) => [k, Number((v / base).toFixed(4))]),
      ),
    },
  };
  if (json) {
    process.stdout.write(`${JSON.stringify(result)}\n`);
  } else {
    const rows = Object.entries(result.gas);
    const w = Math.max(...rows.map(([k]) => k.length));
    console.log(`${"function".padEnd(w)}  gas`);
    for (const [k, v] of rows) console.log(`${k.padEnd(w)}  ${String(v).padStart(9)}`);
    console.log(
      "\nrecipients  postEpoch gas  vs smallest  claim: fresh / holds OPEN / repeat / batched  fresh/ERC20 transfer  proof  tree ms",
    );
    for (const n of sizes) {
      const k = String(n);
      console.log(
        `${k.padStart(10)}  ${String(epochPostGas[k]).padStart(13)}  ${result.ratios.epochPostVsSmallest[k]!.toFixed(4).padStart(11)}  ${`${claimGasByCase[k]!.freshRecipient} / ${claimGasByCase[k]!.firstClaimHoldsOpen} / ${claimGasByCase[k]!.repeatClaimer} / ${claimGasByCase[k]!.batchedFreshPerClaim}`.padStart(44)}  ${result.ratios.claimVsErc20Transfer[k]!.toFixed(2).padStart(20)}  ${String(proofLength[k]).padStart(5)}  ${String(buildMs[k]).padStart(7)}`,
      );
    }
  }
} finally {
  await chain.stop();
}
