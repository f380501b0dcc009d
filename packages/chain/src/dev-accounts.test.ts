// The dev accounts are written out (deriving them at import time cost ~1 s of CPU per process):
// they must be exactly the first 20 accounts of Hardhat's mnemonic.
import assert from "node:assert/strict";
import { test } from "node:test";
import { mnemonicToAccount } from "viem/accounts";
import { HARDHAT_DEV_ACCOUNTS, HARDHAT_MNEMONIC } from "./dev-accounts.ts";

test("the written-out dev accounts are the first 20 of Hardhat's mnemonic", () => {
  assert.equal(HARDHAT_DEV_ACCOUNTS.length, 20);
  HARDHAT_DEV_ACCOUNTS.forEach((a, i) => {
    const derived = mnemonicToAccount(HARDHAT_MNEMONIC, { addressIndex: i });
    const key = derived.getHdKey().privateKey;
    assert.ok(key);
    assert.equal(a.address, derived.address, `account ${i}`);
    assert.equal(a.privateKey, `0x${Buffer.from(key).toString("hex")}`, `key ${i}`);
  });
});
