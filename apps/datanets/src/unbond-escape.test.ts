// Attack (issue #14): a contributor submits redundant data and unbonds its whole stake before the
// validation worker runs. The penalty used to be sized on the *active* stake read at validation
// (0 by then): the proposal asked for nothing and was dismissed as "nothing to slash". Now it is
// sized on the stake the submission was backed by (active + unbonding at submission), and
// Staking.slash takes it from the stake still unbonding. Real chain, Postgres and service code.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { StakeRole, stakingAbi, subjectOf } from "@openledger/chain";
import { localAccounts } from "@openledger/chain/testing";
import { makeVariant, paragraph, Rng, render } from "@openledger/datanet-core";
import { testEnvironment } from "@openledger/service-kit/testing";
import { createPublicClient, decodeEventLog, http, parseAbiItem } from "viem";
import { buildDatanets, datanetsConfig } from "./app.ts";
import { type Harness, signIn, stakeOn, startHarness, unbondFrom } from "./test-support.ts";
import { validateContribution } from "./workers/validate.ts";

const { users } = localAccounts();
const [owner, carol, erin] = [users[0]!, users[1]!, users[2]!];
const OPEN = 10n ** 18n;
let h: Harness;
const auth: Record<string, { authorization: string }> = {};
const rng = new Rng(11);

before(async () => {
  // No workers: the test decides when validation runs (after the unbond).
  h = await startHarness("dn-unbond", {
    RUN_WORKERS: "false",
    DATANETS_DISPUTE_WINDOW_SECONDS: "0",
    DATANETS_SLASH_BPS: "1000",
  });
  for (const [name, u] of Object.entries({ owner, carol, erin })) auth[name] = await signIn(h, u.privateKey);
});
after(async () => {
  await h?.close();
});

const inject = (method: "GET" | "POST", url: string, who?: string, payload?: object) =>
  h.app.inject({ method, url, ...(who ? { headers: auth[who]! } : {}), ...(payload ? { payload } : {}) });
const validate = (contributionId: string) =>
  validateContribution(h.app.datanets, { contributionId }, { progress: async () => {} });
const position = (address: string, chainDatanetId: bigint) =>
  createPublicClient({ transport: http(h.chain.rpcUrl) }).readContract({
    address: h.chain.addresses!.contracts.Staking,
    abi: stakingAbi,
    functionName: "positionOf",
    args: [address as `0x${string}`, StakeRole.Contributor, subjectOf(chainDatanetId)],
  });

test("unbonding between submission and validation does not escape the slash", async () => {
  const created = await inject("POST", "/v1/datanets", "owner", {
    slug: `unbond-${Math.random().toString(16).slice(2, 10)}`,
    name: "Essays",
    type: "text",
    license: "CC-BY-4.0",
    minStakeWei: (100n * OPEN).toString(),
  });
  assert.equal(created.statusCode, 201, created.body);
  const datanetId = created.json().id as string;
  const chainId = BigInt(created.json().chainDatanetId);
  await stakeOn(h, carol.privateKey, chainId, 500n);
  await stakeOn(h, erin.privateKey, chainId, 200n);

  const originals = Array.from({ length: 12 }, () => paragraph(rng, 3, 5));
  const carolRes = await inject("POST", `/v1/datanets/${datanetId}/contributions`, "carol", {
    rows: originals.map((p) => ({ text: render(p) })),
  });
  assert.equal(carolRes.statusCode, 202, carolRes.body);
  await validate(carolRes.json().contribution.id);

  // Erin resubmits carol's essays (edited copies), then unbonds everything before validation runs.
  const copies = originals.slice(0, 10).map((p) => makeVariant(rng, p, "edit"));
  const erinRes = await inject("POST", `/v1/datanets/${datanetId}/contributions`, "erin", {
    rows: copies.map((text) => ({ text })),
  });
  assert.equal(erinRes.statusCode, 202, erinRes.body);
  await unbondFrom(h, erin.privateKey, chainId, 200n);
  assert.deepEqual(
    { ...(await position(erin.address, chainId)), unbondingEnd: 0n },
    { active: 0n, unbonding: 200n * OPEN, unbondingEnd: 0n },
  );

  const result = await validate(erinRes.json().contribution.id);
  assert.ok("slashingProposalId" in result && result.slashingProposalId, "a slashing proposal");
  const proposal = (await inject("GET", `/v1/slashing-proposals/${result.slashingProposalId}`)).json();
  assert.equal(
    proposal.amountWei,
    (20n * OPEN).toString(),
    "10% of the 200 OPEN the submission was backed by",
  );

  const executed = await inject(
    "POST",
    `/v1/slashing-proposals/${result.slashingProposalId}/execute`,
    "carol",
  );
  assert.equal(executed.statusCode, 200, executed.body);
  assert.equal(executed.json().status, "executed", "executed, not dismissed as 'nothing to slash'");
  const after = await position(erin.address, chainId);
  assert.equal(after.active, 0n);
  assert.equal(after.unbonding, 180n * OPEN, "the slash came out of the unbonding stake");
  const receipt = await createPublicClient({ transport: http(h.chain.rpcUrl) }).getTransactionReceipt({
    hash: executed.json().executedTxHash,
  });
  const slashed = receipt.logs
    .map((l) => {
      try {
        return decodeEventLog({ abi: [SLASHED], data: l.data, topics: l.topics });
      } catch {
        return undefined;
      }
    })
    .find((e) => e?.eventName === "Slashed");
  assert.equal(slashed?.args.amount, 20n * OPEN);
  assert.equal(slashed?.args.fromUnbonding, 20n * OPEN);
});

const SLASHED = parseAbiItem(
  "event Slashed(address indexed account, uint8 indexed role, bytes32 indexed subject, uint256 amount, uint256 fromUnbonding, address reporter, uint256 reporterCut, bytes32 evidenceHash)",
);

test("the service refuses to start when its dispute window is not shorter than the unbonding period", async () => {
  const env = await testEnvironment("dn-window");
  try {
    const config = datanetsConfig({
      ...env.env,
      CHAIN_RPC_URL: h.chain.rpcUrl,
      CHAIN_ADDRESSES_FILE: h.app.chain.options.addressesFile,
      CHAIN_PROFILE: "dev",
      RUN_WORKERS: "false",
      // The local deployment's unbonding period is 7 days.
      DATANETS_DISPUTE_WINDOW_SECONDS: String(7 * 86400),
    });
    await assert.rejects(buildDatanets(config), /must be shorter than Staking\.unbondingPeriod \(604800 s\)/);
    const ok = await buildDatanets({ ...config, DATANETS_DISPUTE_WINDOW_SECONDS: 7 * 86400 - 1 });
    await ok.close();
  } finally {
    await env.cleanup();
  }
});
