import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { localAccounts } from "@openledger/chain/testing";
import { paragraph, Rng, render } from "@openledger/datanet-core";

import { eventually, type Harness, multipartFile, signIn, stakeOn, startHarness } from "./test-support.ts";

const { users } = localAccounts();
const owner = users[0]!;
const carol = users[1]!; // stakes and contributes
const dave = users[2]!; // never stakes
const OPEN = 10n ** 18n;
let h: Harness;
let datanetId: string;
let ownerAuth: { authorization: string };
let carolAuth: { authorization: string };

const rng = new Rng(42);
const para = () => render(paragraph(rng, 3, 5));

before(async () => {
  h = await startHarness("dn-contrib", { DATANETS_MAX_FILE_BYTES: "4096" });
  ownerAuth = await signIn(h, owner.privateKey);
  carolAuth = await signIn(h, carol.privateKey);
  const res = await h.app.inject({
    method: "POST",
    url: "/v1/datanets",
    headers: ownerAuth,
    payload: {
      slug: "prose",
      name: "Prose",
      type: "text",
      license: "CC0-1.0",
      minStakeWei: (100n * OPEN).toString(),
    },
  });
  assert.equal(res.statusCode, 201, res.body);
  datanetId = res.json().id;
  await stakeOn(h, carol.privateKey, BigInt(res.json().chainDatanetId), 200n);
});
after(async () => {
  await h?.close();
});

const submitRows = (auth: Record<string, string>, rows: unknown[]) =>
  h.app.inject({
    method: "POST",
    url: `/v1/datanets/${datanetId}/contributions`,
    headers: auth,
    payload: { rows },
  });
const submitFile = (auth: Record<string, string>, name: string, content: Buffer | string) => {
  const m = multipartFile(name, content);
  return h.app.inject({
    method: "POST",
    url: `/v1/datanets/${datanetId}/contributions/file`,
    headers: { ...auth, ...m.headers },
    payload: m.payload,
  });
};
const counts = async () => ({
  contributions: await h.app.db.contribution.count(),
  rows: await h.app.db.datanetRow.count(),
});
const validated = (id: string) =>
  eventually(async () => {
    const r = (await h.app.inject({ method: "GET", url: `/v1/contributions/${id}` })).json();
    return r.contribution.status === "validated" ? r : null;
  }, `contribution ${id} validated`);

test("unauthenticated and unstaked contributors are refused; nothing is stored", async () => {
  const anon = await submitRows({}, [{ text: para() }]);
  assert.equal(anon.statusCode, 401);
  const daveAuth = await signIn(h, dave.privateKey);
  const poor = await submitRows(daveAuth, [{ text: para() }]);
  assert.equal(poor.statusCode, 403, poor.body);
  assert.equal(poor.json().error.code, "INSUFFICIENT_STAKE");
  assert.equal(poor.json().error.details.activeWei, "0");
  const poorFile = await submitFile(daveAuth, "rows.jsonl", `${JSON.stringify({ text: para() })}\n`);
  assert.equal(poorFile.statusCode, 403, poorFile.body);
  assert.equal(poorFile.json().error.code, "INSUFFICIENT_STAKE");
  const anonFile = await submitFile({}, "rows.jsonl", `${JSON.stringify({ text: para() })}\n`);
  assert.equal(anonFile.statusCode, 401);
  assert.deepEqual(await counts(), { contributions: 0, rows: 0 });
});

test("rows are stored pending, validated by the worker: duplicates rejected with what they duplicate", async () => {
  const a = para();
  const b = para();
  const res = await submitRows(carolAuth, [
    { text: a, label: "x" },
    { text: b, metadata: { source: "test" } },
    { text: `  ${a.toUpperCase()}  ` }, // exact duplicate after normalization
    { text: "too short" },
  ]);
  assert.equal(res.statusCode, 202, res.body);
  const { contribution } = res.json();
  assert.equal(contribution.rowCount, 4);
  const done = await validated(contribution.id);
  assert.equal(done.contribution.acceptedCount, 2);
  assert.equal(done.contribution.rejectedCount, 2);
  assert.ok(["completed", "active"].includes(done.job.state), done.job.state);
  const rows = (
    await h.app.inject({ method: "GET", url: `/v1/contributions/${contribution.id}/rows` })
  ).json().items;
  for (const cursor of ["5abc", "-1", "x"]) {
    const bad = await h.app.inject({
      method: "GET",
      url: `/v1/contributions/${contribution.id}/rows?cursor=${cursor}`,
    });
    assert.equal(bad.statusCode, 400, `cursor ${cursor}`);
    assert.equal(bad.json().error.code, "BAD_CURSOR");
  }
  assert.deepEqual(
    rows.map((r: { status: string; rejectReason: string | null }) => [r.status, r.rejectReason]),
    [
      ["accepted", null],
      ["accepted", null],
      ["rejected", "exact_duplicate"],
      ["rejected", "too_short"],
    ],
  );
  assert.equal(rows[2].duplicateOfRowId, rows[0].id);

  // A restart loses the in-memory index: it is rebuilt from the signatures stored in Postgres.
  h.app.datanets.indexes.clear();
  // A second submission re-using a datanet row (slightly edited) is a near duplicate of it.
  const edited = a.replace(/\.$/, "!").replace(/^(\w+)/, "$1 indeed");
  const second = await submitRows(carolAuth, [{ text: edited }, { text: para() }]);
  assert.equal(second.statusCode, 202, second.body);
  const id2 = second.json().contribution.id;
  await validated(id2);
  const rows2 = (await h.app.inject({ method: "GET", url: `/v1/contributions/${id2}/rows` })).json().items;
  assert.equal(rows2[0].status, "rejected");
  assert.match(rows2[0].rejectReason, /duplicate/);
  assert.equal(rows2[0].duplicateOfRowId, rows[0].id);
  assert.equal(rows2[1].status, "accepted");
  const stored = await h.app.db.datanetRow.findUniqueOrThrow({ where: { id: BigInt(rows2[1].id) } });
  assert.equal(stored.signature?.length, 128 * 4, "accepted rows keep their MinHash signature");
});

test("bad files are refused whole, naming the line; nothing of them is stored", async () => {
  const before = await counts();
  const jsonl = `${JSON.stringify({ text: para() })}\n${JSON.stringify({ text: para() })}\n{"text": broken\n`;
  const bad = await submitFile(carolAuth, "rows.jsonl", jsonl);
  assert.equal(bad.statusCode, 400, bad.body);
  assert.equal(bad.json().error.code, "MALFORMED_JSONL");
  assert.match(bad.json().error.message, /line 3/);
  assert.equal(bad.json().error.details.line, 3);

  const latin1 = Buffer.concat([
    Buffer.from(`${para()}\n\ncaf`),
    Buffer.from([0xe9]),
    Buffer.from(" au lait\n"),
  ]);
  const utf = await submitFile(carolAuth, "notes.txt", latin1);
  assert.equal(utf.statusCode, 400, utf.body);
  assert.equal(utf.json().error.code, "INVALID_UTF8");
  assert.equal(utf.json().error.details.line, 3);
  assert.equal(typeof utf.json().error.details.byteOffset, "number");

  const big = await submitFile(carolAuth, "big.txt", "word ".repeat(2000));
  assert.equal(big.statusCode, 413, big.body);
  assert.equal(big.json().error.code, "FILE_TOO_LARGE");

  const exe = await submitFile(carolAuth, "tool.exe", "MZ");
  assert.equal(exe.statusCode, 415);
  assert.deepEqual(await counts(), before, "no contribution or row from refused files");

  const good = await submitFile(carolAuth, "data.csv", `text,label\n"${para()}",a\n"${para()}",b\n`);
  assert.equal(good.statusCode, 202, good.body);
  assert.equal(good.json().contribution.source, "file");
  assert.equal(good.json().contribution.rowCount, 2);
  await validated(good.json().contribution.id);
});

test("daily limits per contributor and per datanet answer 429 with a code", async () => {
  // A datanet of its own (so the counts do not depend on the other tests): 10 rows per contributor
  // per day, 12 for everyone.
  const created = await h.app.inject({
    method: "POST",
    url: "/v1/datanets",
    headers: ownerAuth,
    payload: {
      slug: `limits-${Math.random().toString(16).slice(2, 10)}`,
      name: "Limits",
      type: "text",
      license: "CC0-1.0",
      dailyRowLimitPerContributor: 10,
      dailyRowLimit: 12,
    },
  });
  assert.equal(created.statusCode, 201, created.body);
  const id = created.json().id;
  const submit = (rows: unknown[]) =>
    h.app.inject({
      method: "POST",
      url: `/v1/datanets/${id}/contributions`,
      headers: carolAuth,
      payload: { rows },
    });
  const rowsOf = (n: number) => Array.from({ length: n }, () => ({ text: para() }));
  assert.equal((await submit(rowsOf(8))).statusCode, 202);
  const over = await submit(rowsOf(3));
  assert.equal(over.statusCode, 429, over.body);
  assert.equal(over.json().error.code, "DAILY_LIMIT_EXCEEDED");
  assert.deepEqual(over.json().error.details, { limit: 10, usedToday: 8, remaining: 2 });
  const before = await counts();
  // The datanet-wide limit (12) is checked too: lower the per-contributor one above it.
  const patched = await h.app.inject({
    method: "PATCH",
    url: `/v1/datanets/${id}`,
    headers: ownerAuth,
    payload: { dailyRowLimitPerContributor: 1000 },
  });
  assert.equal(patched.statusCode, 200);
  const overAll = await submit(rowsOf(5));
  assert.equal(overAll.statusCode, 429);
  assert.equal(overAll.json().error.code, "DATANET_DAILY_LIMIT_EXCEEDED");
  assert.deepEqual(await counts(), before);
  assert.equal((await submit(rowsOf(4))).statusCode, 202, "exactly up to the limit is fine");
});

test("text Postgres cannot store (NUL, lone surrogates) is refused with 400 naming the field; nothing is stored", async () => {
  const before = await counts();
  const datanetsBefore = await h.app.db.datanet.count();
  const create = (name: string, extra: Record<string, unknown> = {}) =>
    h.app.inject({
      method: "POST",
      url: "/v1/datanets",
      headers: ownerAuth,
      payload: {
        slug: `nul-${Math.random().toString(16).slice(2, 8)}`,
        name,
        type: "text",
        license: "CC0-1.0",
        ...extra,
      },
    });
  const nulName = await create("bad\u0000name");
  assert.equal(nulName.statusCode, 400, nulName.body);
  assert.equal(nulName.json().error.code, "VALIDATION_FAILED");
  assert.match(nulName.json().error.message, /body\.name: contains U\+0000 \(NUL\)/);
  const loneTag = await create("fine", { tags: ["ok", "x\ud800y"] });
  assert.equal(loneTag.statusCode, 400, loneTag.body);
  assert.match(loneTag.json().error.message, /body\.tags\.1: contains a lone UTF-16 surrogate \(U\+D800\)/);
  const search = await h.app.inject({ method: "GET", url: "/v1/datanets?q=a%00b" });
  assert.equal(search.statusCode, 400, search.body);
  assert.match(search.json().error.message, /querystring\.q: contains U\+0000/);
  assert.equal(await h.app.db.datanet.count(), datanetsBefore, "no datanet from refused names");

  const cases: [unknown[], RegExp][] = [
    [[{ text: para() }, { text: `${para()}\u0000` }], /body\.rows\.1\.text: contains U\+0000/],
    [
      [{ text: para(), label: "\udc00" }],
      /body\.rows\.0\.label: contains a lone UTF-16 surrogate \(U\+DC00\)/,
    ],
    [[{ text: para(), metadata: { "k\u0000": "v" } }], /body\.rows\.0\.metadata\.k.: key contains U\+0000/],
    [
      [{ text: para(), metadata: { nested: ["\u0000"] } }],
      /body\.rows\.0\.metadata\.nested\.0: contains U\+0000/,
    ],
  ];
  for (const [rows, why] of cases) {
    const res = await submitRows(carolAuth, rows);
    assert.equal(res.statusCode, 400, res.body);
    assert.equal(res.json().error.code, "VALIDATION_FAILED");
    assert.match(res.json().error.message, why);
  }
  const nulFile = await submitFile(carolAuth, "notes.txt", `${para()}\n\nan inner \u0000 byte\n`);
  assert.equal(nulFile.statusCode, 400, nulFile.body);
  assert.equal(nulFile.json().error.code, "VALIDATION_FAILED");
  assert.match(nulFile.json().error.message, /file line 3: text contains U\+0000/);
  const nulCsv = await submitFile(carolAuth, "rows.csv", `text,label\n"${para()}",a\u0000\n`);
  assert.equal(nulCsv.statusCode, 400, nulCsv.body);
  assert.match(nulCsv.json().error.message, /file line 2: label contains U\+0000/);
  assert.deepEqual(await counts(), before, "no contribution or row from refused text");

  // Astral characters (valid surrogate pairs) are ordinary text.
  const emoji = await create("emoji 😀 name");
  assert.equal(emoji.statusCode, 201, emoji.body);
  assert.equal(emoji.json().name, "emoji 😀 name");
});

test("a datanet's contributions are listed newest first, paged, filtered; /v1/stats adds up with the database", async () => {
  const expected = await h.app.db.contribution.findMany({
    where: { datanetId },
    orderBy: [{ createdAt: "desc" }, { id: "desc" }],
  });
  assert.ok(expected.length >= 2, "earlier tests contributed");
  const seen: string[] = [];
  let cursor: string | null = null;
  do {
    const url: string = `/v1/datanets/${datanetId}/contributions?limit=1${cursor ? `&cursor=${cursor}` : ""}`;
    const res = await h.app.inject({ method: "GET", url });
    assert.equal(res.statusCode, 200, res.body);
    const page: { items: { id: string; datanetId: string }[]; nextCursor: string | null } = res.json();
    for (const c of page.items) {
      assert.equal(c.datanetId, datanetId);
      seen.push(c.id);
    }
    cursor = page.nextCursor;
  } while (cursor);
  assert.deepEqual(
    seen,
    expected.map((c) => c.id),
  );
  const mine = await h.app.inject({
    method: "GET",
    url: `/v1/datanets/${datanetId}/contributions?contributor=${carol.address}&status=validated`,
  });
  assert.deepEqual(
    mine.json<{ items: { id: string }[] }>().items.map((c) => c.id),
    expected
      .filter((c) => c.contributorAddress === carol.address.toLowerCase() && c.status === "validated")
      .map((c) => c.id),
  );
  const bad = await h.app.inject({ method: "GET", url: `/v1/datanets/${datanetId}/contributions?cursor=zz` });
  assert.equal(bad.statusCode, 400);
  const unknown = await h.app.inject({
    method: "GET",
    url: "/v1/datanets/00000000-0000-4000-8000-000000000000/contributions",
  });
  assert.equal(unknown.statusCode, 404);

  const stats = (await h.app.inject({ method: "GET", url: "/v1/stats" })).json();
  const all = await h.app.db.contribution.findMany();
  assert.deepEqual(stats, {
    datanets: await h.app.db.datanet.count(),
    contributors: new Set(all.map((c) => c.contributorAddress)).size,
    contributions: all.length,
    rowsAccepted: await h.app.db.datanetRow.count({ where: { status: "accepted" } }),
    rowsRejected: await h.app.db.datanetRow.count({ where: { status: "rejected" } }),
    rowsPending: await h.app.db.datanetRow.count({ where: { status: "pending" } }),
    versions: await h.app.db.datanetVersion.count(),
    slashingProposals: await h.app.db.slashingProposal.count(),
  });
  assert.ok(stats.rowsAccepted > 0);
});
