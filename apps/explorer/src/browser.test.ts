// The explorer in a real browser: the whole platform (scripts/lib/launch.ts) plays the demo story
// (scripts/lib/story.ts), then Debian's headless Chromium (playwright-core) opens every page of the
// explorer and checks that it shows the APIs' figures: the overview's totals, a datanet's versions,
// rejected rows and leaderboard, an inference's highlighted spans (= the attribution result) and its
// fee journal, the small model's influence rows, a model's prices and usage, the epoch's reward flow
// (= the ledger's journals, to the wei, and the root on chain), and an account whose Claim button,
// signing with an injected EIP-1193 wallet, claims on chain. A screenshot of each page is saved under
// .data/screenshots/ (the README shows two of them, copied to docs/images/).
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import {
  createChainPublicClient,
  createChainWalletClient,
  openTokenAbi,
  rewardDistributorAbi,
} from "@openledger/chain";
import { localAccounts } from "@openledger/chain/dev";
import { devApiKeyRequest } from "@openledger/chain/testing";
import type { App } from "@openledger/service-kit";
import { type BrowserContext, chromium, type Page } from "playwright-core";
import { formatUnits, type Hex } from "viem";
import { ALICE_ROWS, BOB_ROWS } from "../../../scripts/lib/corpus.ts";
import { type LaunchedPlatform, launchPlatform, SERVICE_NAMES } from "../../../scripts/lib/launch.ts";
import { runStory, type StoryResult } from "../../../scripts/lib/story.ts";
import { buildExplorer, explorerConfig } from "./app.ts";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
const SCREENSHOTS = path.join(ROOT, ".data", "screenshots");
/** Debian's chromium (scripts/ensure-services.sh installs it when missing). */
const CHROMIUM = "/usr/bin/chromium";

let p: LaunchedPlatform;
let story: StoryResult;
let explorer: App;
let base: string;
let context: BrowserContext;
let page: Page;
let profileDir: string;
const lines: string[] = [];
/** Console errors and uncaught exceptions of the pages: there must be none. */
const pageErrors: string[] = [];
/** The contributor whose claim the story leaves to the explorer's Claim button. */
const claimer = localAccounts().users[1]!; // alice in the story

before(async () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: run scripts/ensure-services.sh (apt chromium)`);
  p = await launchPlatform();
  try {
    story = await runStory(p.platform, {
      runId: "explorer",
      log: (l) => lines.push(l),
      leaveUnclaimed: [claimer.address],
      // The pages are checked against the inferences' journals; the fine-tuning loop (its training
      // settlement, a second datanet) is the e2e's.
      languageModel: false,
    });
  } catch (err) {
    process.stdout.write(`${lines.join("\n")}\n`);
    for (const n of SERVICE_NAMES) process.stdout.write(`--- ${n}\n${p.output(n).slice(-2000)}\n`);
    throw err;
  }
  explorer = await buildExplorer(
    explorerConfig({
      LOG_LEVEL: "warn",
      CHAIN_PROFILE: "dev",
      CHAIN_RPC_URL: p.platform.rpcUrl,
      CHAIN_ADDRESSES_FILE: p.env.CHAIN_ADDRESSES_FILE,
      EXPLORER_DATANETS_URL: p.platform.datanetsUrl,
      EXPLORER_ATTRIBUTION_URL: p.platform.attributionUrl,
      EXPLORER_GATEWAY_URL: p.platform.gatewayUrl,
      EXPLORER_SETTLEMENT_URL: p.platform.settlementUrl,
    }),
  );
  base = await explorer.listen({ port: 0, host: "127.0.0.1" });

  profileDir = await mkdtemp(path.join(tmpdir(), "explorer-chromium-"));
  await mkdir(SCREENSHOTS, { recursive: true });
  context = await chromium.launchPersistentContext(profileDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--no-first-run",
      "--disable-sync",
    ],
    viewport: { width: 1280, height: 900 },
  });
  // The injected wallet: an EIP-1193 provider whose requests the test answers; it signs with the
  // claimer's key (viem, locally) and reads through the chain's RPC.
  const wallet = createChainWalletClient({
    rpcUrl: p.platform.rpcUrl,
    chainId: p.platform.addresses.chainId,
    privateKey: claimer.privateKey,
  });
  await context.exposeBinding("__wallet", async (_source, method: string, params: unknown[]) => {
    if (method === "eth_requestAccounts" || method === "eth_accounts") return [claimer.address];
    if (method === "eth_sendTransaction") {
      const tx = params[0] as { to: Hex; data?: Hex; value?: Hex; gas?: Hex };
      return wallet.sendTransaction({
        to: tx.to,
        data: tx.data,
        value: tx.value ? BigInt(tx.value) : undefined,
        gas: tx.gas ? BigInt(tx.gas) : undefined,
      } as never);
    }
    const res = await fetch(p.platform.rpcUrl, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ jsonrpc: "2.0", id: 1, method, params }),
    });
    const body = (await res.json()) as { result?: unknown; error?: { message: string } };
    if (body.error) throw new Error(body.error.message);
    return body.result;
  });
  // A string, not a function: tsx compiles this file with esbuild's keepNames, whose `__name(...)`
  // wrappers do not exist in the page. The functions the test evaluates in the page need the same
  // helper, so the init script defines it (a no-op) first.
  await context.addInitScript(`
    window.__name = (f) => f;
    window.ethereum = {
      request: ({ method, params }) => window.__wallet(method, params ?? []),
      on: () => undefined,
      removeListener: () => undefined,
    };
  `);
  page = context.pages()[0] ?? (await context.newPage());
  page.on("console", (m) => {
    if (m.type() === "error") pageErrors.push(`${page.url()}: ${m.text()}`);
  });
  page.on("pageerror", (e) => pageErrors.push(`${page.url()}: ${e.message}`));
});

after(async () => {
  await context?.close();
  await explorer?.close();
  await p?.stop();
  if (profileDir) await rm(profileDir, { recursive: true, force: true });
});

const api = async <T>(url: string): Promise<T> => {
  const res = await fetch(url);
  assert.equal(res.status, 200, `${url}: ${res.status}`);
  return (await res.json()) as T;
};
const settlementApi = <T>(rest: string) => api<T>(`${p.platform.settlementUrl}/v1/${rest}`);
const datanetsApi = <T>(rest: string) => api<T>(`${p.platform.datanetsUrl}/v1/${rest}`);
const attributionApi = <T>(rest: string) => api<T>(`${p.platform.attributionUrl}/v1/${rest}`);
const gatewayApi = <T>(rest: string) => api<T>(`${p.platform.gatewayUrl}/v1/${rest}`);

/** Exact OPEN as the pages print it (18 decimals, thousands grouped), from viem, not the page's code. */
const open = (wei: string | bigint) => {
  const [int = "", frac] = formatUnits(BigInt(wei), 18).split(".");
  return `${int.replace(/\B(?=(\d{3})+(?!\d))/g, ",")}${frac ? `.${frac}` : ""}`;
};

/** An Amount's exact figure: its wei (data-wei) and the OPEN it prints. */
async function amount(testId: string, scope: Page | ReturnType<Page["locator"]> = page) {
  const el = scope.getByTestId(testId);
  return { wei: await el.getAttribute("data-wei"), text: (await el.locator(".open").textContent()) ?? "" };
}
async function expectAmount(testId: string, wei: string | bigint) {
  assert.deepEqual(await amount(testId), { wei: BigInt(wei).toString(), text: open(wei) }, testId);
}

async function visit(url: string, ready: string) {
  await page.goto(`${base}${url}`);
  await page.getByTestId(ready).first().waitFor({ timeout: 30_000 });
}
async function shoot(name: string) {
  // No spinner left: every section has answered.
  // (Page-side conditions are strings: this file is typed without the DOM's types.)
  await page.waitForFunction(
    `![...document.querySelectorAll('[role="status"]')].some((e) => e.textContent.startsWith("Loading"))`,
    null,
    { timeout: 30_000 },
  );
  await page.screenshot({ path: path.join(SCREENSHOTS, `${name}.png`), fullPage: true });
}

/**
 * The text of a HighlightedText, cut into its pieces: the page must show `text` verbatim, and each
 * expected span highlighted exactly over its characters (UTF-16 offsets), coloured by one of its
 * contributors; nothing else highlighted.
 */
async function expectHighlights(
  testId: string,
  text: string,
  spans: readonly { start: number; end: number; contributors: readonly string[] }[],
) {
  const pieces: { text: string; spans: number[]; contributor: string }[] = await page
    .getByTestId(testId)
    .evaluate((el) =>
      [...el.children].map((c) => ({
        text: c.textContent ?? "",
        spans: c.tagName === "BUTTON" ? (c.getAttribute("data-spans") ?? "").split(" ").map(Number) : [],
        contributor: c.getAttribute("data-contributor") ?? "",
      })),
    );
  assert.equal(pieces.map((x) => x.text).join(""), text, `${testId} shows the text verbatim`);
  const covered = new Map<number, { start: number; end: number }>();
  let at = 0;
  for (const piece of pieces) {
    for (const k of piece.spans) {
      const c = covered.get(k);
      if (c) {
        assert.equal(c.end, at, `span ${k} is highlighted in one piece after another`);
        c.end = at + piece.text.length;
      } else covered.set(k, { start: at, end: at + piece.text.length });
    }
    if (piece.spans.length > 0)
      assert.ok(
        piece.spans.some((k) => spans[k]?.contributors.includes(piece.contributor)),
        `"${piece.text}" is coloured by one of its contributors`,
      );
    at += piece.text.length;
  }
  assert.deepEqual(
    [...covered.entries()].sort((a, b) => a[0] - b[0]).map(([, r]) => r),
    spans.map((s) => ({ start: s.start, end: s.end })),
    "every attributed span is highlighted, exactly over its characters",
  );
}

/** A legend of contributors: each with its weight (ppm), as the attribution answered. */
async function expectLegend(testId: string, weights: readonly { contributorAddress: string; ppm: number }[]) {
  const legend = await page
    .getByTestId(testId)
    .locator("li")
    .evaluateAll((els) =>
      els.map((e) => [e.getAttribute("data-contributor"), Number(e.getAttribute("data-ppm"))]),
    );
  assert.deepEqual(legend.sort(), weights.map((w) => [w.contributorAddress, w.ppm]).sort(), testId);
}

test("overview: the live totals are the services' figures", async () => {
  await visit("/", "datanets-table");
  const dStats = await datanetsApi<Record<string, number>>("stats");
  const sStats = await settlementApi<{ settlements: number; feesWei: string; confirmedEpochs: number }>(
    "stats",
  );
  const catalog = await gatewayApi<{ items: { kind: string }[] }>("catalog");
  const stat = async (id: string) =>
    (await page.getByTestId(id).locator(".stat-value").textContent())?.trim();
  await page.waitForFunction(
    `!document.querySelector('[data-testid="total-inferences"]').textContent.includes("…")`,
  );
  assert.equal(await stat("total-datanets"), String(dStats.datanets));
  assert.equal(await stat("total-contributors"), String(dStats.contributors));
  assert.equal(await stat("total-rows"), String(dStats.rowsAccepted));
  assert.equal(await stat("total-models"), String(catalog.items.filter((m) => m.kind !== "base").length));
  assert.equal(await stat("total-inferences"), String(sStats.settlements));
  assert.equal(sStats.settlements, story.inferences.length);
  await expectAmount("total-fees", sStats.feesWei);
  assert.equal(BigInt(sStats.feesWei), story.totalFeesWei);
  assert.equal(await stat("total-epochs"), String(sStats.confirmedEpochs));
  await shoot("overview");
});

test("datanet: versions, rejected rows with their reasons, slashing and the leaderboard", async () => {
  const id = story.datanetId!;
  await visit(`/datanets/${id}`, "versions-table");
  const versions = await datanetsApi<{
    items: { id: string; version: number; merkleRoot: string; rowCount: number; status: string }[];
  }>(`datanets/${id}/versions`);
  assert.ok(versions.items.length > 0);
  for (const v of versions.items) {
    const row = page.locator(`[data-testid="versions-table"] tr[data-version="${v.version}"]`);
    assert.equal(await row.locator("code.hash").first().textContent(), v.merkleRoot);
    assert.equal((await row.locator("td.num").first().textContent())?.trim(), String(v.rowCount));
  }
  // The leaderboard's earnings are settlement's, to the wei.
  await page.getByTestId("leaderboard-table").waitFor();
  const earned = await settlementApi<{ items: { address: string; earnedWei: string }[] }>(
    `datanets/${id}/earnings`,
  );
  assert.ok(earned.items.length > 0, "contributors of this datanet earned");
  for (const e of earned.items) {
    const cell = page.locator(`[data-testid="leaderboard-table"] tr[data-address="${e.address}"] .amount`);
    assert.equal(await cell.getAttribute("data-wei"), e.earnedWei, e.address);
    assert.equal(await cell.locator(".open").textContent(), open(e.earnedWei));
  }
  // Rejected rows and their reasons (bob's exact copy of alice's row, the near duplicate).
  const contributions = await datanetsApi<{ items: { id: string; rejectedCount: number }[] }>(
    `datanets/${id}/contributions?limit=200`,
  );
  const withRejects = contributions.items.filter((c) => c.rejectedCount > 0);
  assert.ok(withRejects.length > 0, "the story has rejected rows");
  for (const c of withRejects) {
    await page.locator(`tr[data-contribution="${c.id}"] button`).click();
    const rows = await datanetsApi<{ items: { rejectReason: string }[] }>(
      `contributions/${c.id}/rows?limit=200&status=rejected`,
    );
    const shown = page.getByTestId(`rejected-${c.id}`).locator("li");
    await shown.first().waitFor();
    assert.deepEqual(
      await shown.evaluateAll((els) => els.map((e) => e.getAttribute("data-reason"))),
      rows.items.map((r) => r.rejectReason),
    );
  }
  const proposals = await datanetsApi<{ items: { id: string; status: string }[] }>(
    `datanets/${id}/slashing-proposals`,
  );
  for (const pr of proposals.items) {
    const row = page.locator(`tr[data-proposal="${pr.id}"]`);
    assert.match((await row.textContent()) ?? "", new RegExp(pr.status));
  }
  // "Trace a text" against the latest indexed version: the highlights are POST /v1/attribute's spans.
  // Non-ASCII characters before the rows' text: the service answers byte offsets, the page shows
  // characters.
  const latest = versions.items
    .filter((v) => v.status === "indexed")
    .sort((x, y) => y.version - x.version)[0];
  assert.ok(latest?.id, "an indexed version");
  const text = `Déjà vu — “${ALICE_ROWS[0]!.text}” et ${BOB_ROWS[0]!.text.slice(0, 60)} ✓`;
  // A trace costs the attribution service CPU: the user gives its own gateway API key.
  const keyRes = await fetch(`${p.platform.gatewayUrl}/v1/api-keys`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(await devApiKeyRequest(claimer.address, p.platform.addresses.chainId, "explorer")),
  });
  assert.equal(keyRes.status, 201);
  const apiKey = ((await keyRes.json()) as { key: string }).key;
  const res = await fetch(`${p.platform.attributionUrl}/v1/attribute`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${apiKey}` },
    body: JSON.stringify({ text, datanetVersionId: latest.id }),
  });
  assert.equal(res.status, 200);
  const attributed = (await res.json()) as {
    spans: { start: number; end: number; rows: { contributorAddress: string }[] }[];
    contributors: { contributorAddress: string; ppm: number }[];
  };
  assert.ok(attributed.spans.length > 0, "the rows' text is found");
  const bytes = Buffer.from(text, "utf8");
  const chars = (byteOffset: number) => bytes.subarray(0, byteOffset).toString("utf8").length;
  await page.locator("#trace-text").fill(text);
  await page.locator("#trace-key").fill(apiKey);
  await page.locator("#trace-key").press("Enter");
  await page.getByTestId("attribute-answer").waitFor();
  await expectHighlights(
    "attribute-answer",
    text,
    attributed.spans.map((sp) => ({
      start: chars(sp.start),
      end: chars(sp.end),
      contributors: sp.rows.map((r) => r.contributorAddress),
    })),
  );
  await expectLegend("attribute-legend", attributed.contributors);
  await shoot("datanet");
});

interface Trace {
  output: string;
  method: string | null;
  spans: { start: number; end: number; contributors: string[]; rows: { rowId: string }[] }[];
  weights: { contributorAddress: string; ppm: number }[];
  influence: {
    topHelpful: { rowId: string; influence: string }[];
    topHarmful: { rowId: string; influence: string }[];
  } | null;
}

test("inference trace: the highlighted spans are the attribution result; the fee journal is the ledger's", async () => {
  const traces = await Promise.all(
    story.inferences.map(async (i) => ({ i, t: await attributionApi<Trace>(`inferences/${i.id}/trace`) })),
  );
  // The adapter's inferences are attributed by spans (the small model's by influence). Its answers
  // may or may not repeat the rows; the page must show whatever the signed result holds.
  const spanned =
    traces.find((x) => x.t.method === "span" && x.t.spans.length > 0) ??
    traces.find((x) => x.t.method === "span");
  assert.ok(spanned, "an inference attributed by spans");
  const { i: inf, t: trace } = spanned;
  await visit(`/inferences/${inf.id}`, "trace-answer");
  await expectHighlights("trace-answer", trace.output, trace.spans);
  if (trace.spans.length === 0) await page.getByTestId("no-spans").waitFor();
  else {
    // Keyboard: a highlight is a button; Enter shows the span's source rows.
    const first = page.locator('[data-testid="trace-answer"] button').first();
    await first.focus();
    await page.keyboard.press("Enter");
    const k = Number(((await first.getAttribute("data-spans")) ?? "0").split(" ")[0]);
    const rowIds = await page
      .getByTestId("span-rows")
      .locator("li")
      .evaluateAll((els) => els.map((e) => e.querySelector(".muted")?.textContent ?? ""));
    assert.deepEqual(
      rowIds.map((t) => /row (\S+)/.exec(t)?.[1]),
      trace.spans[k]!.rows.map((r) => r.rowId),
    );
  }
  // Legend = the attribution weights.
  if (trace.weights.length > 0) await expectLegend("trace-legend", trace.weights);
  // The fee: the journal of this inference to the wei, as the story computed it and settlement stored it.
  await page.getByTestId("fee-table").waitFor();
  await expectAmount("fee-total", inf.feeWei);
  const shown = await page
    .getByTestId("fee-table")
    .locator("tr[data-account]")
    .evaluateAll((els) =>
      els.map((e) => [e.getAttribute("data-account"), e.querySelector("td.num code")?.textContent]),
    );
  assert.deepEqual(shown.sort(), inf.entries.map((e) => [e.account, e.amountWei.toString()]).sort());
  assert.match((await page.getByTestId("fee-balanced").textContent()) ?? "", /✓/);
  await shoot("inference");

  // The small model's inference: its influence rows, as signed.
  const small = traces.find((x) => x.t.influence !== null);
  assert.ok(small, "an inference of the small model");
  await visit(`/inferences/${small.i.id}`, "influence-table");
  const rows = await page
    .getByTestId("influence-table")
    .locator("tr[data-row]")
    .evaluateAll((els) =>
      els.map((e) => [e.getAttribute("data-row"), e.querySelector("td.num code")?.textContent]),
    );
  const influ = small.t.influence!;
  assert.deepEqual(
    rows,
    [...influ.topHelpful, ...influ.topHarmful].map((r) => [r.rowId, r.influence]),
  );
  await shoot("inference-small-model");
});

test("model: prices and usage are the gateway's and the ledger's", async () => {
  const id = story.inferences[0]!.model;
  await visit(`/models/${encodeURIComponent(id)}`, "lineage");
  const m = await gatewayApi<{ pricePer1kInputWei: string; pricePer1kOutputWei: string }>(
    `catalog/${encodeURIComponent(id)}`,
  );
  await expectAmount("price-in", m.pricePer1kInputWei);
  await expectAmount("price-out", m.pricePer1kOutputWei);
  const usage = await settlementApi<{ inferences: number; feesWei: string }>(
    `models/${encodeURIComponent(id)}/usage`,
  );
  await page.getByTestId("usage-fees").waitFor();
  await expectAmount("usage-fees", usage.feesWei);
  const fees = story.inferences.filter((i) => i.model === id).reduce((t, i) => t + i.feeWei, 0n);
  assert.equal(BigInt(usage.feesWei), fees, "the story's fees for this model");
  await shoot("model");
});

test("epoch: the reward-flow totals are the ledger's journals to the wei; root and tx are the chain's", async () => {
  const id = story.epochId!;
  await visit(`/epochs/${id}`, "flow-table");
  // The ledger: this run's journals (every inference's entries, as settled), summed by role.
  const byRole = new Map<string, bigint>();
  for (const inf of story.inferences)
    for (const e of inf.entries) {
      const role = e.account.split(":")[0]!;
      if (role !== "consumer") byRole.set(role, (byRole.get(role) ?? 0n) + e.amountWei);
    }
  for (const role of ["treasury", "validator", "model_owner", "contributor"])
    await expectAmount(`flow-${role}`, byRole.get(role) ?? 0n);
  await expectAmount("flow-fees", story.totalFeesWei);
  // The Sankey's labels (SVG text) print the same exact figures.
  const labels = await page.getByTestId("flow-chart").locator("text").allTextContents();
  assert.ok(labels.includes(`Fees: ${open(story.totalFeesWei)}`), labels.join(" | "));
  assert.ok(labels.includes(`Contributors: ${open(byRole.get("contributor")!)}`), labels.join(" | "));
  const pub = createChainPublicClient({ rpcUrl: p.platform.rpcUrl, chainId: p.platform.addresses.chainId });
  const onChain = (await pub.readContract({
    address: p.platform.addresses.contracts.RewardDistributor,
    abi: rewardDistributorAbi,
    functionName: "getEpoch",
    args: [BigInt(id)],
  })) as unknown as { root: Hex } & readonly unknown[];
  assert.equal(
    (await page.getByTestId("epoch-root").textContent())?.toLowerCase(),
    String(onChain.root ?? onChain[0]).toLowerCase(),
  );
  const epoch = await settlementApi<{ postTxHash: string }>(`epochs/${id}`);
  const receipt = await pub.getTransactionReceipt({ hash: epoch.postTxHash as Hex });
  assert.equal(receipt.status, "success");
  assert.equal(await page.getByTestId("epoch-tx").textContent(), epoch.postTxHash);
  // Claims made and pending per recipient: everyone claimed but the claimer.
  const pending = await page
    .getByTestId("recipients-table")
    .locator(`tr[data-address="${claimer.address.toLowerCase()}"] .amount`)
    .last()
    .getAttribute("data-wei");
  assert.ok(BigInt(pending ?? "0") > 0n, "the claimer's earnings are pending");
  await shoot("epoch");
});

test("account: the Claim button claims with the injected wallet and the balance changes on chain", async () => {
  const address = claimer.address.toLowerCase();
  const claim = await settlementApi<{ claimable: string; active: boolean }>(`accounts/${address}/claim`);
  assert.ok(BigInt(claim.claimable) > 0n && claim.active, "the story left a claim to make");
  await visit(`/accounts/${address}`, "claim-claimable");
  await expectAmount("claim-claimable", claim.claimable);
  const earnings = await settlementApi<{ totalWei: string }>(`accounts/${address}/earnings`);
  await page.getByTestId("earnings-total").waitFor();
  await expectAmount("earnings-total", earnings.totalWei);
  await shoot("account");

  const pub = createChainPublicClient({ rpcUrl: p.platform.rpcUrl, chainId: p.platform.addresses.chainId });
  const balance = () =>
    pub.readContract({
      address: p.platform.addresses.contracts.OpenToken,
      abi: openTokenAbi,
      functionName: "balanceOf",
      args: [claimer.address],
    });
  const before = await balance();
  await page.getByTestId("claim-button").click();
  await page.getByTestId("claim-done").waitFor({ timeout: 60_000 });
  assert.equal((await balance()) - before, BigInt(claim.claimable), "received exactly the claimable amount");
  // The page reloads the claim: nothing left.
  await page.waitForFunction(
    `document.querySelector('[data-testid="claim-claimable"]')?.getAttribute("data-wei") === "0"`,
  );
  const afterClaim = await settlementApi<{ claimable: string }>(`accounts/${address}/claim`);
  assert.equal(afterClaim.claimable, "0");
  await shoot("account-claimed");
});

test("on a phone-width screen no page is wider than the screen (tables scroll inside their box)", async () => {
  const small =
    story.inferences.find((i) => i.model.startsWith("reviews-sentiment-")) ?? story.inferences[0]!;
  const pages = {
    overview: ["/", "datanets-table"],
    datanet: [`/datanets/${story.datanetId}`, "versions-table"],
    inference: [`/inferences/${small.id}`, "fee-table"],
    model: [`/models/${encodeURIComponent(small.model)}`, "lineage"],
    epoch: [`/epochs/${story.epochId}`, "flow-table"],
    account: [`/accounts/${claimer.address.toLowerCase()}`, "claim-claimable"],
  } as const;
  await page.setViewportSize({ width: 390, height: 844 });
  const wide: string[] = [];
  for (const [name, [url, ready]] of Object.entries(pages)) {
    await visit(url, ready);
    await page.waitForFunction(
      `![...document.querySelectorAll('[role="status"]')].some((e) => e.textContent.startsWith("Loading"))`,
    );
    const width = (await page.evaluate("document.documentElement.scrollWidth")) as number;
    if (width > 390) {
      // The innermost elements that stick out, to say what to fix.
      const culprits = await page.evaluate(`[...document.querySelectorAll("body *")]
        .filter((e) => {
          if (getComputedStyle(e.parentElement).overflowX !== "visible") return false;
          const r = e.getBoundingClientRect();
          return r.right > innerWidth + 1 && r.right > e.parentElement.getBoundingClientRect().right + 1;
        })
        .slice(0, 6)
        .map((e) => e.tagName.toLowerCase() + "." + String(e.className).split(" ").join(".") + " " + Math.round(e.getBoundingClientRect().right))
        .join(", ")`);
      wide.push(`${name} (${url}): ${width} px: ${culprits}`);
    }
    if (name === "overview" || name === "epoch") await shoot(`phone-${name}`);
  }
  await page.setViewportSize({ width: 1280, height: 900 });
  assert.deepEqual(wide, [], "pages wider than a 390 px screen");
});

test("no page logged a console error", () => {
  assert.deepEqual(pageErrors, []);
});
