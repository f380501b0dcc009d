import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { after, before, test } from "node:test";
import { datanetRegistryAbi, SLASHER_ROLE, StakeRole, stakingAbi, subjectOf } from "@openledger/chain";
import { localAccounts } from "@openledger/chain/testing";
import { canonicalHash, makeVariant, paragraph, Rng, render } from "@openledger/datanet-core";
import { jobId } from "@openledger/queue";
import { type Abi, createPublicClient, http } from "viem";

import { eventually, type Harness, signIn, stakeOn, startHarness } from "./test-support.ts";
import { versionTree } from "./versions.ts";
import { sweepOnce } from "./workers/sweeper.ts";
import { validateContribution } from "./workers/validate.ts";

const { users } = localAccounts();
const [owner, carol, erin, frank] = [users[0]!, users[1]!, users[2]!, users[3]!];
const OPEN = 10n ** 18n;
let h: Harness;
const auth: Record<string, { authorization: string }> = {};
const rng = new Rng(7);

before(async () => {
  h = await startHarness("dn-life", { DATANETS_DISPUTE_WINDOW_SECONDS: "3600", DATANETS_SLASH_BPS: "1000" });
  for (const [name, u] of Object.entries({ owner, carol, erin, frank }))
    auth[name] = await signIn(h, u.privateKey);
});
after(async () => {
  await h?.close();
});

/** A datanet of its own for one test (so every test passes alone and in any order), with stakes. */
async function newDatanet(stakes: Partial<Record<"carol" | "erin" | "frank", bigint>>) {
  const res = await h.app.inject({
    method: "POST",
    url: "/v1/datanets",
    headers: auth.owner!,
    payload: {
      slug: `essays-${Math.random().toString(16).slice(2, 10)}`,
      name: "Essays",
      type: "text",
      license: "CC-BY-4.0",
      minStakeWei: (100n * OPEN).toString(),
    },
  });
  assert.equal(res.statusCode, 201, res.body);
  const d = { id: res.json().id as string, chainId: BigInt(res.json().chainDatanetId) };
  const keys = { carol: carol.privateKey, erin: erin.privateKey, frank: frank.privateKey };
  for (const [who, amount] of Object.entries(stakes))
    await stakeOn(h, keys[who as keyof typeof keys], d.chainId, amount);
  return d;
}

const inject = (method: "GET" | "POST", url: string, who?: string, payload?: object) =>
  h.app.inject({ method, url, ...(who ? { headers: auth[who]! } : {}), ...(payload ? { payload } : {}) });
const submit = (datanetId: string, who: string, texts: string[]) =>
  inject("POST", `/v1/datanets/${datanetId}/contributions`, who, { rows: texts.map((text) => ({ text })) });
const validated = (id: string) =>
  eventually(async () => {
    const r = (await inject("GET", `/v1/contributions/${id}`)).json();
    return r.contribution.status === "validated" ? r : null;
  }, `contribution ${id} validated`);
const client = () => createPublicClient({ transport: http(h.chain.rpcUrl) });
const stakeOf = (addr: string, chainDatanetId: bigint) =>
  client().readContract({
    address: h.chain.addresses!.contracts.Staking,
    abi: stakingAbi,
    functionName: "activeStake",
    args: [addr as `0x${string}`, StakeRole.Contributor, subjectOf(chainDatanetId)],
  });

/** Carol contributes 12 essays; erin resubmits 10 of them (edited) plus 2 of her own: a proposal. */
async function erinCopiesCarol(datanetId: string) {
  const carolParas = Array.from({ length: 12 }, () => paragraph(rng, 3, 5));
  const res = await submit(datanetId, "carol", carolParas.map(render));
  assert.equal(res.statusCode, 202, res.body);
  const carolDone = await validated(res.json().contribution.id);
  const kinds = ["edit", "shuffle", "case_whitespace", "shuffle_edit_case"] as const;
  const copies = carolParas.slice(0, 10).map((p, i) => makeVariant(rng, p, kinds[i % 4]!));
  const erinRes = await submit(datanetId, "erin", [
    ...copies,
    render(paragraph(rng, 3, 5)),
    render(paragraph(rng, 3, 5)),
  ]);
  assert.equal(erinRes.statusCode, 202, erinRes.body);
  const erinDone = await validated(erinRes.json().contribution.id);
  return { carolParas, carolContribution: res.json().contribution.id as string, carolDone, erinDone };
}

test("lifecycle: contribute, validate with progress, redundant submission -> proposal with evidence", async () => {
  const d = await newDatanet({ carol: 500n, erin: 200n });
  const { carolContribution, carolDone: done, erinDone } = await erinCopiesCarol(d.id);
  assert.equal(done.contribution.acceptedCount, 12);
  assert.equal(done.job.id, jobId("datanet.validate", { contributionId: carolContribution }));
  assert.deepEqual(done.job.progress, { processed: 12, total: 12 });
  assert.deepEqual(done.slashingProposalIds, []);
  // Redelivery of the job is a no-op: nothing is validated or counted twice.
  const again = await validateContribution(
    h.app.datanets,
    { contributionId: carolContribution },
    { progress: async () => {} },
  );
  assert.deepEqual(again, { skipped: "already validated" });

  // Erin's copies (small edits, shuffles and case noise) are rejected; her own two rows are accepted.
  assert.equal(erinDone.contribution.acceptedCount, 2);
  assert.equal(await h.app.db.datanetRow.count({ where: { datanetId: d.id, status: "accepted" } }), 14);
  assert.equal(erinDone.slashingProposalIds.length, 1);
  const p = (await inject("GET", `/v1/slashing-proposals/${erinDone.slashingProposalIds[0]}`)).json();
  assert.equal(p.status, "proposed");
  assert.equal(p.contributorAddress, erin.address.toLowerCase());
  assert.equal(p.reason, "redundant");
  assert.equal(p.amountWei, (20n * OPEN).toString(), "10% of erin's 200 OPEN stake");
  assert.equal(p.evidence.rows.length, 10);
  assert.equal(canonicalHash(p.evidence), p.evidenceHash, "the evidence hash is recomputable");
  const carolRowIds = new Set(
    (await h.app.db.datanetRow.findMany({ where: { contributionId: carolContribution } })).map((r) =>
      r.id.toString(),
    ),
  );
  for (const row of p.evidence.rows)
    assert.ok(carolRowIds.has(row.duplicateOf.id), "evidence names the duplicated row");
  assert.deepEqual(
    p.events.map((e: { toStatus: string }) => e.toStatus),
    ["proposed"],
  );
});

test("slashing: only the accused disputes, in the window; the owner upholds; execution slashes on-chain", async () => {
  const d = await newDatanet({ carol: 500n, erin: 200n, frank: 100n });
  const meBefore = (await inject("GET", "/v1/me", "erin")).json();
  const { erinDone } = await erinCopiesCarol(d.id);
  const proposalId = erinDone.slashingProposalIds[0] as string;
  const early = await inject("POST", `/v1/slashing-proposals/${proposalId}/execute`, "frank");
  assert.equal(early.statusCode, 409);
  assert.equal(early.json().error.code, "NOT_EXECUTABLE");
  const notMine = await inject("POST", `/v1/slashing-proposals/${proposalId}/dispute`, "frank", {
    reason: "no",
  });
  assert.equal(notMine.statusCode, 403);
  assert.equal(notMine.json().error.code, "NOT_ACCUSED");
  const disputed = await inject("POST", `/v1/slashing-proposals/${proposalId}/dispute`, "erin", {
    reason: "these are my own words",
  });
  assert.equal(disputed.statusCode, 200, disputed.body);
  assert.equal(disputed.json().status, "disputed");
  const byErin = await inject("POST", `/v1/slashing-proposals/${proposalId}/resolve`, "erin", {
    decision: "dismiss",
  });
  assert.equal(byErin.statusCode, 403);
  const upheld = await inject("POST", `/v1/slashing-proposals/${proposalId}/resolve`, "owner", {
    decision: "uphold",
    note: "10 of 12 rows copy existing essays",
  });
  assert.equal(upheld.json().status, "upheld");
  assert.equal(await stakeOf(erin.address, d.chainId), 200n * OPEN);
  const executed = await inject("POST", `/v1/slashing-proposals/${proposalId}/execute`, "frank");
  assert.equal(executed.statusCode, 200, executed.body);
  assert.equal(executed.json().status, "executed");
  assert.match(executed.json().executedTxHash, /^0x[0-9a-f]{64}$/);
  assert.equal(await stakeOf(erin.address, d.chainId), 180n * OPEN, "20 OPEN slashed on-chain");
  assert.deepEqual(
    executed.json().events.map((e: { toStatus: string }) => e.toStatus),
    ["proposed", "disputed", "upheld", "executed"],
  );
  // Executing again neither fails nor slashes twice.
  const again = await inject("POST", `/v1/slashing-proposals/${proposalId}/execute`, "frank");
  assert.equal(again.json().status, "executed");
  assert.equal(await stakeOf(erin.address, d.chainId), 180n * OPEN);

  const me = (await inject("GET", "/v1/me", "erin")).json();
  assert.equal(me.rowsAccepted - meBefore.rowsAccepted, 2);
  assert.equal(me.rowsRejected - meBefore.rowsRejected, 10);
  const stake = me.stakes.find((s: { datanetId: string }) => s.datanetId === d.id);
  assert.equal(stake.activeStakeWei, (180n * OPEN).toString());
  const slash = me.slashes.find((x: { id: string }) => x.id === proposalId);
  assert.equal(slash.status, "executed");
});

test("undisputed proposals are executed by the sweeper after the window; late disputes are refused", async () => {
  const d = await newDatanet({ carol: 500n, frank: 100n });
  const carolParas = Array.from({ length: 10 }, () => paragraph(rng, 3, 5));
  await validated((await submit(d.id, "carol", carolParas.map(render))).json().contribution.id);
  // Frank submits only copies: a proposal.
  const res = await submit(
    d.id,
    "frank",
    carolParas.map((p) => makeVariant(rng, p, "edit")),
  );
  const done = await validated(res.json().contribution.id);
  const id = done.slashingProposalIds[0];
  assert.ok(id);
  // Let the dispute window pass (set the deadline in the past: the clock is not the thing under test).
  await h.app.db.slashingProposal.update({
    where: { id },
    data: { disputeDeadline: new Date(Date.now() - 1000) },
  });
  const late = await inject("POST", `/v1/slashing-proposals/${id}/dispute`, "frank", { reason: "too late" });
  assert.equal(late.statusCode, 409);
  assert.equal(late.json().error.code, "DISPUTE_WINDOW_CLOSED");
  // The sweeper and two users execute it at the same moment: exactly one Staking.slash is sent.
  const operator = h.chain.accounts.operator.address;
  const nonceBefore = await h.chain.rpc<string>("eth_getTransactionCount", [operator, "latest"]);
  const [swept, r1, r2] = await Promise.all([
    sweepOnce(h.app.datanets, h.app.log),
    inject("POST", `/v1/slashing-proposals/${id}/execute`, "carol"),
    inject("POST", `/v1/slashing-proposals/${id}/execute`, "owner"),
  ]);
  assert.ok(swept.executed >= 1);
  assert.equal(r1.statusCode, 200, r1.body);
  assert.equal(r2.statusCode, 200, r2.body);
  const p = (await inject("GET", `/v1/slashing-proposals/${id}`)).json();
  assert.equal(p.status, "executed");
  assert.equal(await stakeOf(frank.address, d.chainId), 90n * OPEN, "slashed once: 10% of 100 OPEN");
  assert.equal(
    BigInt(await h.chain.rpc<string>("eth_getTransactionCount", [operator, "latest"])) - BigInt(nonceBefore),
    1n,
    "one transaction from the operator",
  );
  assert.deepEqual(
    p.events.map((e: { toStatus: string }) => e.toStatus),
    ["proposed", "executed"],
  );
  const listed = (await inject("GET", `/v1/datanets/${d.id}/slashing-proposals?status=executed`)).json();
  assert.deepEqual(
    listed.items.map((i: { id: string }) => i.id),
    [id],
  );
});

test("a Staking.slash the chain refuses answers 409 with the reason, stays pending, and is sent once when it can be", async () => {
  const d = await newDatanet({ frank: 100n });
  await h.app.db.contributor.upsert({
    where: { address: frank.address.toLowerCase() },
    create: { address: frank.address.toLowerCase() },
    update: {},
  });
  const evidence = { note: "test evidence" };
  const proposal = await h.app.db.slashingProposal.create({
    data: {
      datanetId: d.id,
      contributorAddress: frank.address.toLowerCase(),
      reason: "redundant",
      evidence,
      evidenceHash: canonicalHash(evidence),
      amountWei: (10n * OPEN).toString(),
      disputeDeadline: new Date(Date.now() - 1000),
    },
  });
  // The operator loses SLASHER_ROLE (an admin's mistake, or a key rotation half done); admin calls
  // go through the timelock (the dev profile's shortcut).
  const setRole = async (fn: "revokeRole" | "grantRole") => {
    const receipt = await h.chain.asAdmin([
      {
        address: h.chain.addresses!.contracts.Staking,
        abi: stakingAbi as Abi,
        functionName: fn,
        args: [SLASHER_ROLE, h.chain.accounts.operator.address],
      },
    ]);
    assert.equal(receipt.status, "success");
  };
  await setRole("revokeRole");
  const refused = await inject("POST", `/v1/slashing-proposals/${proposal.id}/execute`, "owner");
  assert.equal(refused.statusCode, 409, refused.body);
  assert.equal(refused.json().error.code, "CHAIN_WRITE_REJECTED");
  assert.match(refused.json().error.message, /AccessControlUnauthorizedAccount/);
  const intent = await h.app.db.chainIntent.findUniqueOrThrow({
    where: { key: `staking.slash:${proposal.id}` },
  });
  assert.equal(intent.status, "pending", "a refusal is not final");
  assert.match(intent.error ?? "", /AccessControlUnauthorizedAccount/);
  assert.equal(await stakeOf(frank.address, d.chainId), 100n * OPEN);

  // The role is back: the sweeper sends it, once.
  await setRole("grantRole");
  const swept = await sweepOnce(h.app.datanets, h.app.log);
  assert.ok(swept.executed >= 1);
  assert.equal((await inject("GET", `/v1/slashing-proposals/${proposal.id}`)).json().status, "executed");
  assert.equal(await stakeOf(frank.address, d.chainId), 90n * OPEN);
  await sweepOnce(h.app.datanets, h.app.log);
  assert.equal(await stakeOf(frank.address, d.chainId), 90n * OPEN, "never twice");
});

test("a contribution whose enqueue was lost is validated after the sweeper re-enqueues it", async () => {
  const d = await newDatanet({ carol: 100n });
  const text = render(paragraph(rng, 3, 5));
  const c = await h.app.db.contribution.create({
    data: {
      datanetId: d.id,
      contributorAddress: carol.address.toLowerCase(),
      source: "rows",
      rowCount: 1,
      createdAt: new Date(Date.now() - 60_000),
      rows: {
        create: [
          {
            datanetId: d.id,
            contributorAddress: carol.address.toLowerCase(),
            ordinal: 0,
            text,
            normalizedHash: "0".repeat(64),
          },
        ],
      },
    },
  });
  const swept = await sweepOnce(h.app.datanets, h.app.log);
  assert.ok(swept.enqueued >= 1);
  const done = await validated(c.id);
  assert.equal(done.contribution.acceptedCount, 1);
});

test("versions: owner publishes, root registered on-chain, export recomputes the root, attribution.index queued", async () => {
  const d = await newDatanet({ carol: 500n, erin: 200n });
  const datanetId = d.id;
  await erinCopiesCarol(datanetId);
  const notOwner = await inject("POST", `/v1/datanets/${datanetId}/versions`, "carol");
  assert.equal(notOwner.statusCode, 403);
  const res = await inject("POST", `/v1/datanets/${datanetId}/versions`, "owner");
  assert.equal(res.statusCode, 201, res.body);
  const v = res.json();
  const accepted = await h.app.db.datanetRow.count({ where: { datanetId, status: "accepted" } });
  assert.equal(accepted, 14);
  assert.equal(v.version, 1);
  assert.equal(v.rowCount, accepted);
  assert.equal(v.contributorCount, 2, "carol and erin");
  assert.equal(v.status, "registered");
  const onChain = await client().readContract({
    address: h.chain.addresses!.contracts.DatanetRegistry,
    abi: datanetRegistryAbi,
    functionName: "getVersion",
    args: [d.chainId, 1],
  });
  assert.equal(onChain.rowsRoot, v.merkleRoot);
  assert.equal(onChain.rowCount, BigInt(accepted));

  const exp = await inject("GET", `/v1/datanets/${datanetId}/versions/1/export`);
  assert.equal(exp.statusCode, 200);
  assert.equal(exp.headers["x-merkle-root"], v.merkleRoot);
  const lines = exp.body
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l));
  assert.equal(lines.length, accepted);
  const tree = versionTree(
    lines.map((l) => ({
      position: l.position,
      rowId: BigInt(l.rowId),
      contributor: l.contributor,
      textSha256: createHash("sha256").update(l.text, "utf8").digest("hex"),
    })),
  );
  assert.equal(tree.root, v.merkleRoot, "the export alone reproduces the registered root");

  const job = await h.app.producer
    .queue("attribution")
    .getJob(jobId("attribution.index", { datanetVersionId: v.id }));
  assert.ok(job, "attribution.index was queued");
  const again = await inject("POST", `/v1/datanets/${datanetId}/versions`, "owner");
  assert.equal(again.statusCode, 409);
  assert.equal(again.json().error.code, "NO_NEW_ROWS");

  const board = (await inject("GET", `/v1/datanets/${datanetId}/leaderboard`)).json();
  assert.deepEqual(
    board.items.map((i: { address: string; rowsAccepted: number }) => [i.address, i.rowsAccepted]),
    [
      [carol.address.toLowerCase(), 12],
      [erin.address.toLowerCase(), 2],
    ],
  );
});
