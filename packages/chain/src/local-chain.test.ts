// Integration: a real `hardhat node`, the platform deployed by deployPlatform, and the full earnings path
// (deposit -> charge -> quorum-signed root -> claims with proofs from buildEarningsTree) through the
// package's own viem clients.
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { keccak256, toHex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { createChainClients, createChainPublicClient, rpcChainId, rpcRequest } from "./clients.ts";
import { loadAddresses } from "./deploy.ts";
import { inferenceEscrowAbi, openTokenAbi, rewardDistributorAbi, stakingAbi } from "./generated/abis.ts";
import { buildEarningsTree } from "./merkle.ts";
import { GUARDIAN_ROLE, OPEN, SETTLER_ROLE, SLASHER_ROLE, StakeRole, ZERO_SUBJECT } from "./roles.ts";
import { type LocalChain, startLocalChain, USER_FUNDING } from "./testing.ts";
import { signEpochRoot, sortSignatures } from "./typed-data.ts";

describe("startLocalChain + deployPlatform", () => {
  let chain: LocalChain;
  let dir: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "openledger-chain-"));
    chain = await startLocalChain({ writeAddresses: join(dir, "addresses.json") });
  });
  after(async () => {
    await chain?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it("writes an addresses file that loadAddresses reads back", async () => {
    const loaded = await loadAddresses(join(dir, "addresses.json"));
    assert.deepEqual(loaded, chain.addresses);
    assert.equal(loaded.chainId, 31337);
    assert.equal(await rpcChainId(chain.rpcUrl), 31337, "rpcChainId asks the node itself");
    assert.equal(loaded.params.quorum, 2);
    await assert.rejects(loadAddresses(join(dir, "missing.json")));
  });

  it("rpcRequest sends what the typed clients do not say; its errors name the method and only the origin", async () => {
    const pc = createChainPublicClient({ rpcUrl: chain.rpcUrl, chainId: chain.chainId });
    const before = await pc.getBlockNumber({ cacheTime: 0 });
    await rpcRequest(chain.rpcUrl, "evm_mine");
    assert.equal(await pc.getBlockNumber({ cacheTime: 0 }), before + 1n);
    const keyed = `${chain.rpcUrl}/secret-api-key?key=secret`;
    await assert.rejects(rpcRequest(keyed, "no_such_method"), (err: Error) => {
      assert.match(err.message, /^no_such_method failed at http:\/\/127\.0\.0\.1:\d+: /);
      assert.doesNotMatch(err.message, /secret/);
      return true;
    });
  });

  it("wires roles, validators, stakes and balances", async () => {
    const pc = createChainPublicClient({ rpcUrl: chain.rpcUrl, chainId: chain.chainId });
    const c = chain.addresses!.contracts;
    const a = chain.accounts;
    const has = (address: `0x${string}`, abi: typeof stakingAbi, role: `0x${string}`, who: `0x${string}`) =>
      pc.readContract({ address, abi, functionName: "hasRole", args: [role, who] });
    assert.equal(await has(c.Staking, stakingAbi, SLASHER_ROLE, a.operator.address), true);
    assert.equal(await has(c.InferenceEscrow, stakingAbi, SETTLER_ROLE, a.settlement.address), true);
    assert.equal(await has(c.RewardDistributor, stakingAbi, GUARDIAN_ROLE, a.guardian.address), true);
    assert.equal(await has(c.Staking, stakingAbi, SLASHER_ROLE, a.users[0]!.address), false);
    assert.equal(
      await pc.readContract({ address: c.Staking, abi: stakingAbi, functionName: "treasury" }),
      a.treasury.address,
    );
    const validators = await pc.readContract({
      address: c.RewardDistributor,
      abi: rewardDistributorAbi,
      functionName: "validators",
    });
    assert.deepEqual(
      validators,
      a.validators.map((v) => v.address),
    );
    for (const v of a.validators) {
      assert.equal(
        await pc.readContract({
          address: c.Staking,
          abi: stakingAbi,
          functionName: "meetsMinimum",
          args: [v.address, StakeRole.Validator, ZERO_SUBJECT],
        }),
        true,
      );
    }
    for (const u of a.users) {
      assert.equal(
        await pc.readContract({
          address: c.OpenToken,
          abi: openTokenAbi,
          functionName: "balanceOf",
          args: [u.address],
        }),
        USER_FUNDING,
      );
    }
  });

  it("settles an epoch end to end and pays claims with proofs from buildEarningsTree", async () => {
    const c = chain.addresses!.contracts;
    const opts = { rpcUrl: chain.rpcUrl, chainId: chain.chainId };
    const [consumer, earner1, earner2] = chain.accounts.users as [
      typeof chain.accounts.deployer,
      typeof chain.accounts.deployer,
      typeof chain.accounts.deployer,
    ];
    const asConsumer = createChainClients({ ...opts, privateKey: consumer.privateKey });
    const pc = asConsumer.publicClient;
    const send = async (hash: `0x${string}`) => {
      const r = await pc.waitForTransactionReceipt({ hash });
      assert.equal(r.status, "success");
      return r;
    };
    await send(
      await asConsumer.walletClient.writeContract({
        address: c.OpenToken,
        abi: openTokenAbi,
        functionName: "approve",
        args: [c.InferenceEscrow, 100n * OPEN],
      }),
    );
    await send(
      await asConsumer.walletClient.writeContract({
        address: c.InferenceEscrow,
        abi: inferenceEscrowAbi,
        functionName: "deposit",
        args: [100n * OPEN],
      }),
    );
    const settler = createChainClients({ ...opts, privateKey: chain.accounts.settlement.privateKey });
    await send(
      await settler.walletClient.writeContract({
        address: c.InferenceEscrow,
        abi: inferenceEscrowAbi,
        functionName: "charge",
        args: [keccak256(toHex("batch-1")), [consumer.address], [100n * OPEN]],
      }),
    );

    const tree = buildEarningsTree({
      chainId: chain.chainId,
      distributor: c.RewardDistributor,
      epoch: 1n,
      entries: [
        { account: earner1.address, cumulativeAmount: 70n * OPEN },
        { account: earner2.address, cumulativeAmount: 30n * OPEN },
      ],
    });
    const message = { epoch: 1n, root: tree.root, cumulativeTotal: tree.cumulativeTotal };
    const signatures = sortSignatures(
      await Promise.all(
        chain.accounts.validators.slice(1).map(async (v) => ({
          signer: v.address,
          signature: await signEpochRoot(
            privateKeyToAccount(v.privateKey),
            chain.chainId,
            c.RewardDistributor,
            message,
          ),
        })),
      ),
    );
    await send(
      await settler.walletClient.writeContract({
        address: c.RewardDistributor,
        abi: rewardDistributorAbi,
        functionName: "postEpoch",
        args: [1n, tree.root, tree.cumulativeTotal, signatures],
      }),
    );
    // activationDelay is 0 on a local chain; still, show the clock helper works.
    await chain.increaseTime(10);
    for (const earner of [earner1, earner2]) {
      const claim = tree.claimFor(earner.address)!;
      const r = await send(
        await asConsumer.walletClient.writeContract({
          address: c.RewardDistributor,
          abi: rewardDistributorAbi,
          functionName: "claim",
          args: [1n, claim.account, claim.cumulativeAmount, claim.proof],
        }),
      );
      assert.ok(r.gasUsed < 100_000n, `claim gas ${r.gasUsed}`);
      assert.equal(
        await pc.readContract({
          address: c.OpenToken,
          abi: openTokenAbi,
          functionName: "balanceOf",
          args: [earner.address],
        }),
        USER_FUNDING + claim.cumulativeAmount,
      );
    }
    assert.equal(
      await pc.readContract({
        address: c.OpenToken,
        abi: openTokenAbi,
        functionName: "balanceOf",
        args: [c.RewardDistributor],
      }),
      0n,
    );
  });
});
