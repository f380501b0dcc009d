// The native batch-1 decode step (@openledger/decode-native) against onnxruntime's int8c session.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { generateRandomAdapter } from "./adapter.ts";
import { type LlamaConfig, LORA_MODULES, SMOLLM_135M_CONFIG, TINY_CONFIG } from "./config.ts";
import { buildLlamaGraph } from "./graph.ts";
import { type BaseModel, generateBaseModel } from "./model.ts";
import { type NativeLinear, nativeDecodeAddon, nativeDecodeStatus } from "./native-decode.ts";
import { ModelRuntime, type RuntimeOptions } from "./runtime.ts";
import { argmax } from "./sampler.ts";

const needsAddon = {
  skip: nativeDecodeAddon === null ? `decode-native not loaded: ${nativeDecodeStatus().reason}` : false,
};

/** SmolLM-135M's widths, heads and vocabulary with 2 of its 30 layers (every matrix shape it has, built in ~3 s). */
const SMOL_SHAPED: LlamaConfig = { ...SMOLLM_135M_CONFIG, numLayers: 2 };
const PROMPT = [1, 5, 9, 13, 17];
const int8c = (extra: RuntimeOptions = {}): RuntimeOptions => ({
  lora: false,
  intraOpThreads: 1,
  weights: "int8c",
  ...extra,
});

function maxDiff(a: Float32Array, b: Float32Array): { diff: number; abs: number } {
  let diff = 0;
  let abs = 0;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i]! - b[i]!));
    abs = Math.max(abs, Math.abs(b[i]!));
  }
  return { diff, abs };
}

// Both sides quantize each matmul's input to uint8 with the same zero point and sum the same int32
// products exactly; what is left is float summation order (RMSNorm, softmax, attention, the int32 ->
// f32 scaling): measured <= 2e-7 of the largest logit. The bound, 1e-4 of it, leaves room for an
// activation landing on the other side of a rounding boundary of its uint8 step, and is still ~1000x
// below the int8 quantization's own error (quantize.test.ts: up to 5% of |logit| against f32).
const REL_TOL = 1e-4;

for (const [name, config] of [
  ["tiny", TINY_CONFIG],
  ["SmolLM-shaped (2 layers)", SMOL_SHAPED],
] as const) {
  test(
    `${name}: native decode steps give onnxruntime int8c's logits and greedy tokens`,
    needsAddon,
    async () => {
      const model = generateBaseModel(config, 7);
      const nat = await ModelRuntime.create(model, int8c());
      const ort = await ModelRuntime.create(model, int8c({ nativeDecode: false }));
      assert.ok(nat.nativeDecoder);
      assert.equal(ort.nativeDecoder, null);
      await nat.step([{ seqId: "s", tokens: PROMPT, slot: 0 }]);
      let [want] = await ort.step([{ seqId: "s", tokens: PROMPT, slot: 0 }]);
      assert.equal(nat.lastTimings.native, false); // a prefill runs in onnxruntime
      let worst = 0;
      let agree = 0;
      const steps = 24;
      for (let i = 0; i < steps; i++) {
        const token = argmax(want!); // both sides are fed onnxruntime's greedy token
        const [got] = await nat.step([{ seqId: "s", tokens: [token], slot: 0 }]);
        assert.equal(nat.lastTimings.native, true);
        [want] = await ort.step([{ seqId: "s", tokens: [token], slot: 0 }]);
        assert.equal(ort.lastTimings.native, false);
        const { diff, abs } = maxDiff(got!, want!);
        worst = Math.max(worst, diff / abs);
        if (argmax(got!) === argmax(want!)) agree++;
      }
      console.log(
        `${name}: max |native - onnxruntime| / max |logit| ${worst.toExponential(2)}, greedy ${agree}/${steps}`,
      );
      assert.ok(worst < REL_TOL, `relative logit difference ${worst}`);
      assert.equal(agree, steps);
      assert.equal(nat.sequenceLength("s"), PROMPT.length + steps);
      await nat.dispose();
      await ort.dispose();
    },
  );
}

for (const [name, config, targetModules] of [
  ["tiny, all seven modules", TINY_CONFIG, LORA_MODULES],
  ["SmolLM-shaped (2 layers), q/k/v/o", SMOL_SHAPED, ["q_proj", "k_proj", "v_proj", "o_proj"]],
] as const) {
  test(
    `${name}: a decode row with an adapter runs natively with onnxruntime's LoRA logits`,
    needsAddon,
    async () => {
      const model = generateBaseModel(config, 5);
      // Two rank buckets: a rank-4 adapter pads to 8, a rank-16 one fills its bucket.
      const opts = int8c({ lora: true, slots: 3, rankBuckets: [8, 16], targetModules: [...targetModules] });
      const nat = await ModelRuntime.create(model, opts);
      const ort = await ModelRuntime.create(model, { ...opts, nativeDecode: false });
      for (const [slot, rank] of [
        [1, 4],
        [2, 16],
      ] as const) {
        const adapter = generateRandomAdapter(config, {
          rank,
          seed: `native-${slot}`,
          targetModules: [...targetModules],
        });
        nat.loadAdapter(slot, adapter);
        ort.loadAdapter(slot, adapter);
      }
      let worst = 0;
      let agree = 0;
      let steps = 0;
      for (const slot of [1, 2, 0]) {
        const id = `s${slot}`;
        await nat.step([{ seqId: id, tokens: PROMPT, slot }]);
        let [want] = await ort.step([{ seqId: id, tokens: PROMPT, slot }]);
        for (let i = 0; i < 12; i++, steps++) {
          const token = argmax(want!);
          const [got] = await nat.step([{ seqId: id, tokens: [token], slot }]);
          assert.equal(nat.lastTimings.native, true);
          [want] = await ort.step([{ seqId: id, tokens: [token], slot }]);
          const { diff, abs } = maxDiff(got!, want!);
          worst = Math.max(worst, diff / abs);
          if (argmax(got!) === argmax(want!)) agree++;
        }
      }
      console.log(
        `${name}: with adapters, max relative difference ${worst.toExponential(2)}, greedy ${agree}/${steps}`,
      );
      assert.ok(worst < REL_TOL, `relative logit difference ${worst}`);
      assert.equal(agree, steps);
      await nat.dispose();
      await ort.dispose();
    },
  );
}

test(
  "KV written natively continues in onnxruntime and back: alternating paths, batches and rebuilds",
  needsAddon,
  async () => {
    const model = generateBaseModel(TINY_CONFIG, 11);
    const nat = await ModelRuntime.create(model, int8c());
    const ort = await ModelRuntime.create(model, int8c({ nativeDecode: false }));
    const next = new Map<string, number>();
    const both = async (rows: { id: string; prompt?: number[] }[], native: boolean) => {
      nat.useNativeDecode = native;
      const step = rows.map((r) => ({ seqId: r.id, tokens: r.prompt ?? [next.get(r.id)!], slot: 0 }));
      const got = await nat.step(step);
      const ranNative = nat.lastTimings.native;
      const want = await ort.step(step);
      rows.forEach((r, i) => {
        const { diff, abs } = maxDiff(got[i]!, want[i]!);
        assert.ok(diff < REL_TOL * abs, `${r.id}: ${diff} vs |logit| ${abs}`);
        next.set(r.id, argmax(want[i]!));
      });
      return ranNative;
    };
    await both([{ id: "a", prompt: PROMPT }], true);
    // native, native, onnxruntime, native: the paths read and extend each other's cache.
    assert.deepEqual(
      [await both([{ id: "a" }], true), await both([{ id: "a" }], true), await both([{ id: "a" }], false)],
      [true, true, false],
    );
    assert.equal(await both([{ id: "a" }], true), true);
    // A second sequence: a batched step of two (onnxruntime), then each alone (native, rebuilding the
    // resident batch of one from the other's materialized cache).
    await both([{ id: "b", prompt: [3, 4] }], true);
    assert.equal(await both([{ id: "a" }, { id: "b" }], true), false);
    assert.equal(await both([{ id: "a" }], true), true);
    assert.equal(nat.lastTimings.kvRebuilt, true);
    assert.equal(await both([{ id: "b" }], true), true);
    assert.equal(await both([{ id: "a" }, { id: "b" }], true), false);
    for (let i = 0; i < 70; i++) assert.equal(await both([{ id: "b" }], true), true); // grows past 64 columns
    assert.equal(await both([{ id: "a" }], false), false);
    nat.release("a");
    ort.release("a");
    assert.equal(await both([{ id: "b" }], true), true);
    await nat.dispose();
    await ort.dispose();
  },
);

test("every integer kernel and 1 or 2 threads give the same logits, bit for bit", needsAddon, async () => {
  const isas = nativeDecodeAddon!.isas();
  assert.ok(isas.includes("scalar"));
  const model = generateBaseModel(TINY_CONFIG, 3);
  const runs: { label: string; logits: Float32Array[] }[] = [];
  for (const isa of isas) {
    for (const threads of [1, 2]) {
      const rt = await ModelRuntime.create(
        model,
        int8c({ nativeDecodeIsa: isa, nativeDecodeThreads: threads }),
      );
      assert.deepEqual([rt.nativeDecoder!.isa, rt.nativeDecoder!.threads], [isa, threads]);
      const logits: Float32Array[] = [];
      let [l] = await rt.step([{ seqId: 1, tokens: PROMPT, slot: 0 }]);
      for (let i = 0; i < 8; i++) {
        [l] = await rt.step([{ seqId: 1, tokens: [argmax(l!)], slot: 0 }]);
        logits.push(Float32Array.from(l!));
      }
      runs.push({ label: `${isa}/${threads}`, logits });
      await rt.dispose();
    }
  }
  for (const r of runs.slice(1))
    assert.deepEqual(r.logits, runs[0]!.logits, `${r.label} vs ${runs[0]!.label}`);
});

// The attention's SIMD kernels run 8 cached positions at a time with a tail and prefetch ~24 KB ahead;
// a few hundred positions of SmolLM's head shape (D = 64, 3 query heads a KV head) cover all of it.
test(
  "at a long context every kernel gives the same bits and onnxruntime's logits and greedy tokens",
  needsAddon,
  async () => {
    const model = generateBaseModel(SMOL_SHAPED, 13);
    const prompt = Array.from({ length: 301 }, (_, i) => (i * 7919 + 3) % SMOL_SHAPED.vocabSize);
    const ort = await ModelRuntime.create(model, int8c({ nativeDecode: false }));
    let [want] = await ort.step([{ seqId: "s", tokens: prompt, slot: 0 }]);
    const tokens: number[] = [];
    const wants: Float32Array[] = [];
    for (let i = 0; i < 6; i++) {
      tokens.push(argmax(want!));
      [want] = await ort.step([{ seqId: "s", tokens: [tokens[i]!], slot: 0 }]);
      wants.push(Float32Array.from(want!));
    }
    await ort.dispose();
    const runs: { isa: string; logits: Float32Array[] }[] = [];
    for (const isa of nativeDecodeAddon!.isas()) {
      const rt = await ModelRuntime.create(model, int8c({ nativeDecodeIsa: isa }));
      await rt.step([{ seqId: "s", tokens: prompt, slot: 0 }]);
      const logits: Float32Array[] = [];
      for (const t of tokens) {
        const [got] = await rt.step([{ seqId: "s", tokens: [t], slot: 0 }]);
        assert.equal(rt.lastTimings.native, true);
        logits.push(Float32Array.from(got!));
      }
      runs.push({ isa, logits });
      await rt.dispose();
    }
    for (const r of runs.slice(1)) assert.deepEqual(r.logits, runs[0]!.logits, `${r.isa} vs ${runs[0]!.isa}`);
    let worst = 0;
    runs[0]!.logits.forEach((got, i) => {
      const { diff, abs } = maxDiff(got, wants[i]!);
      worst = Math.max(worst, diff / abs);
      assert.equal(argmax(got), argmax(wants[i]!), `greedy token at step ${i}`);
    });
    console.log(`at ${prompt.length} positions: max relative difference ${worst.toExponential(2)}`);
    assert.ok(worst < REL_TOL, `relative logit difference ${worst}`);
  },
);

test("the addon rejects bad input with a TypeError or RangeError, never a crash", needsAddon, () => {
  const addon = nativeDecodeAddon!;
  const c = TINY_CONFIG;
  const model = generateBaseModel(c, 1);
  const W = c.numKvHeads * c.headDim;
  const kv = (cols: number) => Array.from({ length: c.numLayers }, () => new Float32Array(cols * W));
  const logits = new Float32Array(c.vocabSize);
  const weights = (linears: NativeLinear[]) => ({
    embed: model.weights.get("model.embed_tokens.weight")!.data,
    inputNorm: [0, 1].map((l) => model.weights.get(`model.layers.${l}.input_layernorm.weight`)!.data),
    postNorm: [0, 1].map((l) => model.weights.get(`model.layers.${l}.post_attention_layernorm.weight`)!.data),
    finalNorm: model.weights.get("model.norm.weight")!.data,
    linears,
  });
  const good = nativeLinears(model);
  assert.throws(() => addon.createModel(c, weights([])), {
    name: "RangeError",
    code: "ERR_DECODE_ARGS",
    message: "linears has 0 entries, expected 9",
  });
  assert.throws(() => addon.createModel(c, {} as never), {
    name: "TypeError",
    message: "missing property embed",
  });
  assert.throws(() => addon.createModel(c, {} as never, { isa: "neon" as never }), {
    name: "RangeError",
    code: "ERR_DECODE_ISA",
  });
  const swapped = [good[1]!, good[0]!, ...good.slice(2)];
  assert.throws(() => addon.createModel(c, weights(swapped)), {
    name: "RangeError",
    message: "q+k+v is [64, 64], expected [128, 64]",
  });
  const short = [{ ...good[0]!, data: good[0]!.data.subarray(1) }, ...good.slice(1)];
  assert.throws(() => addon.createModel(c, weights(short)), { name: "RangeError", code: "ERR_DECODE_ARGS" });
  assert.throws(() => addon.createModel(c, weights(good), { threads: 0 }), { name: "RangeError" });
  const m = addon.createModel(c, weights(good), { threads: 2 });
  addon.step(m, 3, 0, kv(1), kv(1), logits); // the good call
  assert.ok(logits.some((v) => v !== 0));
  assert.throws(() => addon.step(m, 3, 4, kv(4), kv(4), logits), {
    name: "RangeError",
    code: "ERR_DECODE_KV",
    message: "keys[l] has room for 128 floats, the step needs 160",
  });
  assert.throws(() => addon.step(m, 3, c.maxPositionEmbeddings, kv(1), kv(1), logits), {
    name: "RangeError",
    code: "ERR_DECODE_KV",
  });
  assert.throws(() => addon.step(m, c.vocabSize, 0, kv(1), kv(1), logits), { name: "RangeError" });
  assert.throws(() => addon.step(m, 1.5, 0, kv(1), kv(1), logits), { name: "RangeError" });
  assert.throws(() => addon.step(m, 1, 0, kv(1).slice(1), kv(1), logits), { name: "RangeError" });
  assert.throws(() => addon.step(m, 1, 0, kv(1), kv(1), new Float32Array(3)), { name: "RangeError" });
  assert.throws(
    () => addon.step(m, 1, 0, kv(1), [new Float64Array(W), new Float64Array(W)] as never, logits),
    {
      name: "TypeError",
    },
  );
  assert.throws(() => addon.step({} as never, 1, 0, kv(1), kv(1), logits), {
    name: "TypeError",
    code: "ERR_DECODE_MODEL",
  });
  assert.throws(() => (addon.step as (...a: unknown[]) => void)(m, 1), { name: "TypeError" });
  // An adapter of the wrong shape: refused before anything runs.
  const H = c.hiddenSize;
  const a = [new Float32Array(H * 4), new Float32Array(H * 4)];
  const b = [new Float32Array(4 * c.numHeads * c.headDim), new Float32Array(4 * c.numHeads * c.headDim)];
  addon.step(m, 3, 0, kv(1), kv(1), logits, { rank: 4, modules: [0], a, b }); // q_proj, rank 4: fine
  assert.throws(() => addon.step(m, 3, 0, kv(1), kv(1), logits, { rank: 4, modules: [0], a: [], b }), {
    name: "RangeError",
    message: "adapter.a has 0 entries, expected 2",
  });
  assert.throws(() => addon.step(m, 3, 0, kv(1), kv(1), logits, { rank: 8, modules: [0], a, b }), {
    name: "RangeError",
    message: "adapter.a[i] has 256 elements, expected 512",
  });
  assert.throws(() => addon.step(m, 3, 0, kv(1), kv(1), logits, { rank: 4, modules: [0, 0], a, b }), {
    name: "RangeError",
  });
  assert.throws(() => addon.step(m, 3, 0, kv(1), kv(1), logits, { rank: 4, modules: [7], a, b }), {
    name: "RangeError",
  });
  assert.throws(() => addon.step(m, 3, 0, kv(1), kv(1), logits, { rank: 4 } as never), { name: "TypeError" });
  // Linear layers set one by one (what the runtime does): a step needs all of them.
  const { linears: _, ...noLinears } = weights(good);
  const partial = addon.createModel(c, noLinears);
  addon.setLinear(partial, 0, good[0]!);
  assert.throws(() => addon.step(partial, 3, 0, kv(1), kv(1), logits), {
    name: "TypeError",
    code: "ERR_DECODE_MODEL",
    message: "the model has 1 of its 9 linear layers (setLinear)",
  });
  assert.throws(() => addon.setLinear(partial, 9, good[0]!), { name: "RangeError" });
  assert.throws(() => addon.setLinear(partial, 1, good[0]!), {
    name: "RangeError",
    message: "o_proj is [128, 64], expected [64, 64]",
  });
  for (const [i, l] of good.entries()) addon.setLinear(partial, i, l);
  const whole = Float32Array.from(logits);
  addon.step(m, 3, 0, kv(1), kv(1), whole);
  const piecewise = new Float32Array(c.vocabSize);
  addon.step(partial, 3, 0, kv(1), kv(1), piecewise);
  assert.deepEqual(piecewise, whole);
  // Weights on ordinary pages instead of huge ones: the same logits.
  const plain = addon.createModel(c, weights(good), { hugePages: false });
  const onPlain = new Float32Array(c.vocabSize);
  addon.step(plain, 3, 0, kv(1), kv(1), onPlain);
  assert.deepEqual(onPlain, whole);
  assert.throws(() => addon.createModel(c, weights(good), { hugePages: 1 as never }), {
    name: "TypeError",
    message: "hugePages must be a boolean",
  });
  // The embedding is held by reference: a detached buffer is refused at the next step, not read.
  const own = Float32Array.from(weights(good).embed);
  const held = addon.createModel(c, { ...weights(good), embed: own });
  addon.step(held, 3, 0, kv(1), kv(1), onPlain);
  assert.deepEqual(onPlain, whole);
  structuredClone(own.buffer, { transfer: [own.buffer] });
  assert.throws(() => addon.step(held, 3, 0, kv(1), kv(1), onPlain), {
    name: "RangeError",
    message: /the model's embedding \(its buffer was detached\?\) has 0 elements/,
  });
  // The embedding from a file mapping (what the runtime does with its weights file), page-aligned.
  const dir = mkdtempSync(join(tmpdir(), "decode-native-"));
  const path = join(dir, "embed.bin");
  const table = weights(good).embed;
  const bytes = new Uint8Array(table.byteLength + 8192);
  bytes.set(new Uint8Array(table.buffer, table.byteOffset, table.byteLength), 4096);
  writeFileSync(path, bytes);
  assert.throws(() => addon.mapEmbedding(held, path, 100), { name: "RangeError", code: "ERR_DECODE_ARGS" });
  assert.throws(() => addon.mapEmbedding(held, path, 12288), {
    name: "RangeError",
    message: "the file holds no whole embedding at that offset",
  });
  assert.throws(() => addon.mapEmbedding(held, join(dir, "none"), 0), {
    name: "RangeError",
    message: /cannot open/,
  });
  addon.mapEmbedding(held, path, 4096); // replaces the detached array
  addon.step(held, 3, 0, kv(1), kv(1), onPlain);
  assert.deepEqual(onPlain, whole);
  addon.dispose(held);
  rmSync(dir, { recursive: true });
  addon.dispose(plain);
  addon.dispose(partial);
  addon.dispose(m);
  addon.dispose(m); // a no-op
  assert.throws(() => addon.step(m, 1, 0, kv(1), kv(1), logits), { code: "ERR_DECODE_MODEL" });
});

/** The int8c linears in the order the addon takes: the graph's own hook, the bytes the session gets. */
function nativeLinears(model: BaseModel): NativeLinear[] {
  const linears: NativeLinear[] = [];
  buildLlamaGraph(model, {
    lora: null,
    weights: "int8c",
    onQuantized: (_, rows, cols, q) => linears.push({ rows, cols, ...q }),
  });
  return linears;
}

test("without the addon (OPENLEDGER_DECODE_NATIVE=off) an int8c runtime runs every step in onnxruntime", () => {
  const script = `
    import { ModelRuntime } from "./runtime.ts";
    import { TINY_CONFIG } from "./config.ts";
    import { generateBaseModel } from "./model.ts";
    import { nativeDecodeStatus } from "./native-decode.ts";
    const rt = await ModelRuntime.create(generateBaseModel(TINY_CONFIG, 1), { lora: false, intraOpThreads: 1, weights: "int8c" });
    await rt.step([{ seqId: 1, tokens: [1, 2], slot: 0 }]);
    await rt.step([{ seqId: 1, tokens: [3], slot: 0 }]);
    console.log(JSON.stringify({ status: nativeDecodeStatus(), decoder: rt.nativeDecoder, native: rt.lastTimings.native }));
    await rt.dispose();`;
  const res = spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
    cwd: import.meta.dirname,
    env: { ...process.env, OPENLEDGER_DECODE_NATIVE: "off" },
    encoding: "utf8",
  });
  assert.equal(res.status, 0, res.stderr);
  const out = JSON.parse(res.stdout.trim().split("\n").at(-1)!);
  assert.deepEqual(out, {
    status: { available: false, reason: "disabled by OPENLEDGER_DECODE_NATIVE=off" },
    decoder: null,
    native: false,
  });
});
