// scripts/demo-cli.sh against the real platform (chain, Postgres, Redis, the five services as
// processes): the story told with `openledger` commands only, a fine-tune included. Then, independently
// of the CLI, through the settlement API and the chain: every recipient claimed exactly its ledger
// earnings, the claims add up to the fees (the inferences' and the training's), the consumer's escrow
// paid exactly the inferences' fees and the builder's the training fee, and the contributors were paid.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { createChainPublicClient, rewardDistributorAbi } from "@openledger/chain";
import { type LaunchedPlatform, launchPlatform } from "./lib/launch.ts";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
let p: LaunchedPlatform;
let out: string;
let run: { code: number | null; output: string };

type Json = Record<string, unknown>;
const read = async (name: string) =>
  JSON.parse(await readFile(path.join(out, `${name}.json`), "utf8")) as Json;

before(async () => {
  out = await mkdtemp(path.join(tmpdir(), "openledger-demo-cli-"));
  p = await launchPlatform();
  run = await new Promise((resolve) => {
    const child = spawn("bash", [path.join(ROOT, "scripts", "demo-cli.sh")], {
      cwd: ROOT,
      env: { ...process.env, ...p.env, DEMO_OUT: out, RUN_ID: "clitest" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (d: Buffer) => {
      output += d.toString();
    });
    child.stderr.on("data", (d: Buffer) => {
      output += d.toString();
    });
    child.on("exit", (code) => resolve({ code, output }));
  });
});
after(async () => {
  await p?.stop();
  await rm(out, { recursive: true, force: true });
});

test("the demo runs with openledger commands only and exits 0", () => {
  assert.equal(run.code, 0, run.output.slice(-6000));
  assert.match(run.output, /== Done/);
});

test("claimed amounts equal the ledger, sum to the fees, and the escrow paid exactly the fees", async () => {
  assert.equal(run.code, 0, "the demo failed (see the first test)");
  const pub = createChainPublicClient({ rpcUrl: p.platform.rpcUrl, chainId: p.platform.addresses.chainId });
  const distributor = p.platform.addresses.contracts.RewardDistributor;
  const settlement = async (url: string) =>
    (await (await fetch(`${p.platform.settlementUrl}${url}`)).json()) as Json;

  // The fees of the four inferences and of the fine-tune's training, from the settlement service.
  const inferences = await Promise.all(
    ["chat1", "chat2", "chat3", "chat4"].map(async (f) => String((await read(f)).inferenceId)),
  );
  const training = (await read("finetune-settled")).settlement as Json;
  assert.equal(training.feeWei, ((await read("finetune")).fee as Json).fee_wei, "the job's fee was settled");
  let fees = 0n;
  const recipients = new Set<string>();
  for (const id of [...inferences, String(training.inferenceId)]) {
    const s = await settlement(`/v1/inferences/${id}/settlement`);
    fees += BigInt(s.feeWei as string);
    for (const e of s.entries as { account: string; amountWei: string }[])
      if (BigInt(e.amountWei) > 0n) recipients.add(e.account.split(":")[1]!.toLowerCase());
  }
  assert.ok(fees > 0n);

  // Every recipient of this run claimed, through the CLI, exactly what the ledger says it earned.
  const claims = new Map<string, bigint>();
  for (const f of await readdir(out)) {
    if (!f.startsWith("claim-")) continue;
    const label = f.slice("claim-".length, -".json".length);
    const claim = await read(`claim-${label}`);
    const earnings = await read(`earnings-${label}`);
    const address = String(earnings.address).toLowerCase();
    const ledger = await settlement(`/v1/accounts/${address}/ledger`);
    const earned = (ledger.accounts as { account: string; balanceWei: string }[])
      .filter((a) => !a.account.startsWith("consumer:"))
      .reduce((t, a) => t + BigInt(a.balanceWei), 0n);
    const onChain = await pub.readContract({
      address: distributor,
      abi: rewardDistributorAbi,
      functionName: "claimed",
      args: [address as `0x${string}`],
    });
    assert.equal(onChain, earned, `${label}: claimed on chain = its ledger earnings`);
    assert.equal(
      BigInt(claim.claimedWei as string),
      earned,
      `${label}: the CLI's claim = its ledger earnings`,
    );
    assert.equal(BigInt(earnings.totalWei as string), earned, `${label}: openledger earnings = the ledger`);
    claims.set(address, earned);
  }
  for (const r of recipients) assert.ok(claims.has(r), `recipient ${r} claimed`);
  assert.equal(
    [...claims.values()].reduce((t, v) => t + v, 0n),
    fees,
    "the claims add up to the fees",
  );

  // The contributors whose rows drove the classifier were paid (influence), and the duplicate was refused.
  const alice = String((await read("account-alice")).address).toLowerCase();
  assert.ok((claims.get(alice) ?? 0n) > 0n, "alice earned from the small model's answers");
  const bob = (await read("contribute-bob")) as unknown as { rejected: { rejectReason: string }[] }[];
  assert.deepEqual(
    bob[0]!.rejected.map((r) => r.rejectReason),
    ["exact_duplicate"],
  );

  // The consumer's escrow paid exactly the inferences' fees (20 OPEN deposited), the builder's the training.
  const consumer = String((await read("account-consumer")).address).toLowerCase();
  const billing = await settlement(`/v1/accounts/${consumer}/billing`);
  assert.equal(BigInt(billing.chargedWei as string), fees - BigInt(training.feeWei as string));
  const builderAddress = String((await read("account-builder")).address).toLowerCase();
  const builderBilling = await settlement(`/v1/accounts/${builderAddress}/billing`);
  assert.equal(BigInt(builderBilling.chargedWei as string), BigInt(training.feeWei as string));
});
