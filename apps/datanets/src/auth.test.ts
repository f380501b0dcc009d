import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { localAccounts } from "@openledger/chain/testing";
import { type Harness, signedMessage, signIn, startHarness } from "./test-support.ts";

const { users } = localAccounts();
const alice = users[0]!;
const bob = users[1]!;
let h: Harness;

before(async () => {
  h = await startHarness("dn-auth", { DATANETS_NONCE_TTL_SECONDS: "10" });
});
after(async () => {
  await h?.close();
});

const verify = (payload: object) => h.app.inject({ method: "POST", url: "/v1/auth/verify", payload });

test("SIWE sign-in issues a session tied to the signing address; a replayed nonce is refused", async () => {
  const signed = await signedMessage(h, alice.privateKey);
  const ok = await verify(signed);
  assert.equal(ok.statusCode, 200, ok.body);
  const session = ok.json();
  assert.equal(session.address, alice.address.toLowerCase());
  const me = await h.app.inject({
    method: "GET",
    url: "/v1/auth/session",
    headers: { authorization: `Bearer ${session.token}` },
  });
  assert.equal(me.statusCode, 200);
  assert.equal(me.json().address, alice.address.toLowerCase());

  const replay = await verify(signed);
  assert.equal(replay.statusCode, 401);
  assert.equal(replay.json().error.code, "SIWE_NONCE_INVALID");

  // Sign out: the token stops working.
  const out = await h.app.inject({
    method: "POST",
    url: "/v1/auth/logout",
    headers: { authorization: `Bearer ${session.token}` },
  });
  assert.equal(out.statusCode, 204);
  const gone = await h.app.inject({
    method: "GET",
    url: "/v1/auth/session",
    headers: { authorization: `Bearer ${session.token}` },
  });
  assert.equal(gone.statusCode, 401);
  assert.equal(gone.json().error.code, "SESSION_INVALID");
});

test("wrong domain, wrong chain, expired message, made-up nonce and a forged signature are 401 with codes", async () => {
  const cases: [string, Promise<{ message: string; signature: string }>][] = [
    ["SIWE_DOMAIN_MISMATCH", signedMessage(h, alice.privateKey, { domain: "evil.example" })],
    ["SIWE_CHAIN_MISMATCH", signedMessage(h, alice.privateKey, { chainId: 1 })],
    ["SIWE_EXPIRED", signedMessage(h, alice.privateKey, { expirationTime: new Date(Date.now() - 1000) })],
    ["SIWE_NONCE_INVALID", signedMessage(h, alice.privateKey, { nonce: "madeUpNonce12345" })],
  ];
  for (const [code, p] of cases) {
    const res = await verify(await p);
    assert.equal(res.statusCode, 401, `${code}: ${res.body}`);
    assert.equal(res.json().error.code, code);
  }
  // Bob signs a message that claims to be from Alice.
  const claimed = await signedMessage(h, alice.privateKey);
  const forged = await signedMessage(h, bob.privateKey, { nonce: claimed.nonce });
  const res = await verify({ message: claimed.message, signature: forged.signature });
  assert.equal(res.statusCode, 401);
  assert.equal(res.json().error.code, "SIWE_BAD_SIGNATURE");
  const garbage = await verify({ message: "hello", signature: "0x00" });
  assert.equal(garbage.json().error.code, "SIWE_INVALID_MESSAGE");
});

test("datanets: create registers on-chain, list/search/get are public, updates are owner-only", async () => {
  const anon = await h.app.inject({
    method: "POST",
    url: "/v1/datanets",
    payload: { slug: "x", name: "x", type: "text", license: "MIT" },
  });
  assert.equal(anon.statusCode, 401);
  assert.equal(anon.json().error.code, "AUTH_REQUIRED");
  assert.equal(await h.app.db.datanet.count(), 0, "nothing written by an unauthenticated create");

  const aliceAuth = await signIn(h, alice.privateKey);
  const created = await h.app.inject({
    method: "POST",
    url: "/v1/datanets",
    headers: aliceAuth,
    payload: {
      slug: "legal-qa",
      name: "Legal Q&A",
      description: "Questions and answers about contract law",
      tags: ["Law", "qa", "law"],
      type: "qa",
      license: "CC-BY-4.0",
      minStakeWei: (100n * 10n ** 18n).toString(),
    },
  });
  assert.equal(created.statusCode, 201, created.body);
  const d = created.json();
  assert.deepEqual(d.tags, ["law", "qa"]);
  assert.equal(d.ownerAddress, alice.address.toLowerCase());
  assert.equal(d.registration.status, "confirmed");
  assert.equal(d.chainDatanetId, "1");

  const dup = await h.app.inject({
    method: "POST",
    url: "/v1/datanets",
    headers: aliceAuth,
    payload: { slug: "legal-qa", name: "again", type: "qa", license: "MIT" },
  });
  assert.equal(dup.statusCode, 409);
  assert.equal(dup.json().error.code, "SLUG_TAKEN");

  for (let i = 0; i < 3; i++) {
    const r = await h.app.inject({
      method: "POST",
      url: "/v1/datanets",
      headers: aliceAuth,
      payload: {
        slug: `med-${i}`,
        name: `Medical notes ${i}`,
        tags: ["medicine"],
        type: "text",
        license: "MIT",
      },
    });
    assert.equal(r.statusCode, 201, r.body);
  }
  const search = (await h.app.inject({ method: "GET", url: "/v1/datanets?q=LEGAL" })).json();
  assert.deepEqual(
    search.items.map((x: { slug: string }) => x.slug),
    ["legal-qa"],
  );
  const byTag = (await h.app.inject({ method: "GET", url: "/v1/datanets?tag=medicine&limit=2" })).json();
  assert.equal(byTag.items.length, 2);
  assert.ok(byTag.nextCursor);
  const next = (
    await h.app.inject({ method: "GET", url: `/v1/datanets?tag=medicine&limit=2&cursor=${byTag.nextCursor}` })
  ).json();
  assert.equal(next.items.length, 1);
  assert.equal(next.nextCursor, null);
  const slugs = [...byTag.items, ...next.items].map((x: { slug: string }) => x.slug).sort();
  assert.deepEqual(slugs, ["med-0", "med-1", "med-2"]);

  const got = await h.app.inject({ method: "GET", url: `/v1/datanets/${d.id}` });
  assert.equal(got.statusCode, 200);
  assert.equal(got.json().name, "Legal Q&A");

  const bobAuth = await signIn(h, bob.privateKey);
  const wrong = await h.app.inject({
    method: "PATCH",
    url: `/v1/datanets/${d.id}`,
    headers: bobAuth,
    payload: { name: "hijacked" },
  });
  assert.equal(wrong.statusCode, 403);
  assert.equal(wrong.json().error.code, "NOT_DATANET_OWNER");
  const ok = await h.app.inject({
    method: "PATCH",
    url: `/v1/datanets/${d.id}`,
    headers: aliceAuth,
    payload: { name: "Legal Q&A (EU)", dailyRowLimit: 500 },
  });
  assert.equal(ok.statusCode, 200, ok.body);
  assert.equal(ok.json().name, "Legal Q&A (EU)");
  assert.equal((await h.app.db.datanet.findUniqueOrThrow({ where: { id: d.id } })).name, "Legal Q&A (EU)");

  // The registration intent was recorded and confirmed from its receipt.
  const intent = await h.app.db.chainIntent.findUniqueOrThrow({ where: { key: `datanet.register:${d.id}` } });
  assert.equal(intent.status, "confirmed");
  assert.match(intent.txHash ?? "", /^0x[0-9a-f]{64}$/);

  // A retry after a crash between broadcast and confirmation re-uses the recorded transaction:
  // no second registration is sent (operator nonce unchanged, same chain id).
  const operator = h.chain.accounts.operator.address;
  const nonceBefore = await h.chain.rpc<string>("eth_getTransactionCount", [operator, "latest"]);
  await h.app.db.chainIntent.update({ where: { id: intent.id }, data: { status: "submitted" } });
  await h.app.db.datanet.update({ where: { id: d.id }, data: { chainDatanetId: null } });
  const retried = await h.app.inject({
    method: "POST",
    url: `/v1/datanets/${d.id}/register`,
    headers: aliceAuth,
  });
  assert.equal(retried.statusCode, 200, retried.body);
  assert.equal(retried.json().chainDatanetId, "1");
  assert.equal(retried.json().registration.txHash, intent.txHash);
  assert.equal(await h.chain.rpc<string>("eth_getTransactionCount", [operator, "latest"]), nonceBefore);
});
