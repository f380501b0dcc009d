import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { FlatFormatError } from "./flat-binary.ts";
import { rankSelfInfluence } from "./influence-attribution.ts";
import {
  attributeText,
  decodeInfluenceModel,
  encodeInfluenceModel,
  type LabelledRow,
  readInfluenceModelFile,
  trainInfluenceModel,
  writeInfluenceModelFile,
} from "./influence-model.ts";
import { PPM_TOTAL } from "./ppm.ts";

const TOPICS = [
  "cheap pills online pharmacy discount offer",
  "quarterly meeting agenda budget review notes",
  "football match score league table goals",
];

function rows(): LabelledRow[] {
  return Array.from({ length: 90 }, (_, i) => {
    const label = i % 3;
    const words = TOPICS[label]!.split(" ");
    const text = `${words[i % words.length]} ${words[(i * 7) % words.length]} item ${i} ${words[(i * 3) % words.length]}`;
    return {
      rowId: `row-${String(i).padStart(3, "0")}`,
      contributionId: `k-${i % 10}`,
      contributorId: `0x${(i % 4).toString().repeat(4)}`,
      text,
      label: i === 5 ? (label + 1) % 3 : label,
    };
  });
}

test("train, encode, decode: identical attributions; bit-identical retraining", () => {
  const features = { dim: 64, maxNgram: 2 as const };
  const m = trainInfluenceModel(rows(), features, { classes: 3, lambda: 0.5, meta: { datanetId: "d1" } });
  const again = trainInfluenceModel(rows(), features, { classes: 3, lambda: 0.5, meta: { datanetId: "d1" } });
  const bytes = Buffer.concat(encodeInfluenceModel(m));
  assert.deepEqual(Buffer.concat(encodeInfluenceModel(again)), bytes);
  const back = decodeInfluenceModel(bytes);
  const text = "discount pills offer for the league";
  const a = attributeText(m, text);
  assert.deepEqual(attributeText(back, text), a);
  assert.equal(
    a.weights.reduce((s, w) => s + w.ppm, 0),
    PPM_TOTAL,
  );
  assert.equal(a.label, 0);
  assert.deepEqual(
    rankSelfInfluence(back.influence, back.rows, 5),
    rankSelfInfluence(m.influence, m.rows, 5),
  );
  assert.equal(back.meta["datanetId"], "d1");
  const dir = mkdtempSync(join(tmpdir(), "influence-model-"));
  try {
    writeInfluenceModelFile(join(dir, "m.bin"), m);
    assert.deepEqual(attributeText(readInfluenceModelFile(join(dir, "m.bin")), text), a);
  } finally {
    rmSync(dir, { recursive: true });
  }
  const bad = Buffer.from(bytes);
  bad[bad.length - 10]! ^= 1;
  assert.throws(() => decodeInfluenceModel(bad), FlatFormatError);
});

test("the flipped row ranks first by self-influence", () => {
  const m = trainInfluenceModel(rows(), { dim: 64 }, { classes: 3, lambda: 0.5 });
  assert.equal(rankSelfInfluence(m.influence, m.rows, 1)[0]!.rowId, "row-005");
});
