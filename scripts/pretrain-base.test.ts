// The repository keeps the default base model (models/openledger-moby) as bytes, because validators
// and every gateway replica must serve bit-identical weights (adapters, LoRA influence and span
// attribution are all defined against them). This test is what makes those bytes honest: the
// committed script, run from scratch, produces exactly them (one intra-op thread: a fixed
// reduction order; about 3 minutes of one core).
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { test } from "node:test";
import { REPO_ROOT } from "@openledger/chain";
import { DEFAULT_BASE_MODEL_DIR } from "@openledger/config";
import { pretrainBase, sha256Files } from "./pretrain-base.ts";

test("scripts/pretrain-base.ts reproduces the committed default base model byte for byte", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), "pretrain-base-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const committed = resolve(REPO_ROOT, DEFAULT_BASE_MODEL_DIR);
  const report = await pretrainBase(join(dir, "model"));
  assert.deepEqual(await sha256Files(join(dir, "model")), await sha256Files(committed));
  // The model card (recipe, held-out losses, the files' hashes) too.
  assert.equal(
    await readFile(join(dir, "model", "openledger-model.json"), "utf8"),
    await readFile(join(committed, "openledger-model.json"), "utf8"),
  );
  // And it learnt something: the held-out loss fell well below a uniform guess over the vocabulary.
  assert.ok(report.heldOutLossAfter < report.heldOutLossBefore - 1.5, JSON.stringify(report));
});
