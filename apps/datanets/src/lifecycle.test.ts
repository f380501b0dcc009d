import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { after, before, test } from "node:test";
import { datanetRegistryAbi, StakeRole, stakingAbi, subjectOf } from "@openledger/chain";
import { localAccounts } from "@openledger/chain/testing";
import { canonicalHash, makeVariant, paragraph, Rng, render } from "@openledger/datanet-core";
import { jobId } from "@openledger/queue";
import { createPublicClient, http } from "viem";
import { contextOf } from "./context.ts";
import { eventually, type Harness, signIn, stakeOn, startHarness } from "./test-support.ts";
import { versionTree } from "./versions.ts";
import { sweepOnce } from "./workers/sweeper.ts";
import { validateContribution } from "./workers/validate.ts";

const { users } = localAccounts();
const [owner, carol, erin, frank] = [users[0]!, users[1]!, users[2]!, users[3]!];
const OPEN = 10n ** 18n;
let h: Harness;
let datanetId: string;
let chainDatanetId: bigint;
const auth: Record<string, { authorization: string }> = {};
const rng = new Rng(7);
const carolParas = Array.from({ length: 12 }, () => paragraph(rng, 3, 5));

before(async () => {
  h = await startHarness("dn-life", { DATANETS_DISPUTE_WINDOW_SECONDS: "3600", DATANETS_SLASH_BPS: "1000" });
  for (const [name, u] of Object.entries({ owner, carol, erin, frank }))
    auth[name] = await signIn(h, u.privateKey);
  const res = await h.app.inject({
    method: "POST",
    url: "/v1/datanets",
    headers: auth.owner!,
    payload: {
      slug: "essays",
      name: "Essays",
      type: "text",
      license: "CC-BY-4.0",
      minStakeWei: (100n * OPEN).toString(),
    },
  });
  assert.equal(res.statusCode, 201, res.body);
  datanetId = res.json().id;
  chainDatanetId = BigInt(res.json().chainDatanetId);
  await stakeOn(h, carol.privateKey, chainDatanetId, 500n);
  await stakeOn(h, erin.privateKey, chainDatanetId, 200n);
  await stakeOn(h, frank.privateKey, chainDatanetId, 100n);
});
after(async () => {
  await h?.close();
});

const inject = (method: "GET" | "POST", url: string, who?: string, payload?: object) =>
  h.app.inject({ method, url, ...(who ? { headers: auth[who]! } : {}), ...(payload ? { payload } : {}) });
const submit = (who: string, texts: string[]) =>
  inject("POST", `/v1/datanets/${datanetId}/contributions`, who, { rows: texts.map((text) => ({ text })) });
const validated = (id: string) =>
  eventually(async () => {
    const r = (await inject("GET", `/v1/contributions/${id}`)).json();
    return r.contribution.status === "validated" ? r : null;
  }, `contribution ${id} validated`);
const client = () => createPublicClient({ transport: http(h.chain.rpcUrl) });
const stakeOf = (addr: string) =>
  client().readContract({
    address: h.chain.addresses!.contracts.Staking,
    abi: stakingAbi,
    functionName: "activeStake",
    args: [addr as `0x${string}`, StakeRole.Contributor, subjectOf(chainDatanetId)],
  });

let erinProposalId: string;

test("lifecycle: contribute, validate with progress, redundant submission -> proposal with evidence", async () => {
  const res = await submit("carol", carolParas.map(render));
  assert.equal(res.statusCode, 202, res.body);
  const done = await validated(res.json().contribution.id);
  assert.equal(done.contribution.acceptedCount, 12);
  assert.equal(done.job.id, jobId("datanet.validate", { contributionId: res.json().contribution.id }));
  assert.deepEqual(done.job.progress, { processed: 12, total: 12 });
  assert.deepEqual(done.slashingProposalIds, []);
  // Redelivery of the job is a no-op: nothing is validated or counted twice.
  const again = await validateContribution(
    contextOf(h.app),
    { contributionId: res.json().contribution.id },
    { progress: async () => {} },
  );
  assert.deepEqual(again, { skipped: "already validated" });
  assert.equal(await h.app.db.datanetRow.count({ where: { datanetId, status: "accepted" } }), 12);

  // Erin resubmits carol's essays with small edits, shuffles and case noise, plus two of her own.
  const kinds = ["edit", "shuffle", "case_whitespace", "shuffle_edit_case"] as const;
  const copies = carolParas.slice(0, 10).map((p, i) => makeVariant(rng, p, kinds[i % 4]!));
  const erinRes = await submit("erin", [
    ...copies,
    render(paragraph(rng, 3, 5)),
    render(paragraph(rng, 3, 5)),
  ]);
  assert.equal(erinRes.statusCode, 202, erinRes.body);
  const erinDone = await validated(erinRes.json().contribution.id);
  assert.equal(erinDone.contribution.acceptedCount, 2);
  assert.equal(erinDone.slashingProposalIds.length, 1);
  erinProposalId = erinDone.slashingProposalIds[0];

  const p = (await inject("GET", `/v1/slashing-proposals/${erinProposalId}`)).json();
  assert.equal(p.status, "proposed");
  assert.equal(p.contributorAddress, erin.address.toLowerCase());
  assert.equal(p.reason, "redundant");
  assert.equal(p.amountWei, (20n * OPEN).toString(), "10% of erin's 200 OPEN stake");
  assert.equal(p.evidence.rows.length, 10);
  assert.equal(canonicalHash(p.evidence), p.evidenceHash, "the evidence hash is recomputable");
  const carolRowIds = new Set(
    (await h.app.db.datanetRow.findMany({ where: { contributorAddress: carol.address.toLowerCase() } })).map(
      (r) => r.id.toString(),
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
  const early = await inject("POST", `/v1/slashing-proposals/${erinProposalId}/execute`, "frank");
  assert.equal(early.statusCode, 409);
  assert.equal(early.json().error.code, "NOT_EXECUTABLE");
  const notMine = await inject("POST", `/v1/slashing-proposals/${erinProposalId}/dispute`, "frank", {
    reason: "no",
  });
  assert.equal(notMine.statusCode, 403);
  assert.equal(notMine.json().error.code, "NOT_ACCUSED");
  const disputed = await inject("POST", `/v1/slashing-proposals/${erinProposalId}/dispute`, "erin", {
    reason: "these are my own words",
  });
  assert.equal(disputed.statusCode, 200, disputed.body);
  assert.equal(disputed.json().status, "disputed");
  const byErin = await inject("POST", `/v1/slashing-proposals/${erinProposalId}/resolve`, "erin", {
    decision: "dismiss",
  });
  assert.equal(byErin.statusCode, 403);
  const upheld = await inject("POST", `/v1/slashing-proposals/${erinProposalId}/resolve`, "owner", {
    decision: "uphold",
    note: "10 of 12 rows copy existing essays",
  });
  assert.equal(upheld.json().status, "upheld");
  assert.equal(await stakeOf(erin.address), 200n * OPEN);
  const executed = await inject("POST", `/v1/slashing-proposals/${erinProposalId}/execute`, "frank");
  assert.equal(executed.statusCode, 200, executed.body);
  assert.equal(executed.json().status, "executed");
  assert.match(executed.json().executedTxHash, /^0x[0-9a-f]{64}$/);
  assert.equal(await stakeOf(erin.address), 180n * OPEN, "20 OPEN slashed on-chain");
  assert.deepEqual(
    executed.json().events.map((e: { toStatus: string }) => e.toStatus),
    ["proposed", "disputed", "upheld", "executed"],
  );
  // Executing again neither fails nor slashes twice.
  const again = await inject("POST", `/v1/slashing-proposals/${erinProposalId}/execute`, "frank");
  assert.equal(again.json().status, "executed");
  assert.equal(await stakeOf(erin.address), 180n * OPEN);

  const me = (await inject("GET", "/v1/me", "erin")).json();
  assert.equal(me.rowsAccepted, 2);
  assert.equal(me.rowsRejected, 10);
  assert.equal(me.acceptanceRatePpm, 166_666);
  assert.equal(me.stakes[0].activeStakeWei, (180n * OPEN).toString());
  assert.equal(me.slashes[0].status, "executed");
});

test("undisputed proposals are executed by the sweeper after the window; late disputes are refused", async () => {
  // Frank submits only copies: a second proposal.
  const res = await submit(
    "frank",
    carolParas.slice(0, 10).map((p) => makeVariant(rng, p, "edit")),
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
    sweepOnce(contextOf(h.app), h.app.producer, h.app.log),
    inject("POST", `/v1/slashing-proposals/${id}/execute`, "carol"),
    inject("POST", `/v1/slashing-proposals/${id}/execute`, "owner"),
  ]);
  assert.equal(swept.executed, 1);
  assert.equal(r1.statusCode, 200, r1.body);
  assert.equal(r2.statusCode, 200, r2.body);
  const p = (await inject("GET", `/v1/slashing-proposals/${id}`)).json();
  assert.equal(p.status, "executed");
  assert.equal(await stakeOf(frank.address), 90n * OPEN, "slashed once: 10% of 100 OPEN");
  assert.equal(
    BigInt(await h.chain.rpc<string>("eth_getTransactionCount", [operator, "latest"])) - BigInt(nonceBefore),
    1n,
    "one transaction from the operator",
  );
  assert.deepEqual(
    p.events.map((e: { toStatus: string }) => e.toStatus),
    ["proposed", "executed"],
  );
  const listed = (await inject("GET", `/v1/datanets/${datanetId}/slashing-proposals?status=executed`)).json();
  assert.equal(listed.items.length, 2);
});

test("a contribution whose enqueue was lost is validated after the sweeper re-enqueues it", async () => {
  const text = render(paragraph(rng, 3, 5));
  const c = await h.app.db.contribution.create({
    data: {
      datanetId,
      contributorAddress: carol.address.toLowerCase(),
      source: "rows",
      rowCount: 1,
      createdAt: new Date(Date.now() - 60_000),
      rows: {
        create: [
          {
            datanetId,
            contributorAddress: carol.address.toLowerCase(),
            ordinal: 0,
            text,
            normalizedHash: "0".repeat(64),
          },
        ],
      },
    },
  });
  const swept = await sweepOnce(contextOf(h.app), h.app.producer, h.app.log);
  assert.ok(swept.enqueued >= 1);
  const done = await validated(c.id);
  assert.equal(done.contribution.acceptedCount, 1);
});

test("versions: owner publishes, root registered on-chain, export recomputes the root, attribution.index queued", async () => {
  const notOwner = await inject("POST", `/v1/datanets/${datanetId}/versions`, "carol");
  assert.equal(notOwner.statusCode, 403);
  const res = await inject("POST", `/v1/datanets/${datanetId}/versions`, "owner");
  assert.equal(res.statusCode, 201, res.body);
  const v = res.json();
  const accepted = await h.app.db.datanetRow.count({ where: { datanetId, status: "accepted" } });
  assert.equal(v.version, 1);
  assert.equal(v.rowCount, accepted);
  assert.equal(v.contributorCount, 2, "carol and erin");
  assert.equal(v.status, "registered");
  const onChain = await client().readContract({
    address: h.chain.addresses!.contracts.DatanetRegistry,
    abi: datanetRegistryAbi,
    functionName: "getVersion",
    args: [chainDatanetId, 1],
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
      [carol.address.toLowerCase(), 13],
      [erin.address.toLowerCase(), 2],
      [frank.address.toLowerCase(), 0],
    ],
  );
});
