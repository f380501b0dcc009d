import assert from "node:assert/strict";
import { test } from "node:test";
import { FlatFormatError } from "./flat-binary.ts";
import { buildSpanIndex, decodeSpanIndex, spanIndexToBuffer } from "./span-index.ts";

test("an index of no rows (empty sections) encodes to a file that loads and verifies", () => {
  const index = buildSpanIndex([], { vocabSize: 257 });
  const buf = spanIndexToBuffer(index);
  const loaded = decodeSpanIndex(buf);
  assert.equal(loaded.tokens.length, index.tokens.length);
  // The checksum still guards the file: flip one byte after the header.
  const corrupt = Buffer.from(buf);
  corrupt[corrupt.length - 1] = (corrupt[corrupt.length - 1] ?? 0) ^ 0xff;
  assert.throws(() => decodeSpanIndex(corrupt), FlatFormatError);
});
