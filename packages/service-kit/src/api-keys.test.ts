// API key lookups on the request path (real Postgres): one query per key at a time, whatever the
// concurrency; a revoked key stops working.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { createTestDatabase, type TestDatabase } from "@openledger/db/testing";
import { ApiKeys } from "./api-keys.ts";

let database: TestDatabase;

before(async () => {
  database = await createTestDatabase("kit_api_keys");
});
after(async () => {
  await database?.drop();
});

/** ApiKeys over the test database whose key lookups are counted. */
function counting(): { keys: ApiKeys; lookups: () => number } {
  let lookups = 0;
  const db = database.db;
  const apiKey = new Proxy(db.apiKey, {
    get(target, prop, receiver) {
      if (prop === "findUnique") {
        return (...args: Parameters<typeof target.findUnique>) => {
          lookups++;
          return target.findUnique(...args);
        };
      }
      return Reflect.get(target, prop, receiver);
    },
  });
  const keys = new ApiKeys(
    new Proxy(db, { get: (t, p, r) => (p === "apiKey" ? apiKey : Reflect.get(t, p, r)) }),
  );
  return { keys, lookups: () => lookups };
}

test("requests of one key that find no cached entry share one lookup, not one each", async () => {
  const { keys, lookups } = counting();
  const { key } = await keys.create(`0x${"ab".repeat(20)}`, "k");
  const accounts = await Promise.all(Array.from({ length: 20 }, () => keys.accountOf(key)));
  assert.deepEqual(new Set(accounts), new Set([`0x${"ab".repeat(20)}`]));
  assert.equal(lookups(), 1);
  assert.equal(await keys.accountOf("sk-unknown"), undefined);
});

test("a revoked key is refused once its entry is read again", async () => {
  const { keys } = counting();
  const { key, id } = await keys.create(`0x${"cd".repeat(20)}`, "k");
  await database.db.apiKey.update({ where: { id }, data: { revokedAt: new Date() } });
  assert.equal(await keys.accountOf(key), undefined);
});
