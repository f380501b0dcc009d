import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import onnxProto from "onnx-proto";
import { generateRandomAdapter, type LoraAdapter } from "./adapter.ts";
import { TINY_BOS, TINY_CONFIG } from "./config.ts";
import { ModelRuntimeError } from "./errors.ts";
import { buildLlamaGraph, LORA_ON } from "./graph.ts";
import { AdapterMerger } from "./merge.ts";
import { type BaseModel, generateBaseModel } from "./model.ts";
import { mergeAdapter, referenceForward } from "./reference.ts";
import { ModelRuntime } from "./runtime.ts";
import { argmax } from "./sampler.ts";

const TOL = 1e-4;
const model: BaseModel = generateBaseModel(TINY_CONFIG, 1);
const bytes = (s: string) => [TINY_BOS, ...new TextEncoder().encode(s)];

function maxAbsErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let e = 0;
  for (let i = 0; i < a.length; i++) e = Math.max(e, Math.abs(a[i]! - b[i]!));
  return e;
}

function lastRef(tokens: number[], adapter?: LoraAdapter, m: BaseModel = model): Float64Array {
  return referenceForward(m, tokens, adapter).at(-1)!;
}

let rt: ModelRuntime;
let base: ModelRuntime;
before(async () => {
  rt = await ModelRuntime.create(model, { slots: 8, rankBuckets: [16], intraOpThreads: 2 });
  base = await ModelRuntime.create(model, { lora: false, intraOpThreads: 2 });
});
after(async () => {
  await rt.dispose();
  await base.dispose();
});

test("no adapter: ONNX prefill matches the reference forward (LoRA graph and base graph)", async () => {
  const tokens = bytes("Hello, world");
  const ref = lastRef(tokens);
  const [viaLora] = await rt.step([{ seqId: "na", tokens, slot: 0 }]);
  const [viaBase] = await base.step([{ seqId: "na", tokens, slot: 0 }]);
  const e1 = maxAbsErr(viaLora!, ref);
  const e2 = maxAbsErr(viaBase!, ref);
  console.log(`no adapter: max abs err lora-graph ${e1.toExponential(2)}, base-graph ${e2.toExponential(2)}`);
  assert.ok(e1 < TOL && e2 < TOL);
  rt.release("na");
  base.release("na");
});

test("a step without adapter rows skips the LoRA deltas: every LoRA node is inside an If on lora_on", async () => {
  const { bytes: graphBytes } = buildLlamaGraph(model, {
    lora: { targetModules: ["q_proj", "k_proj", "v_proj", "o_proj"], rankBuckets: [8, 16] },
  });
  const graph = onnxProto.onnx.ModelProto.decode(graphBytes).graph!;
  const loraInputs = new Set(
    graph.input!.map((i) => i.name!).filter((i) => i.startsWith("lora_") && i !== LORA_ON),
  );
  // q/k/v's stacks are packed (one A input, one B input per output width: q, and k+v with grouped
  // KV heads), o's are its own: each fed input costs a step whether or not it reads it.
  assert.equal(loraInputs.size, 2 * (2 + TINY_CONFIG.numLayers * 5));
  for (const name of [
    "lora_a.8.0.q_proj+k_proj+v_proj",
    "lora_b.8.0.q_proj",
    "lora_b.16.1.k_proj+v_proj",
    "lora_b.16.1.o_proj",
  ])
    assert.ok(loraInputs.has(name), name);
  const readsLora = (n: { input?: string[] | null }) => (n.input ?? []).some((i) => loraInputs.has(i));
  assert.deepEqual(
    graph.node!.filter((n) => n.opType !== "If" && readsLora(n)).map((n) => n.name),
    [],
    "no node outside an If reads a LoRA input",
  );
  const ifs = graph.node!.filter((n) => n.opType === "If");
  // One per layer for q/k/v (one matmul, then split) and one for o.
  assert.equal(ifs.length, 2 * TINY_CONFIG.numLayers);
  for (const n of ifs) {
    assert.deepEqual(n.input, [LORA_ON]);
    const then = n.attribute!.find((a) => a.name === "then_branch")!.g!;
    const other = n.attribute!.find((a) => a.name === "else_branch")!.g!;
    assert.ok(then.node!.some(readsLora), `${n.name}: the deltas are in the then-branch`);
    assert.ok(
      other.node!.every((m) => m.opType === "Identity" && !readsLora(m)),
      `${n.name}: the else-branch passes the base outputs through`,
    );
  }
  // Both branches give the base model's logits for a row without an adapter (its delta is zero).
  const tokens = bytes("skip the branch");
  const [alone] = await rt.step([{ seqId: "skip-alone", tokens, slot: 0 }]);
  rt.loadAdapter(7, generateRandomAdapter(TINY_CONFIG, { rank: 8, seed: "skip" }));
  const [mixed] = await rt.step([
    { seqId: "skip-mixed", tokens, slot: 0 },
    { seqId: "skip-other", tokens: bytes("other"), slot: 7 },
  ]);
  const [plain] = await base.step([{ seqId: "skip-base", tokens, slot: 0 }]);
  assert.ok(maxAbsErr(alone!, plain!) < TOL && maxAbsErr(mixed!, plain!) < TOL);
  rt.clearSlot(7);
  for (const id of ["skip-alone", "skip-mixed", "skip-other"]) rt.release(id);
  base.release("skip-base");
});

test("KV-cache decoding matches full recomputation", async () => {
  const tokens = bytes("abcdefghij");
  const full = referenceForward(model, tokens);
  let worst = 0;
  let [logits] = await base.step([{ seqId: "kv", tokens: tokens.slice(0, 3), slot: 0 }]);
  worst = Math.max(worst, maxAbsErr(logits!, full[2]!));
  for (let t = 3; t < tokens.length; t++) {
    [logits] = await base.step([{ seqId: "kv", tokens: [tokens[t]!], slot: 0 }]);
    worst = Math.max(worst, maxAbsErr(logits!, full[t]!));
    // and against the graph itself recomputing the whole prefix without cache
    const [again] = await base.step([{ seqId: `kv-full-${t}`, tokens: tokens.slice(0, t + 1), slot: 0 }]);
    base.release(`kv-full-${t}`);
    worst = Math.max(worst, maxAbsErr(logits!, again!));
  }
  console.log(`kv-cache decode vs full recomputation: max abs err ${worst.toExponential(2)}`);
  assert.ok(worst < TOL);
  assert.equal(base.sequenceLength("kv"), tokens.length);
  base.release("kv");
});

test('attention is one Attention node per layer; "ops" (the plain-node chain, kept for comparison) matches the reference too', async () => {
  const nodes = (attention: "fused" | "ops") =>
    onnxProto.onnx.ModelProto.decode(buildLlamaGraph(model, { lora: null, attention }).bytes).graph!.node!;
  const fused = nodes("fused");
  assert.equal(fused.filter((n) => n.opType === "Attention").length, TINY_CONFIG.numLayers);
  assert.ok(!fused.some((n) => n.opType === "Softmax" || n.opType === "Transpose"));
  assert.ok(nodes("ops").length > fused.length + 10 * TINY_CONFIG.numLayers);
  // Every layer's new K/V leave in one output (onnxruntime-node copies each output apiece).
  assert.deepEqual(buildLlamaGraph(model, { lora: null }).outputNames.sort(), ["logits", "new_kv"]);

  const r = await ModelRuntime.create(model, {
    slots: 2,
    rankBuckets: [8],
    intraOpThreads: 2,
    attention: "ops",
  });
  const adapter = generateRandomAdapter(TINY_CONFIG, { rank: 8, seed: "ops" });
  r.loadAdapter(1, adapter);
  // Prompts of different lengths (left padding, masked), then decode steps over the cache.
  const p1 = bytes("plain ops");
  const p2 = bytes("a longer second prompt");
  let worst = 0;
  let [l1, l2] = await r.step([
    { seqId: "x", tokens: p1, slot: 1 },
    { seqId: "y", tokens: p2, slot: 0 },
  ]);
  for (let s = 0; s < 3; s++) {
    worst = Math.max(worst, maxAbsErr(l1!, lastRef(p1, adapter)), maxAbsErr(l2!, lastRef(p2)));
    p1.push(argmax(l1!));
    p2.push(argmax(l2!));
    [l1, l2] = await r.step([
      { seqId: "x", tokens: [p1.at(-1)!], slot: 1 },
      { seqId: "y", tokens: [p2.at(-1)!], slot: 0 },
    ]);
  }
  console.log(`attention "ops": max abs err vs reference ${worst.toExponential(2)}`);
  assert.ok(worst < TOL);
  await r.dispose();
});

test("a single row's cache grows in place past its buffer's capacity and stays exact", async () => {
  // 60-token prompt, then 100 decode steps: the in-place buffer (64 positions at first) doubles twice.
  const tokens = Array.from({ length: 160 }, (_, i) => 1 + ((i * 7) % 250));
  let worst = 0;
  let [logits] = await base.step([{ seqId: "grow", tokens: tokens.slice(0, 60), slot: 0 }]);
  for (let t = 60; t < tokens.length; t++) {
    [logits] = await base.step([{ seqId: "grow", tokens: [tokens[t]!], slot: 0 }]);
    if (t % 33 === 0 || t === tokens.length - 1) {
      const [again] = await base.step([{ seqId: `grow-${t}`, tokens: tokens.slice(0, t + 1), slot: 0 }]);
      base.release(`grow-${t}`);
      worst = Math.max(worst, maxAbsErr(logits!, again!));
    }
  }
  console.log(
    `in-place KV growth to ${tokens.length} positions: max abs err vs recomputation ${worst.toExponential(2)}`,
  );
  assert.ok(worst < TOL);
  base.release("grow");
});

test("one adapter matches the reference with LoRA and the merged weights W + scale*B*A", async () => {
  const adapter = generateRandomAdapter(TINY_CONFIG, { rank: 8, seed: "one" });
  rt.loadAdapter(1, adapter);
  const tokens = bytes("adapter!");
  const [logits] = await rt.step([{ seqId: "one", tokens, slot: 1 }]);
  const eRef = maxAbsErr(logits!, lastRef(tokens, adapter));
  const eMerged = maxAbsErr(logits!, lastRef(tokens, undefined, mergeAdapter(model, adapter)));
  const delta = maxAbsErr(logits!, lastRef(tokens));
  console.log(
    `one adapter: max abs err vs reference ${eRef.toExponential(2)}, vs merged ${eMerged.toExponential(2)}`,
  );
  assert.ok(eRef < TOL && eMerged < TOL);
  assert.ok(delta > 0.1, "the adapter changes the logits");
  rt.release("one");
});

for (const [rankBuckets, loraMode] of [
  [[16], "segment"],
  [[4, 8, 16], "segment"],
  [[8, 16], "row"],
] as const) {
  test(`batch of rows with different adapters and ranks (rankBuckets ${rankBuckets}, ${loraMode})`, async () => {
    const r = await ModelRuntime.create(model, {
      slots: 6,
      rankBuckets: [...rankBuckets],
      loraMode,
      intraOpThreads: 2,
    });
    const ranks = [2, 4, 8, 16, 5];
    const adapters = ranks.map((rank, i) =>
      generateRandomAdapter(TINY_CONFIG, { rank, seed: `mix-${i}`, useRslora: i === 4 }),
    );
    for (const [i, a] of adapters.entries()) r.loadAdapter(i + 1, a);
    const prompts = ["a", "longer prompt", "xyz", "the quick brown", "q", "no adapter row"].map(bytes);
    const slotOf = [1, 2, 3, 4, 5, 0];
    const seqs = prompts.map((p, i) => ({ id: `m${i}`, tokens: [...p], slot: slotOf[i]! }));
    const adapterOf = (slot: number) => (slot === 0 ? undefined : adapters[slot - 1]);
    let worstRef = 0;
    let worstMerged = 0;
    const logits = await r.step(seqs.map((s) => ({ seqId: s.id, tokens: s.tokens, slot: s.slot })));
    seqs.forEach((s, i) => {
      worstRef = Math.max(worstRef, maxAbsErr(logits[i]!, lastRef(s.tokens, adapterOf(s.slot))));
      const a = adapterOf(s.slot);
      const merged = a ? mergeAdapter(model, a) : model;
      worstMerged = Math.max(worstMerged, maxAbsErr(logits[i]!, lastRef(s.tokens, undefined, merged)));
      s.tokens.push(argmax(logits[i]!));
    });
    // Continuous batching: decode steps where one sequence leaves and a new one joins.
    let live = seqs.slice();
    for (let step = 0; step < 3; step++) {
      if (step === 1) {
        r.release(live[0]!.id);
        live = live.slice(1);
        live.push({ id: "joiner", tokens: bytes("joins late"), slot: 3 });
      }
      const out = await r.step(
        live.map((s) => ({
          seqId: s.id,
          tokens: r.hasSequence(s.id) ? [s.tokens.at(-1)!] : s.tokens,
          slot: s.slot,
        })),
      );
      live.forEach((s, i) => {
        worstRef = Math.max(worstRef, maxAbsErr(out[i]!, lastRef(s.tokens, adapterOf(s.slot))));
        s.tokens.push(argmax(out[i]!));
      });
    }
    console.log(
      `mixed adapters (ranks ${ranks}, buckets ${rankBuckets}, ${loraMode}): max abs err vs reference ${worstRef.toExponential(2)}, vs merged ${worstMerged.toExponential(2)}`,
    );
    assert.ok(worstRef < TOL && worstMerged < TOL);
    await r.dispose();
  });
}

test("replacing the adapter in a slot takes effect without rebuilding the session", async () => {
  const x = generateRandomAdapter(TINY_CONFIG, { rank: 4, seed: "x" });
  const y = generateRandomAdapter(TINY_CONFIG, { rank: 16, seed: "y" });
  const tokens = bytes("swap");
  rt.loadAdapter(2, x);
  const [lx] = await rt.step([{ seqId: "sx", tokens, slot: 2 }]);
  rt.loadAdapter(2, y);
  const [ly] = await rt.step([{ seqId: "sy", tokens, slot: 2 }]);
  assert.ok(maxAbsErr(lx!, lastRef(tokens, x)) < TOL);
  assert.ok(maxAbsErr(ly!, lastRef(tokens, y)) < TOL);
  rt.release("sx");
  rt.release("sy");
});

async function greedy(r: ModelRuntime, id: string, prompt: number[], slot: number, n: number) {
  const out: number[] = [];
  let [logits] = await r.step([{ seqId: id, tokens: prompt, slot }]);
  for (let i = 0; i < n; i++) {
    out.push(argmax(logits!));
    [logits] = await r.step([{ seqId: id, tokens: [out.at(-1)!], slot }]);
  }
  r.release(id);
  return out;
}

test("greedy output of a sequence is identical alone and batched with other adapters' sequences", async () => {
  for (let s = 1; s <= 4; s++)
    rt.loadAdapter(s, generateRandomAdapter(TINY_CONFIG, { rank: 4 * s, seed: `g${s}` }));
  const n = 16;
  const targets = [
    { prompt: bytes("tell me"), slot: 2 },
    { prompt: bytes("x"), slot: 0 },
    { prompt: bytes("a longer prompt for the target"), slot: 4 },
  ];
  for (const [ti, target] of targets.entries()) {
    const alone = await greedy(rt, `alone-${ti}`, target.prompt, target.slot, n);
    // Batched: other sequences join at different steps with different prompt lengths and adapters.
    const others = [
      { id: `o1-${ti}`, prompt: bytes("x"), slot: 1, joinAt: 0 },
      { id: `o2-${ti}`, prompt: bytes("a much longer prompt here"), slot: 3, joinAt: 0 },
      { id: `o3-${ti}`, prompt: bytes("mid"), slot: 0, joinAt: 3 },
      { id: `o4-${ti}`, prompt: bytes("late joiner"), slot: 4, joinAt: 6 },
      { id: `o5-${ti}`, prompt: bytes("same adapter as the target"), slot: target.slot, joinAt: 2 },
    ];
    const last = new Map<string, number>();
    const batched: number[] = [];
    const t = `t-${ti}`;
    for (let step = 0; step <= n; step++) {
      const rows = [];
      if (step === 0) rows.push({ seqId: t, tokens: target.prompt, slot: target.slot });
      else rows.push({ seqId: t, tokens: [batched.at(-1)!], slot: target.slot });
      for (const o of others) {
        if (step === o.joinAt) rows.push({ seqId: o.id, tokens: o.prompt, slot: o.slot });
        else if (step > o.joinAt && step < o.joinAt + 5)
          rows.push({ seqId: o.id, tokens: [last.get(o.id)!], slot: o.slot });
        else if (step === o.joinAt + 5) rt.release(o.id);
      }
      const out = await rt.step(rows);
      rows.forEach((row, i) => {
        if (row.seqId === t) {
          if (step < n) batched.push(argmax(out[i]!));
        } else last.set(String(row.seqId), argmax(out[i]!));
      });
    }
    assert.deepEqual(batched, alone, `target ${ti}`);
    rt.release(t);
    for (const o of others) rt.release(o.id);
  }
});

test("chunked prefill (serving-core's maxPrefillTokens): a prompt fed in chunks beside other rows gives one-shot prefill's logits and tokens", async () => {
  const adapters = [1, 2].map((s) => generateRandomAdapter(TINY_CONFIG, { rank: 4 * s, seed: `c${s}` }));
  for (const [i, a] of adapters.entries()) rt.loadAdapter(i + 1, a);
  const prompt = bytes("a prompt long enough to be cut into several chunks");
  const n = 8;
  for (const slot of [0, 2]) {
    const oneShot = await greedy(rt, `one-${slot}`, prompt, slot, n);
    // Chunks of 7, 1 and the rest; each step also carries a decoding sequence (resident batch,
    // the chunks run detached beside it) and, at the second chunk, another prompt's first step.
    const id = `chunked-${slot}`;
    const cuts = [0, 7, 8, prompt.length];
    let decoding = [...bytes("other")];
    await rt.step([{ seqId: "dec", tokens: decoding, slot: 1 }]);
    let logits: Float32Array | undefined;
    let worst = 0;
    for (let c = 0; c + 1 < cuts.length; c++) {
      const rows = [
        { seqId: "dec", tokens: [decoding.at(-1)!], slot: 1 },
        { seqId: id, tokens: prompt.slice(cuts[c], cuts[c + 1]), slot },
        ...(c === 1 ? [{ seqId: "joiner", tokens: bytes("join"), slot: 2 }] : []),
      ];
      const out = await rt.step(rows);
      decoding = [...decoding, argmax(out[0]!)];
      logits = out[1];
      // Every chunk's last position is exact against the reference over the prefix so far.
      const ref = lastRef(prompt.slice(0, cuts[c + 1]), slot === 0 ? undefined : adapters[slot - 1]);
      worst = Math.max(worst, maxAbsErr(logits!, ref));
    }
    rt.release("joiner");
    const chunked: number[] = [];
    for (let i = 0; i < n; i++) {
      chunked.push(argmax(logits!));
      const out = await rt.step([
        { seqId: "dec", tokens: [decoding.at(-1)!], slot: 1 },
        { seqId: id, tokens: [chunked.at(-1)!], slot },
      ]);
      decoding = [...decoding, argmax(out[0]!)];
      logits = out[1];
    }
    rt.release(id);
    rt.release("dec");
    assert.deepEqual(chunked, oneShot, `slot ${slot}`);
    assert.ok(worst < TOL, `chunk logits vs reference ${worst}`);
  }
});

test("bad slots are rejected with typed errors", async () => {
  await assert.rejects(
    rt.step([{ seqId: "bad", tokens: [1], slot: 7 }]),
    (e: unknown) => e instanceof ModelRuntimeError && e.code === "SLOT_OUT_OF_RANGE",
  );
  assert.throws(
    () => rt.loadAdapter(1, generateRandomAdapter(TINY_CONFIG, { rank: 32, seed: 1 })),
    (e: unknown) => e instanceof ModelRuntimeError && e.code === "ADAPTER_RANK_TOO_LARGE",
  );
  assert.throws(
    () => rt.loadAdapter(0, generateRandomAdapter(TINY_CONFIG, { rank: 4, seed: 1 })),
    (e: unknown) => e instanceof ModelRuntimeError && e.code === "SLOT_OUT_OF_RANGE",
  );
  assert.throws(
    () =>
      rt.loadAdapter(
        1,
        generateRandomAdapter(TINY_CONFIG, { rank: 4, seed: 1, targetModules: ["gate_proj"] }),
      ),
    (e: unknown) => e instanceof ModelRuntimeError && e.code === "ADAPTER_TARGET_UNSUPPORTED",
  );
  assert.equal(rt.hasSequence("bad"), false);
});

test("merged-weights baseline: AdapterMerger + external weights equal the in-graph LoRA", async () => {
  const adapter = generateRandomAdapter(TINY_CONFIG, { rank: 8, seed: "merge" });
  const merger = await AdapterMerger.create(model, ["q_proj", "k_proj", "v_proj", "o_proj"], 8, 2);
  const merged = await ModelRuntime.create(model, {
    lora: false,
    externalWeights: ["q_proj", "k_proj", "v_proj", "o_proj"],
    intraOpThreads: 2,
  });
  for (const [key, w] of await merger.merge(adapter)) {
    const [l, m] = key.split(".");
    merged.setExternalWeight(Number(l), m as "q_proj", w);
  }
  const tokens = bytes("merged");
  const [viaMerge] = await merged.step([{ seqId: "m", tokens, slot: 0 }]);
  const err = maxAbsErr(viaMerge!, lastRef(tokens, adapter));
  console.log(`merged-weights runtime vs reference with LoRA: max abs err ${err.toExponential(2)}`);
  assert.ok(err < TOL);
  await merger.dispose();
  await merged.dispose();
});

test("adapter sets changing between steps (new, dropped, empty, replaced) stay exact", async () => {
  const r = await ModelRuntime.create(model, { slots: 7, rankBuckets: [8], intraOpThreads: 2 });
  const adapters = [1, 2, 3, 4, 5, 6].map((i) =>
    generateRandomAdapter(TINY_CONFIG, { rank: 1 + (i % 8), seed: `c${i}` }),
  );
  for (const [i, a] of adapters.entries()) r.loadAdapter(i + 1, a);
  const sets = [[1, 2, 3], [2, 3, 4], [4], [], [5, 1, 6], [6, 5], [1, 2, 3, 4, 5, 6]];
  let worst = 0;
  for (const [stepNo, set] of sets.entries()) {
    if (stepNo === 5) r.loadAdapter(6, adapters[0]!); // replace the adapter behind a slot in use
    const expected = (slot: number) => (stepNo >= 5 && slot === 6 ? adapters[0] : adapters[slot - 1]);
    const rows = [...set, 0].map((slot, i) => ({
      seqId: `c${stepNo}-${i}`,
      tokens: bytes(`s${stepNo}r${i}`),
      slot,
    }));
    const out = await r.step(rows);
    rows.forEach((row, i) => {
      worst = Math.max(
        worst,
        maxAbsErr(out[i]!, lastRef(row.tokens, row.slot ? expected(row.slot) : undefined)),
      );
      r.release(row.seqId);
    });
  }
  console.log(`changing adapter sets: max abs err vs reference ${worst.toExponential(2)}`);
  assert.ok(worst < TOL);
  await r.dispose();
});

test("joining sequences run detached next to the resident batch, then merge into it; all exact", async () => {
  const r = await ModelRuntime.create(model, { slots: 3, rankBuckets: [8], intraOpThreads: 2 });
  const a1 = generateRandomAdapter(TINY_CONFIG, { rank: 8, seed: "j1" });
  const a2 = generateRandomAdapter(TINY_CONFIG, { rank: 4, seed: "j2" });
  r.loadAdapter(1, a1);
  r.loadAdapter(2, a2);
  const seqs = new Map<string, { tokens: number[]; slot: number }>();
  let worst = 0;
  const run = async (plan: { id: string; prompt?: string; slot?: number }[]) => {
    const rows = plan.map((p) => {
      if (p.prompt !== undefined) {
        seqs.set(p.id, { tokens: bytes(p.prompt), slot: p.slot ?? 0 });
        return { seqId: p.id, tokens: seqs.get(p.id)!.tokens.slice(), slot: p.slot ?? 0 };
      }
      const s = seqs.get(p.id)!;
      return { seqId: p.id, tokens: [s.tokens.at(-1)!], slot: s.slot };
    });
    const out = await r.step(rows);
    rows.forEach((row, i) => {
      const s = seqs.get(String(row.seqId))!;
      const adapter = s.slot === 1 ? a1 : s.slot === 2 ? a2 : undefined;
      worst = Math.max(worst, maxAbsErr(out[i]!, lastRef(s.tokens, adapter)));
      s.tokens.push(argmax(out[i]!));
    });
    return r.lastTimings;
  };
  await run([
    { id: "a", prompt: "first", slot: 1 },
    { id: "b", prompt: "second one", slot: 0 },
  ]);
  assert.equal((await run([{ id: "a" }, { id: "b" }])).kvRebuilt, false); // steady decode
  // a new sequence joins with its prompt: decode rows stay resident, the prompt runs detached
  const join = await run([{ id: "a" }, { id: "b" }, { id: "c", prompt: "a third prompt", slot: 2 }]);
  assert.deepEqual([join.runs, join.kvRebuilt], [2, false]);
  // a prefill-only step (scheduler "separate" mode) leaves the resident batch alone
  const sep = await run([{ id: "d", prompt: "fourth", slot: 1 }]);
  assert.deepEqual([sep.runs, sep.kvRebuilt], [1, false]);
  assert.equal((await run([{ id: "a" }, { id: "b" }])).kvRebuilt, false);
  // the joiners decode: one rebuild merges them into the resident batch, then steady again
  assert.equal((await run([{ id: "a" }, { id: "b" }, { id: "c" }, { id: "d" }])).kvRebuilt, true);
  const steady = await run([{ id: "a" }, { id: "b" }, { id: "c" }, { id: "d" }]);
  assert.deepEqual([steady.runs, steady.kvRebuilt], [1, false]);
  r.release("b");
  await run([{ id: "a" }, { id: "c" }, { id: "d" }]);
  // a sequence leaves and another joins in the same step: the decode rows are rebuilt into the
  // resident batch and the prompt runs detached beside it (not padded into one batch with them)
  r.release("a");
  const leaveJoin = await run([{ id: "c" }, { id: "d" }, { id: "e", prompt: "the fifth", slot: 1 }]);
  assert.deepEqual([leaveJoin.runs, leaveJoin.kvRebuilt], [2, true]);
  await run([{ id: "c" }, { id: "d" }, { id: "e" }]);
  // prompt runs and decode runs keep their own adapter stacks: a prefill-only step (separate
  // mode) on another adapter set does not make the next decode step copy its adapters back
  await run([{ id: "f", prompt: "sixth", slot: 2 }]);
  assert.equal((await run([{ id: "c" }, { id: "d" }, { id: "e" }])).adapterCopies, 0);
  console.log(`join/leave paths: max abs err vs reference ${worst.toExponential(2)}`);
  assert.ok(worst < TOL);
  await r.dispose();
});

test("slot stacks: waves over many adapters in two rank buckets, slot reuse and eviction under live sequences; no step copies an adapter, all exact", async () => {
  const r = await ModelRuntime.create(model, { slots: 12, rankBuckets: [4, 8], intraOpThreads: 2 });
  const pool = [...Array(14).keys()].map((i) =>
    generateRandomAdapter(TINY_CONFIG, { rank: 1 + (i % 8), seed: `w${i}` }),
  );
  /** The adapter behind each slot (what the reference uses). */
  const inSlot = new Map<number, LoraAdapter>();
  const load = (slot: number, i: number) => {
    r.loadAdapter(slot, pool[i]!);
    inSlot.set(slot, pool[i]!);
  };
  for (let slot = 1; slot <= 11; slot++) load(slot, slot - 1);
  // ranks 1-4 in the rank-4 bucket (slots 1-4, 9-11), 5-8 in the rank-8 one; lowest free position first
  const positions = (bucket: number) =>
    [...inSlot.keys()]
      .filter((s) => r.slots.get(s)!.bucket === bucket)
      .map((s) => r.slots.get(s)!.position)
      .sort((x, y) => x - y);
  assert.deepEqual(positions(4), [0, 1, 2, 3, 4, 5, 6]);
  assert.deepEqual(positions(8), [0, 1, 2, 3]);
  const seqs = new Map<string, { tokens: number[]; slot: number; adapter: LoraAdapter | undefined }>();
  let worst = 0;
  const step = async (decode: string[], prompts: [string, number][]) => {
    const rows = [
      ...decode.map((id) => ({
        seqId: id,
        tokens: [seqs.get(id)!.tokens.at(-1)!],
        slot: seqs.get(id)!.slot,
      })),
      ...prompts.map(([id, slot]) => {
        seqs.set(id, { tokens: bytes(`p-${id}`), slot, adapter: inSlot.get(slot) });
        return { seqId: id, tokens: seqs.get(id)!.tokens.slice(), slot };
      }),
    ];
    const out = await r.step(rows);
    rows.forEach((row, i) => {
      const s = seqs.get(String(row.seqId))!;
      worst = Math.max(worst, maxAbsErr(out[i]!, lastRef(s.tokens, s.adapter)));
      s.tokens.push(argmax(out[i]!));
    });
    assert.equal(r.lastTimings.adapterCopies, 0);
  };
  const wave = (tag: string, slots: number[]) =>
    slots.map((slot, i) => [`${tag}${i}`, slot] as [string, number]);
  const ids = (tag: string, n: number) => [...Array(n).keys()].map((i) => `${tag}${i}`);
  // a prefill-only wave over 8 adapters of both buckets, then its decode steps
  await step([], wave("a", [1, 2, 3, 4, 5, 6, 7, 8]));
  await step(ids("a", 8), []);
  // a second wave joins the live rows, one base-model row among them
  await step(ids("a", 8), wave("b", [9, 10, 11, 0, 2]));
  const live = [...ids("a", 8), ...ids("b", 5)];
  await step(live, []);
  // eviction: slot 3's sequence ends and the slot is cleared; a new adapter goes into slot 3, under
  // live sequences of its neighbours, at its old position (the lowest free)
  r.release("a2");
  const before = r.slots.get(3)!;
  r.clearSlot(3);
  load(3, 11); // rank 4: bucket 4, where slot 3 (rank 3) was
  assert.equal(r.slots.get(3)!.position, before.position);
  const after1 = live.filter((id) => id !== "a2");
  await step(after1, wave("c", [3, 3, 1]));
  // slot reuse: slot 7 (rank 7, bucket 8) is written over (no clear) once its sequence has ended;
  // the sequences on the other slots of its stack go on
  r.release("a6");
  load(7, 13); // rank 6: bucket 8
  const after2 = [...after1.filter((id) => id !== "a6"), ...ids("c", 3)];
  await step(after2, wave("d", [7]));
  // the slot write ran before this step, on this thread: the step reports its time; the next one none
  assert.ok(r.lastTimings.slotWriteMs > 0);
  await step([...after2, "d0"], []);
  assert.equal(r.lastTimings.slotWriteMs, 0);
  // the rank-4 stack grew past its first buffer of 4 entries (at the 5th write, views rebuilt)
  assert.deepEqual([r.slots.stack(4).capacity, r.slots.stack(8).capacity], [8, 4]);
  // a wave whose slots sit at the two ends of a stack reads the range between them, exact: 5
  // unused entries of the rank-4 stack, and the one entry fed for the rank-8 bucket it does not use
  await step([], wave("e", [1, 11]));
  assert.equal(r.lastTimings.unusedAdapterReads, 5 + 1);
  console.log(`slot stacks: max abs err vs reference ${worst.toExponential(2)}`);
  assert.ok(worst < TOL);
  await r.dispose();
});

test("other shapes: GQA groups of 3 (SmolLM's 9/3 ratio), untied lm_head, rope theta 1e5, LoRA on MLP", async () => {
  const config = {
    ...TINY_CONFIG,
    hiddenSize: 96,
    numHeads: 6,
    numKvHeads: 2,
    headDim: 16,
    intermediateSize: 160,
    ropeTheta: 100000,
    tieWordEmbeddings: false,
  };
  const m = generateBaseModel(config, 11);
  const targetModules = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
  ] as const;
  const r = await ModelRuntime.create(m, { slots: 2, targetModules: [...targetModules], intraOpThreads: 2 });
  const adapter = generateRandomAdapter(config, {
    rank: 8,
    seed: "shape",
    targetModules: [...targetModules],
  });
  r.loadAdapter(1, adapter);
  const tokens = bytes("shape check");
  let worst = 0;
  let [logits] = await r.step([{ seqId: "s", tokens: tokens.slice(0, 5), slot: 1 }]);
  const full = referenceForward(m, tokens, adapter);
  worst = Math.max(worst, maxAbsErr(logits!, full[4]!));
  for (let t = 5; t < tokens.length; t++) {
    [logits] = await r.step([{ seqId: "s", tokens: [tokens[t]!], slot: 1 }]);
    worst = Math.max(worst, maxAbsErr(logits!, full[t]!));
  }
  const [plain] = await r.step([{ seqId: "p", tokens, slot: 0 }]);
  worst = Math.max(worst, maxAbsErr(plain!, referenceForward(m, tokens).at(-1)!));
  console.log(`GQA 6/2, untied head, MLP LoRA: max abs err vs reference ${worst.toExponential(2)}`);
  assert.ok(worst < TOL);
  await r.dispose();
});
