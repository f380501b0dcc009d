// Property tests: fast-check drives random sequences of stake / unbond / withdraw / slash / deposit /
// withdrawal / daily cap / charge / post epoch / claim / revoke / time jumps against the deployed contracts,
// keeps a reference model, and checks the invariants after every step — including the settler's bound: a
// charge goes through exactly when the consumer's balance and what is left of its daily cap cover it.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { buildEarningsTree, StakeRole, subjectOf } from "@openledger/chain";
import fc from "fast-check";
import { type Address, type Hex, keccak256, toHex } from "viem";
import {
  addr,
  expectRevert,
  hre,
  loadFixture,
  OPEN,
  type Platform,
  platformFixture,
  signEpoch,
  type Wallet,
} from "./helpers.ts";

const RUNS = Number(process.env.FC_RUNS ?? 40);
const MAX_COMMANDS = Number(process.env.FC_COMMANDS ?? 40);
const SUBJECTS = [subjectOf(1n), subjectOf(2n)] as const;
const MIN_CONTRIBUTOR = 100n * OPEN;
const UNBONDING = 7n * 24n * 3600n;
const WITHDRAWAL_DELAY = 24n * 3600n;
const REPORTER_BPS = 1_000n;
/** Tolerance for "ready yet?" predictions: a transaction's block time is within this of the last block + 1. */
const SLACK = 5n;

type Cmd =
  | { t: "stake"; u: number; s: number; amt: bigint }
  | { t: "unbond"; u: number; s: number; pct: number }
  | { t: "withdrawStake"; u: number; s: number }
  | { t: "slash"; u: number; s: number; pct: number; reporter: boolean }
  | { t: "deposit"; u: number; amt: bigint }
  | { t: "requestWithdrawal"; u: number; pct: number }
  | { t: "withdrawEscrow"; u: number }
  | { t: "charge"; u: number; pct: number }
  | { t: "setCap"; u: number; cap: bigint }
  | { t: "post"; shares: readonly number[]; overdraw: boolean }
  | { t: "claim"; u: number; pickOlder: boolean }
  | { t: "revoke" }
  | { t: "time"; dt: bigint };

const user = fc.integer({ min: 0, max: 3 });
const subject = fc.integer({ min: 0, max: 1 });
// Amounts in 0.1 OPEN steps, crossing the 100 OPEN contributor minimum.
const amount = fc
  .oneof(
    { arbitrary: fc.integer({ min: 0, max: 1_100 }), weight: 1 },
    { arbitrary: fc.integer({ min: 1_000, max: 30_000 }), weight: 3 },
  )
  .map((n) => (BigInt(n) * OPEN) / 10n);
/** Percent of the relevant model quantity (balance, active stake); above 100 exercises the "too much" reverts. */
const pct = fc.oneof(fc.constantFrom(0, 100, 101), fc.integer({ min: 1, max: 130 }));
const ofPct = (x: bigint, p: number) => (p === 101 ? x + 1n : (x * BigInt(p)) / 100n);
const weighted = <T>(weight: number, arbitrary: fc.Arbitrary<T>) => ({ weight, arbitrary });
const cmdArb: fc.Arbitrary<Cmd> = fc.oneof(
  weighted(3, fc.record({ t: fc.constant("stake" as const), u: user, s: subject, amt: amount })),
  weighted(1, fc.record({ t: fc.constant("unbond" as const), u: user, s: subject, pct })),
  weighted(1, fc.record({ t: fc.constant("withdrawStake" as const), u: user, s: subject })),
  weighted(
    1,
    fc.record({ t: fc.constant("slash" as const), u: user, s: subject, pct, reporter: fc.boolean() }),
  ),
  weighted(3, fc.record({ t: fc.constant("deposit" as const), u: user, amt: amount })),
  weighted(1, fc.record({ t: fc.constant("requestWithdrawal" as const), u: user, pct })),
  weighted(1, fc.record({ t: fc.constant("withdrawEscrow" as const), u: user })),
  weighted(3, fc.record({ t: fc.constant("charge" as const), u: user, pct })),
  weighted(
    1,
    fc.record({
      t: fc.constant("setCap" as const),
      u: user,
      cap: fc.constantFrom(0n, 500n * OPEN, 2_000n * OPEN, 10_000n * OPEN, 2_000_000n * OPEN),
    }),
  ),
  weighted(
    3,
    fc.record({
      t: fc.constant("post" as const),
      shares: fc.array(fc.integer({ min: 0, max: 5 }), { minLength: 4, maxLength: 4 }),
      overdraw: fc.constant(false),
    }),
  ),
  // Tries to post more than settlement charged: must revert with ExceedsSettled.
  weighted(
    1,
    fc.record({
      t: fc.constant("post" as const),
      shares: fc.constant([1, 1, 1, 1]),
      overdraw: fc.constant(true),
    }),
  ),
  weighted(3, fc.record({ t: fc.constant("claim" as const), u: user, pickOlder: fc.boolean() })),
  weighted(1, fc.record({ t: fc.constant("revoke" as const) })),
  weighted(
    3,
    fc.record({
      t: fc.constantFrom("time" as const),
      dt: fc.constantFrom(1_000n, 5_000n, 5_000n, 216_000n, 691_200n),
    }),
  ),
);

interface Pos {
  active: bigint;
  unbonding: bigint;
  end: bigint;
}
interface Acct {
  balance: bigint;
  pending: bigint;
  at: bigint;
  /** Daily cap (InferenceEscrow): own cap or the default, a pending decrease, today's charges. */
  own: boolean;
  cap: bigint;
  pendingCap: bigint;
  pendingCapAt: bigint;
  spent: bigint;
  day: bigint;
}
const DAY_S = 86_400n;
interface EpochModel {
  n: bigint;
  cum: Map<Address, bigint>;
  total: bigint;
  activatesAt: bigint;
  revoked: boolean;
  prevValid: bigint;
  tree: ReturnType<typeof buildEarningsTree>;
}

class World {
  pos = new Map<string, Pos>();
  acct = new Map<Address, Acct>();
  settledUndrawn = 0n;
  epochs = new Map<bigint, EpochModel>();
  latest = 0n;
  lastValid = 0n;
  claimed = new Map<Address, bigint>();
  batch = 0;
  validatorStake = 0n;
  defaultCap = 0n;

  constructor(
    readonly p: Platform,
    readonly users: Wallet[],
    readonly holders: Address[],
  ) {}

  position(u: number, s: number): Pos {
    const k = `${u}:${s}`;
    let v = this.pos.get(k);
    if (!v) {
      v = { active: 0n, unbonding: 0n, end: 0n };
      this.pos.set(k, v);
    }
    return v;
  }
  account(u: number): Acct {
    const a = addr(this.users[u]!);
    let v = this.acct.get(a);
    if (!v) {
      v = {
        balance: 0n,
        pending: 0n,
        at: 0n,
        own: false,
        cap: 0n,
        pendingCap: 0n,
        pendingCapAt: 0n,
        spent: 0n,
        day: 0n,
      };
      this.acct.set(a, v);
    }
    return v;
  }
  async now(): Promise<bigint> {
    return (await this.p.publicClient.getBlock()).timestamp;
  }
  /** true / false when certain, undefined when the deadline falls inside the next block's time window. */
  async ready(deadline: bigint): Promise<boolean | undefined> {
    const now = await this.now();
    if (deadline <= now + 1n) return true;
    if (deadline > now + 1n + SLACK) return false;
    return undefined;
  }
  /** The cap in force at time t, applying a matured decrease as the contract does. */
  capAt(a: Acct, t: bigint): bigint {
    if (a.pendingCapAt !== 0n && t >= a.pendingCapAt) {
      a.cap = a.pendingCap;
      a.own = true;
      a.pendingCap = 0n;
      a.pendingCapAt = 0n;
    }
    return a.own ? a.cap : this.defaultCap;
  }
  async blockTime(hash: Hex): Promise<bigint> {
    const r = await this.p.publicClient.waitForTransactionReceipt({ hash });
    return (await this.p.publicClient.getBlock({ blockNumber: r.blockNumber })).timestamp;
  }
}

async function attempt(
  ok: boolean | undefined,
  run: () => Promise<Hex>,
  error: string,
): Promise<Hex | undefined> {
  if (ok === true) {
    count("ok");
    return run();
  }
  if (ok === false) {
    await expectRevert(run(), error);
    count(`revert ${error}`);
    return undefined;
  }
  try {
    const h = await run();
    count("ok (boundary)");
    return h;
  } catch {
    count("revert (boundary)");
    return undefined;
  }
}

const stats = new Map<string, number>();
function count(key: string) {
  stats.set(key, (stats.get(key) ?? 0) + 1);
}

async function step(w: World, c: Cmd): Promise<void> {
  const { p } = w;
  const u = "u" in c ? w.users[c.u]! : undefined;
  switch (c.t) {
    case "stake": {
      const pos = w.position(c.u, c.s);
      const ok = c.amt > 0n && pos.active + c.amt >= MIN_CONTRIBUTOR;
      await (await p.at("OpenToken", u)).write.approve([p.addresses.contracts.Staking, c.amt]);
      const staking = await p.at("Staking", u);
      const h = await attempt(
        ok,
        () => staking.write.stake([StakeRole.Contributor, SUBJECTS[c.s]!, c.amt]),
        c.amt === 0n ? "ZeroAmount" : "BelowMinimumStake",
      );
      if (h) pos.active += c.amt;
      return;
    }
    case "unbond": {
      const pos = w.position(c.u, c.s);
      const amt = ofPct(pos.active, c.pct);
      const rest = pos.active - amt;
      const ok = amt > 0n && amt <= pos.active && (rest === 0n || rest >= MIN_CONTRIBUTOR);
      const err = amt === 0n ? "ZeroAmount" : amt > pos.active ? "InsufficientStake" : "BelowMinimumStake";
      const staking = await p.at("Staking", u);
      const h = await attempt(
        ok,
        () => staking.write.unbond([StakeRole.Contributor, SUBJECTS[c.s]!, amt]),
        err,
      );
      if (h) {
        pos.active -= amt;
        pos.unbonding += amt;
        pos.end = (await w.blockTime(h)) + UNBONDING;
      }
      return;
    }
    case "withdrawStake": {
      const pos = w.position(c.u, c.s);
      const ok = pos.unbonding === 0n ? false : await w.ready(pos.end);
      const staking = await p.at("Staking", u);
      const h = await attempt(
        ok,
        () => staking.write.withdraw([StakeRole.Contributor, SUBJECTS[c.s]!]),
        pos.unbonding === 0n ? "NothingToWithdraw" : "UnbondingNotFinished",
      );
      if (h) {
        pos.unbonding = 0n;
        pos.end = 0n;
      }
      return;
    }
    case "slash": {
      const pos = w.position(c.u, c.s);
      const available = pos.active + pos.unbonding;
      const amt = ofPct(available, c.pct) + (c.pct === 0 ? 0n : 1n);
      const ok = amt > 0n && available > 0n;
      const slasher = await p.at("Staking", p.operator);
      const who = addr(u!);
      const h = await attempt(
        ok,
        () =>
          c.reporter
            ? slasher.write.slashWithReporter([
                who,
                StakeRole.Contributor,
                SUBJECTS[c.s]!,
                amt,
                keccak256(toHex("e")),
                addr(p.reporter),
              ])
            : slasher.write.slash([who, StakeRole.Contributor, SUBJECTS[c.s]!, amt, keccak256(toHex("e"))]),
        amt === 0n ? "ZeroAmount" : "NothingToSlash",
      );
      if (h) {
        const slashed = amt < available ? amt : available;
        const fromActive = slashed < pos.active ? slashed : pos.active;
        pos.active -= fromActive;
        pos.unbonding -= slashed - fromActive;
        if (pos.unbonding === 0n) pos.end = 0n;
        const ev = (await p.staking.getEvents.Slashed()).at(-1)!;
        assert.equal(ev.args.amount, slashed);
        assert.equal(ev.args.reporterCut, c.reporter ? (slashed * REPORTER_BPS) / 10_000n : 0n);
      }
      return;
    }
    case "deposit": {
      const a = w.account(c.u);
      await (await p.at("OpenToken", u)).write.approve([p.addresses.contracts.InferenceEscrow, c.amt]);
      const escrow = await p.at("InferenceEscrow", u);
      const h = await attempt(c.amt > 0n, () => escrow.write.deposit([c.amt]), "ZeroAmount");
      if (h) a.balance += c.amt;
      return;
    }
    case "requestWithdrawal": {
      const a = w.account(c.u);
      const amt = ofPct(a.balance, c.pct);
      const ok = amt > 0n && amt <= a.balance;
      const escrow = await p.at("InferenceEscrow", u);
      const h = await attempt(
        ok,
        () => escrow.write.requestWithdrawal([amt]),
        amt === 0n ? "ZeroAmount" : "InsufficientBalance",
      );
      if (h) {
        a.pending = amt;
        a.at = (await w.blockTime(h)) + WITHDRAWAL_DELAY;
      }
      return;
    }
    case "withdrawEscrow": {
      const a = w.account(c.u);
      const ok = a.pending === 0n ? false : await w.ready(a.at);
      const escrow = await p.at("InferenceEscrow", u);
      const h = await attempt(
        ok,
        () => escrow.write.withdraw(),
        a.pending === 0n ? "NoPendingWithdrawal" : "WithdrawalLocked",
      );
      if (h) {
        a.balance -= a.pending;
        a.pending = 0n;
        a.at = 0n;
      }
      return;
    }
    case "charge": {
      const a = w.account(c.u);
      const amt = ofPct(a.balance, c.pct);
      // A consumer short of balance or of daily cap is skipped (the call succeeds, nothing moves); only a
      // zero amount reverts.
      const ok = amt > 0n;
      const settler = await p.at("InferenceEscrow", p.settlement);
      const id = keccak256(toHex(`batch-${++w.batch}`));
      const h = await attempt(ok, () => settler.write.charge([id, [addr(u!)], [amt]]), "ZeroAmount");
      if (h) {
        const t = await w.blockTime(h);
        const today = t / DAY_S;
        const cap = w.capAt(a, t);
        const spent = a.day === today ? a.spent : 0n;
        const expected = amt <= a.balance && amt <= (cap > spent ? cap - spent : 0n);
        const charged = (await settler.getEvents.Charged({ batchId: id })).length === 1;
        assert.equal(
          charged,
          expected,
          `charge of ${amt} (balance ${a.balance}, cap ${cap}, spent today ${spent})`,
        );
        count(
          charged ? "charge applied" : amt > a.balance ? "charge skipped (balance)" : "charge skipped (cap)",
        );
        if (charged) {
          a.balance -= amt;
          if (a.pending > a.balance) a.pending = a.balance;
          a.spent = spent + amt;
          a.day = today;
          w.settledUndrawn += amt;
        }
      }
      return;
    }
    case "setCap": {
      const a = w.account(c.u);
      const escrow = await p.at("InferenceEscrow", u);
      const h = await escrow.write.setDailyCap([c.cap]);
      const t = await w.blockTime(h);
      const current = w.capAt(a, t);
      a.own = true;
      if (c.cap >= current) {
        a.cap = c.cap;
        a.pendingCap = 0n;
        a.pendingCapAt = 0n;
      } else {
        // A decrease waits for the withdrawal delay, so fees for inference already served stay collectable.
        a.cap = current;
        a.pendingCap = c.cap;
        a.pendingCapAt = t + WITHDRAWAL_DELAY;
      }
      return;
    }
    case "post": {
      const prev = w.epochs.get(w.lastValid);
      const cum = new Map(prev?.cum ?? []);
      const weightSum = c.shares.reduce((x, y) => x + y, 0);
      const budget = c.overdraw ? w.settledUndrawn + 1n : w.settledUndrawn / 2n;
      let added = 0n;
      c.shares.forEach((s, i) => {
        if (weightSum === 0) return;
        const inc = (budget * BigInt(s)) / BigInt(weightSum);
        if (inc === 0n) return;
        const a = addr(w.users[i]!);
        cum.set(a, (cum.get(a) ?? 0n) + inc);
        added += inc;
      });
      if (cum.size === 0) return;
      const n = w.latest + 1n;
      const tree = buildEarningsTree({
        chainId: await p.publicClient.getChainId(),
        distributor: p.addresses.contracts.RewardDistributor,
        epoch: n,
        entries: [...cum].map(([account, cumulativeAmount]) => ({ account, cumulativeAmount })),
      });
      const sigs = await signEpoch(p, p.validators.slice(0, 2), {
        epoch: n,
        root: tree.root,
        cumulativeTotal: tree.cumulativeTotal,
      });
      const ok = added <= w.settledUndrawn;
      const h = await attempt(
        ok,
        () => p.distributor.write.postEpoch([n, tree.root, tree.cumulativeTotal, sigs]),
        "ExceedsSettled",
      );
      if (h) {
        const e = await p.distributor.read.getEpoch([n]);
        w.epochs.set(n, {
          n,
          cum,
          total: tree.cumulativeTotal,
          activatesAt: BigInt(e.activatesAt),
          revoked: false,
          prevValid: w.lastValid,
          tree,
        });
        w.settledUndrawn -= added;
        w.latest = n;
        w.lastValid = n;
        count("post accepted");
      }
      return;
    }
    case "claim": {
      const a = addr(u!);
      const now = await w.now();
      const active = [...w.epochs.values()].filter(
        (e) => !e.revoked && e.activatesAt + SLACK < now && e.cum.has(a),
      );
      const e = c.pickOlder ? active[0] : active.at(-1);
      if (!e) return;
      const claim = e.tree.claimFor(a)!;
      const already = w.claimed.get(a) ?? 0n;
      const ok = claim.cumulativeAmount > already;
      const d = await p.at("RewardDistributor", p.dave); // anyone can relay
      const h = await attempt(
        ok,
        () => d.write.claim([e.n, a, claim.cumulativeAmount, claim.proof]),
        "NothingToClaim",
      );
      if (h) {
        w.claimed.set(a, claim.cumulativeAmount);
        count("claim paid");
      }
      return;
    }
    case "revoke": {
      const e = w.epochs.get(w.lastValid);
      const guardian = await p.at("RewardDistributor", p.guardian);
      if (!e) {
        await expectRevert(guardian.write.revokeEpoch([w.lastValid]), "NotLatestValidEpoch");
        return;
      }
      const active = await w.ready(e.activatesAt);
      const ok = active === undefined ? undefined : !active;
      const h = await attempt(ok, () => guardian.write.revokeEpoch([e.n]), "EpochAlreadyActive");
      if (h) {
        e.revoked = true;
        count("revoke accepted");
        w.lastValid = e.prevValid;
        w.settledUndrawn += e.total - (w.epochs.get(e.prevValid)?.total ?? 0n);
      }
      return;
    }
    case "time": {
      await hre.network.provider.request({ method: "evm_increaseTime", params: [Number(c.dt)] });
      await hre.network.provider.request({ method: "evm_mine", params: [] });
      return;
    }
  }
}

async function checkInvariants(w: World): Promise<void> {
  const { p } = w;
  const c = p.addresses.contracts;
  // 1. Token conservation: every token is somewhere we know, and the sum is the fixed supply.
  let sum = 0n;
  for (const h of w.holders) sum += await p.token.read.balanceOf([h]);
  assert.equal(sum, await p.token.read.totalSupply(), "sum of balances = supply");

  // 2. Total staked = sum of stakes (model and chain), and the staking contract holds exactly that.
  let modelStaked = w.validatorStake;
  for (const [k, pos] of w.pos) {
    const [u, s] = k.split(":").map(Number) as [number, number];
    const chain = await p.staking.read.positionOf([addr(w.users[u]!), StakeRole.Contributor, SUBJECTS[s]!]);
    assert.equal(chain.active, pos.active, `active ${k}`);
    assert.equal(chain.unbonding, pos.unbonding, `unbonding ${k}`);
    modelStaked += pos.active + pos.unbonding;
  }
  const totalStaked = await p.staking.read.totalStaked();
  assert.equal(totalStaked, modelStaked, "totalStaked = sum of stakes");
  assert.equal(await p.token.read.balanceOf([c.Staking]), totalStaked, "staking holds what it owes");

  // 3. Escrow solvency and agreement with the model.
  let balances = 0n;
  for (const [a, acct] of w.acct) {
    const chain = await p.escrow.read.accountOf([a]);
    assert.equal(chain.balance, acct.balance, `escrow balance ${a}`);
    assert.equal(chain.pendingWithdrawal, acct.pending, `pending ${a}`);
    const cap = await p.escrow.read.dailyCapOf([a]);
    const pendingNow = acct.pendingCapAt !== 0n && acct.pendingCapAt > (await w.now());
    if (pendingNow) assert.equal(cap.pendingCap, acct.pendingCap, `pending cap ${a}`);
    balances += acct.balance;
  }
  assert.equal(await p.escrow.read.totalBalances(), balances);
  assert.equal(await p.escrow.read.settledUndrawn(), w.settledUndrawn);
  assert.equal(
    await p.token.read.balanceOf([c.InferenceEscrow]),
    balances + w.settledUndrawn,
    "escrow solvent",
  );

  // 4. Distributor balance >= sum of unclaimed; nobody has claimed more than their cumulative earnings.
  const latest = w.epochs.get(w.lastValid);
  let unclaimed = 0n;
  for (const u of w.users) {
    const a = addr(u);
    const claimed = await p.distributor.read.claimed([a]);
    assert.equal(claimed, w.claimed.get(a) ?? 0n, `claimed ${a}`);
    const entitled = latest?.cum.get(a) ?? 0n;
    let earned = 0n;
    for (const e of w.epochs.values()) {
      const v = e.revoked ? 0n : (e.cum.get(a) ?? 0n);
      if (v > earned) earned = v;
    }
    assert.ok(claimed <= earned, `claimed <= cumulative earnings for ${a}`);
    unclaimed += entitled > claimed ? entitled - claimed : 0n;
  }
  assert.ok(
    (await p.token.read.balanceOf([c.RewardDistributor])) >= unclaimed,
    "distributor balance >= unclaimed",
  );
  assert.equal(await p.distributor.read.lastValidEpoch(), w.lastValid);
}

describe("invariants under random operation sequences", () => {
  it(`hold after every step (${RUNS} runs x up to ${MAX_COMMANDS} commands)`, {
    timeout: 600_000,
  }, async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(cmdArb, { minLength: 10, maxLength: MAX_COMMANDS, size: "max" }),
        async (cmds) => {
          const p = await loadFixture(platformFixture);
          const holders = [
            ...p.wallets.map((x) => addr(x)),
            p.addresses.contracts.Staking,
            p.addresses.contracts.InferenceEscrow,
            p.addresses.contracts.RewardDistributor,
            p.addresses.contracts.OpenGovernor,
            p.addresses.contracts.OpenTimelock,
          ];
          const w = new World(p, p.users, holders);
          w.validatorStake = await p.staking.read.totalStaked();
          // Low enough that random charges run into it (the dev profile's default is 1,000,000 OPEN a day).
          await p.admin("InferenceEscrow", "setDefaultDailyCap", [3_000n * OPEN]);
          w.defaultCap = await p.escrow.read.defaultDailyCap();
          await checkInvariants(w);
          // Preamble: every consumer starts with an escrow balance, so charges, epochs and claims have
          // something to work with from the first generated command on.
          for (let u = 0; u < w.users.length; u++) await step(w, { t: "deposit", u, amt: 5_000n * OPEN });
          for (const c of cmds) {
            await step(w, c);
            count(c.t);
            await checkInvariants(w);
          }
        },
      ),
      {
        numRuns: RUNS,
        seed: process.env.FC_SEED ? Number(process.env.FC_SEED) : undefined,
        endOnFailure: true,
      },
    );
    // Coverage of the generated sequences (commands run and reverts checked), for whoever reads the log.
    console.error(`invariants: ${JSON.stringify(Object.fromEntries([...stats].sort()))}`);
  });
});
