// Claims and roots as an attacker or an unlucky user meets them (issue #14), on real Postgres, Redis
// and a local chain with the production activation delay (1 h) and 5-minute epochs (Hardhat time
// travel):
// - the claims API serves the latest ACTIVE root (a claim with what it returns goes through), never
//   the newest pending one, and says when the next one activates;
// - a root the guardian revokes is never served, its settlements are held out of the next root (not
//   carried unchanged), the ledger records the correction, and an operator can release them;
// - a ledger whose stored balances would lower an account's cumulative amount builds no new root.
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { startTestAttestors } from "@openledger/attribution/testing";
import {
  createChainPublicClient,
  createChainWalletClient,
  inferenceEscrowAbi,
  openTokenAbi,
  rewardDistributorAbi,
} from "@openledger/chain";
import { type LocalChain, startLocalChain } from "@openledger/chain/testing";
import { Prisma } from "@openledger/db";
import type { App } from "@openledger/service-kit";
import { testEnvironment } from "@openledger/service-kit/testing";
import type { Abi, Address, Hex } from "viem";
import { buildSettlement, settlementConfig } from "./app.ts";

const TOKEN = "claims-revocation-admin-token";
const OPEN = 10n ** 18n;
const PRICE_IN = 3n * OPEN; // 1,000 input tokens cost 3 OPEN
const MODEL = "adapter-claims-revocation";
const HOUR = 3600;
const EPOCH_SECONDS = 300;

let attestors: { stop(): Promise<void> } | undefined;
let chain: LocalChain;
let env: Awaited<ReturnType<typeof testEnvironment>>;
let app: App;
let dir: string;
let config: ReturnType<typeof settlementConfig>;
type Account = { address: string; privateKey: Hex };
let consumer: Account;
let owner: Account; // the model owner: earns 30 % of every fee, and claims it

const lower = (a: string) => a.toLowerCase();
const C = () => {
  assert.ok(chain.addresses);
  return chain.addresses.contracts;
};
const pub = () => createChainPublicClient({ rpcUrl: chain.rpcUrl, chainId: chain.chainId });

async function send(key: Hex, address: Address, abi: unknown, functionName: string, args: unknown[]) {
  const wallet = createChainWalletClient({ rpcUrl: chain.rpcUrl, chainId: chain.chainId, privateKey: key });
  const hash = await wallet.writeContract({ address, abi, functionName, args } as never);
  return pub().waitForTransactionReceipt({ hash });
}

function read<T>(address: Address, abi: unknown, functionName: string, args: unknown[] = []): Promise<T> {
  return pub().readContract({ address, abi, functionName, args } as never) as Promise<T>;
}

/** An inference settled without attribution (its deadline passed): 3 OPEN, 30 % to the model owner. */
async function settleOne(): Promise<string> {
  const inf = await app.db.inference.create({
    data: {
      modelId: MODEL,
      accountAddress: lower(consumer.address),
      prompt: "p",
      output: "o",
      inputTokens: 1000,
      outputTokens: 0,
      createdAt: new Date(Date.now() - 2 * config.SETTLEMENT_ATTRIBUTION_DEADLINE_MS),
    },
  });
  assert.equal(await app.settlement.settle(inf.id), "settled");
  return inf.id;
}

async function closeEpoch() {
  const res = await app.inject({
    method: "POST",
    url: "/v1/epochs/close",
    headers: { authorization: `Bearer ${TOKEN}` },
  });
  return res;
}

async function closeNewEpoch(): Promise<number> {
  const res = await closeEpoch();
  assert.equal(res.statusCode, 200, res.body);
  const epoch = res.json().epoch;
  assert.equal(epoch.status, "confirmed", res.body);
  return epoch.id;
}

type Claim = {
  epoch: number | null;
  cumulativeAmount: string;
  claimable: string;
  active: boolean;
  proof: Hex[];
  next: { epoch: number; activatesAt: string; cumulativeAmount: string } | null;
};
async function claimOf(a: Account): Promise<Claim> {
  const res = await app.inject({ method: "GET", url: `/v1/accounts/${a.address}/claim` });
  assert.equal(res.statusCode, 200, res.body);
  return res.json();
}

/** The account's own wallet claims with what the API returned. */
async function claimOnChain(a: Account, c: Claim) {
  assert.ok(c.epoch !== null);
  return send(a.privateKey, C().RewardDistributor, rewardDistributorAbi, "claim", [
    BigInt(c.epoch),
    a.address,
    BigInt(c.cumulativeAmount),
    c.proof,
  ]);
}

const chainTime = async () => Number((await pub().getBlock({ blockTag: "latest" })).timestamp);

async function reconcileOk() {
  const r = (await app.inject({ method: "GET", url: "/v1/reconciliation" })).json();
  assert.equal(r.ok, true, JSON.stringify(r.checks.filter((c: { ok: boolean }) => !c.ok)));
}

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "claims-revocation-"));
  const addressesFile = path.join(dir, "addresses.json");
  chain = await startLocalChain({ writeAddresses: addressesFile });
  env = await testEnvironment("claims_revocation");
  config = settlementConfig({
    ...env.env,
    CHAIN_RPC_URL: chain.rpcUrl,
    CHAIN_ADDRESSES_FILE: addressesFile,
    SETTLEMENT_EPOCH_INTERVAL_MS: "0",
    SETTLEMENT_ADMIN_TOKEN: TOKEN,
  });
  app = await buildSettlement(config);
  // Settlement holds no validator key: the local validators' attestors sign the roots it closes.
  attestors = startTestAttestors({ db: app.db, rpcUrl: chain.rpcUrl, addressesFile });
  [consumer, owner] = chain.accounts.users as [Account, Account];
  await app.db.model.create({
    data: {
      id: MODEL,
      kind: "adapter",
      ownerAddress: lower(owner.address),
      contentHash: "cd".repeat(32),
      priceInPer1kWei: new Prisma.Decimal(PRICE_IN.toString()),
      priceOutPer1kWei: new Prisma.Decimal("0"),
    },
  });
  const deposit = 10_000n * OPEN;
  await send(consumer.privateKey, C().OpenToken, openTokenAbi, "approve", [C().InferenceEscrow, deposit]);
  await send(consumer.privateKey, C().InferenceEscrow, inferenceEscrowAbi, "deposit", [deposit]);
  // The production activation delay: a root is claimable 1 h after it is posted.
  await chain.asAdmin([
    {
      address: C().RewardDistributor,
      abi: rewardDistributorAbi as Abi,
      functionName: "setActivationDelay",
      args: [BigInt(HOUR)],
    },
  ]);
});

after(async () => {
  await attestors?.stop();
  await app?.close();
  await chain?.stop();
  await env?.cleanup();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("claims under a 1 h activation delay with 5-minute epochs", () => {
  test("the API serves the latest active root, a claim with it goes through, and it says when the next one activates", async () => {
    const posted: { id: number; at: number }[] = [];
    // 14 epochs, one every 5 minutes of chain time: 70 minutes, so the first ones activate meanwhile.
    for (let i = 0; i < 14; i++) {
      await settleOne();
      const id = await closeNewEpoch();
      posted.push({ id, at: await chainTime() });
      const c = await claimOf(owner);
      const now = await chainTime();
      const activeIds = posted.filter((p) => p.at + HOUR <= now).map((p) => p.id);
      if (activeIds.length === 0) {
        // Nothing is claimable yet: no root is served, and the next one's activation is announced.
        assert.equal(c.epoch, null, "a pending root is never served");
        assert.equal(c.active, false);
        assert.equal(c.next?.epoch, posted[0]!.id);
        assert.equal(Date.parse(c.next!.activatesAt) / 1000, posted[0]!.at + HOUR);
      } else {
        assert.equal(c.epoch, Math.max(...activeIds), "the latest active root");
        assert.equal(c.active, true);
        assert.equal(
          await read<boolean>(C().RewardDistributor, rewardDistributorAbi, "isEpochActive", [
            BigInt(c.epoch!),
          ]),
          true,
        );
        const pendingIds = posted.filter((p) => p.at + HOUR > now).map((p) => p.id);
        assert.equal(c.next?.epoch, Math.min(...pendingIds));
        if (BigInt(c.claimable) > 0n) {
          const before1 = await read<bigint>(C().OpenToken, openTokenAbi, "balanceOf", [owner.address]);
          const receipt = await claimOnChain(owner, c);
          assert.equal(receipt.status, "success", "the claim the API prepared goes through");
          const after1 = await read<bigint>(C().OpenToken, openTokenAbi, "balanceOf", [owner.address]);
          assert.equal(after1 - before1, BigInt(c.claimable));
        }
      }
      await chain.increaseTime(EPOCH_SECONDS);
    }
    // After the last hour every root has activated: the owner claims exactly its cumulative earnings.
    await chain.increaseTime(HOUR);
    const c = await claimOf(owner);
    assert.equal(c.epoch, posted[posted.length - 1]!.id);
    assert.equal(c.next, null);
    if (BigInt(c.claimable) > 0n) assert.equal((await claimOnChain(owner, c)).status, "success");
    const claimed = await read<bigint>(C().RewardDistributor, rewardDistributorAbi, "claimed", [
      owner.address,
    ]);
    assert.equal(claimed, BigInt(c.cumulativeAmount));
    assert.equal(claimed, 14n * ((3n * OPEN * 3_000n) / 10_000n), "30 % of 14 fees of 3 OPEN");
    await reconcileOk();
  });
});

describe("a root revoked by the guardian", () => {
  test("is never served, its settlements are held out of the next root, the ledger records it, and a release puts them back", async () => {
    // A root that activates (the baseline), then one the guardian revokes while pending.
    await settleOne();
    const base = await closeNewEpoch();
    await chain.increaseTime(HOUR + 1);
    const baseClaim = await claimOf(owner);
    assert.equal(baseClaim.epoch, base);

    const heldId = await settleOne();
    const revoked = await closeNewEpoch();
    const guardian = chain.accounts.guardian;
    const r = await send(guardian.privateKey, C().RewardDistributor, rewardDistributorAbi, "revokeEpoch", [
      BigInt(revoked),
    ]);
    assert.equal(r.status, "success");

    // Even before any tick, the claims API never serves it (it reads the chain) ...
    const c = await claimOf(owner);
    assert.equal(c.epoch, base, "the revoked root is not served");
    assert.notEqual(c.next?.epoch, revoked, "nor announced as the next one");
    // ... and settlement has followed it: revoked, settlement held, ledger correction recorded.
    const e = (await app.inject({ method: "GET", url: `/v1/epochs/${revoked}` })).json();
    assert.equal(e.status, "revoked");
    assert.ok(e.revokedAt);
    const s = (await app.inject({ method: "GET", url: `/v1/inferences/${heldId}/settlement` })).json();
    assert.equal(s.epochId, null);
    assert.equal(s.heldByEpochId, revoked);
    const correction = await app.db.ledgerTransaction.findUniqueOrThrow({
      where: { externalKey: `epoch_revoked:${revoked}` },
      include: { entries: true },
    });
    const byAccount = new Map(correction.entries.map((x) => [x.account, BigInt(x.amountWei.toFixed())]));
    assert.equal(byAccount.get(`model_owner:${lower(owner.address)}`), -((3n * OPEN * 3_000n) / 10_000n));
    assert.equal(byAccount.get(`held:epoch:${revoked}`), 3n * OPEN, "the whole fee is held");
    assert.equal(
      [...byAccount.values()].reduce((a, b) => a + b, 0n),
      0n,
      "the correction balances",
    );
    await reconcileOk();

    // The next root does not carry the revoked amounts: it is built on the last valid root plus new fees.
    await settleOne();
    const nextId = await closeNewEpoch();
    assert.equal(nextId, revoked + 1);
    const next = (await app.inject({ method: "GET", url: `/v1/epochs/${nextId}` })).json();
    const baseEpoch = (await app.inject({ method: "GET", url: `/v1/epochs/${base}` })).json();
    assert.equal(BigInt(next.cumulativeTotalWei), BigInt(baseEpoch.cumulativeTotalWei) + 3n * OPEN);
    await reconcileOk();

    // Released by an operator: the held settlement goes into the following root; the ledger reverses the hold.
    const unauthorized = await app.inject({ method: "POST", url: `/v1/epochs/${revoked}/release` });
    assert.equal(unauthorized.statusCode, 401);
    const notRevoked = await app.inject({
      method: "POST",
      url: `/v1/epochs/${nextId}/release`,
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    assert.equal(notRevoked.statusCode, 409);
    assert.equal(notRevoked.json().error.code, "NOT_REVOKED");
    const released = await app.inject({
      method: "POST",
      url: `/v1/epochs/${revoked}/release`,
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    assert.equal(released.statusCode, 200, released.body);
    assert.equal(released.json().released, 1);
    assert.ok(released.json().epoch.releasedAt);
    const after1 = await closeNewEpoch();
    const s2 = (await app.inject({ method: "GET", url: `/v1/inferences/${heldId}/settlement` })).json();
    assert.equal(s2.epochId, after1);
    assert.equal(s2.heldByEpochId, null);
    const reversal = await app.db.ledgerTransaction.findUniqueOrThrow({
      where: { externalKey: `epoch_released:${revoked}` },
      include: { entries: true },
    });
    assert.equal(
      reversal.entries.find((x) => x.account === `held:epoch:${revoked}`)?.amountWei.toFixed(),
      (-3n * OPEN).toString(),
    );
    await reconcileOk();
  });
});

describe("a ledger that would lower an account's cumulative amount", () => {
  test("builds no new root: the last valid root's balances must match the chain's", async () => {
    await settleOne();
    const last = await closeNewEpoch();
    const account = lower(owner.address);
    const row = await app.db.epochBalance.findUniqueOrThrow({
      where: { epochId_address: { epochId: last, address: account } },
    });
    // Someone lowers the owner's stored cumulative amount by 1 wei (and moves it to another account, so
    // the total stays the distributor's).
    const other = lower(chain.accounts.users[5]!.address);
    await app.db.$executeRawUnsafe(
      `UPDATE epoch_balances SET cumulative_wei = cumulative_wei - 1 WHERE epoch_id = $1 AND address = $2`,
      last,
      account,
    );
    await app.db.$executeRawUnsafe(
      `INSERT INTO epoch_balances (epoch_id, address, cumulative_wei) VALUES ($1, $2, 1)`,
      last,
      other,
    );
    await settleOne();
    const refused = await closeEpoch();
    assert.equal(refused.statusCode, 409, refused.body);
    assert.equal(refused.json().error.code, "LEDGER_CHAIN_MISMATCH");
    assert.equal(
      await read<bigint>(C().RewardDistributor, rewardDistributorAbi, "latestEpoch"),
      BigInt(last),
      "no root was posted",
    );
    assert.equal(await app.db.epoch.count({ where: { id: { gt: last } } }), 0, "no epoch was closed");
    // Restored: the next root posts, and nobody is lower than before.
    await app.db.$executeRawUnsafe(
      `UPDATE epoch_balances SET cumulative_wei = $3::numeric WHERE epoch_id = $1 AND address = $2`,
      last,
      account,
      row.cumulativeWei.toFixed(),
    );
    await app.db.$executeRawUnsafe(
      `DELETE FROM epoch_balances WHERE epoch_id = $1 AND address = $2`,
      last,
      other,
    );
    const nextId = await closeNewEpoch();
    const next = await app.db.epochBalance.findUniqueOrThrow({
      where: { epochId_address: { epochId: nextId, address: account } },
    });
    assert.ok(BigInt(next.cumulativeWei.toFixed()) >= BigInt(row.cumulativeWei.toFixed()));
    await reconcileOk();
  });
});
