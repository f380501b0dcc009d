import assert from "node:assert/strict";
import { test } from "node:test";
import { z } from "zod";
import { findUnstorableText, safeText, storableJson, unstorableText } from "./text.ts";

test("unstorableText: NUL and lone surrogates are refused, valid pairs and ordinary text pass", () => {
  assert.match(unstorableText("a\u0000b") ?? "", /U\+0000 \(NUL\) at character 1/);
  assert.match(unstorableText("\ud800") ?? "", /lone UTF-16 surrogate \(U\+D800\) at character 0/);
  assert.match(unstorableText("x\udc00") ?? "", /lone UTF-16 surrogate \(U\+DC00\) at character 1/);
  assert.match(
    unstorableText("\ud83d\ud83d\ude00") ?? "",
    /U\+D83D\) at character 0/,
    "a high surrogate before a pair",
  );
  for (const ok of ["", "plain", "😀 pair", "tab\tnew\nline", "\u0001 control", "Ωmega"]) {
    assert.equal(unstorableText(ok), undefined, JSON.stringify(ok));
  }
});

test("findUnstorableText walks arrays and objects, keys included, and names the path", () => {
  assert.deepEqual(findUnstorableText({ a: [1, "ok", { b: "x\u0000" }] })?.path, ["a", 2, "b"]);
  assert.match(findUnstorableText({ "k\u0000": 1 })?.problem ?? "", /^key contains U\+0000/);
  assert.equal(findUnstorableText({ a: [1, null, true, "😀"] }), undefined);
});

test("safeText and storableJson report a zod issue at the field's path and keep other checks", () => {
  const schema = z.object({ name: safeText().trim().min(1), rows: storableJson(z.array(z.unknown())) });
  const bad = schema.safeParse({ name: "a\u0000", rows: [{ text: "\ud800" }] });
  assert.equal(bad.success, false);
  assert.deepEqual(
    bad.error?.issues.map((i) => i.path),
    [["name"], ["rows", 0, "text"]],
  );
  assert.equal(schema.safeParse({ name: "  ", rows: [] }).success, false, "min(1) after trim still applies");
  assert.deepEqual(schema.parse({ name: " ok ", rows: ["😀"] }), { name: "ok", rows: ["😀"] });
});
