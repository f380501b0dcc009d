/**
 * Worker-thread entry of the CPU-heavy builds (tokenize + SA-IS + encode; influence training).
 * They are synchronous and can take minutes on a large version: on the main thread they would
 * block HTTP (health checks) and BullMQ's lock renewal (the job would be taken for stalled and
 * run twice). Started by `runBuildTask` in build-runner.ts, one thread per task.
 */
import { parentPort, workerData } from "node:worker_threads";
import {
  buildSpanIndex,
  type CorpusRow,
  encodeInfluenceModel,
  encodeLoraGradients,
  encodeSpanIndex,
  exportLogisticOnnx,
  indexStats,
  type LabelledRow,
  trainInfluenceModel,
} from "@openledger/attribution-core";
import { exampleLoraGradients, loadModel, loadPeftAdapter } from "@openledger/model-runtime";
import type { BuildTask, BuildThreadMessage } from "./build-runner.ts";
import { loadAttributionTokenizer } from "./tokenizer.ts";

const port = parentPort!;
const post = (m: BuildThreadMessage, chunks: readonly Uint8Array[] = []) => {
  // Move (not copy) the big section buffers to the main thread: a 200 MB structured clone would
  // block its event loop. Small buffers may come from Buffer's shared pool: those are copied.
  const transfer = [...new Set(chunks.map((c) => c.buffer))].filter(
    (b): b is ArrayBuffer => b instanceof ArrayBuffer && b.byteLength >= 1 << 20,
  );
  port.postMessage(m, transfer);
};

async function run(task: BuildTask): Promise<void> {
  if (task.kind === "span") {
    const tokenizer = await loadAttributionTokenizer(task.tokenizer);
    const corpus: CorpusRow[] = [];
    const step = Math.max(1, Math.floor(task.rows.length / 20));
    for (let i = 0; i < task.rows.length; i++) {
      const r = task.rows[i]!;
      corpus.push({
        rowId: r.rowId,
        contributionId: r.contributionId,
        contributorId: r.contributorId,
        tokens: tokenizer.encode(r.text),
      });
      if (i % step === 0)
        post({ type: "progress", phase: "tokenize", percent: Math.floor((i / task.rows.length) * 10) });
    }
    let last = -1;
    const index = buildSpanIndex(corpus, {
      vocabSize: tokenizer.vocabSize,
      meta: { ...task.meta, tokenizer: tokenizer.id },
      onProgress: ({ phase, fraction }) => {
        const percent = 10 + Math.floor(fraction * 80);
        if (percent !== last) {
          last = percent;
          post({ type: "progress", phase, percent });
        }
      },
    });
    const { meta: _meta, ...stats } = indexStats(index);
    const chunks = encodeSpanIndex(index);
    post({ type: "done", result: { kind: "span", chunks, stats } }, chunks);
    return;
  }
  if (task.kind === "lora-gradients") {
    // Each row as the factory trains it (`documentTokens`: with the tokenizer's special tokens).
    const { model, tokenizer } = await loadModel({ dir: task.modelDir });
    const adapter = await loadPeftAdapter(model.config, task.adapterDir);
    const docs = task.rows.map((r) => tokenizer.encode(r.text, { addSpecialTokens: true }));
    const grads = await exampleLoraGradients(model, adapter, docs, {
      seq: task.seq,
      onProgress: (done, total) =>
        post({ type: "progress", phase: "lora-gradients", percent: Math.floor((done / total) * 95) }),
    });
    const chunks = encodeLoraGradients({
      grads: { rows: docs.length, blocks: grads.blocks, values: grads.values },
      rows: task.rows.map((r) => ({
        rowId: r.rowId,
        contributionId: r.contributionId,
        contributorId: r.contributorId,
      })),
      meta: task.meta,
    });
    const stats = {
      rows: docs.length,
      seq: task.seq,
      blocks: grads.blocks.length,
      dim: grads.blocks.reduce((s, b) => s + b, 0),
      tokens: docs.reduce((s, d) => s + d.length, 0),
    };
    post({ type: "done", result: { kind: "lora-gradients", chunks, stats } }, chunks);
    return;
  }
  const rows: LabelledRow[] = task.rows;
  const model = trainInfluenceModel(rows, task.features, {
    classes: task.classes,
    lambda: task.lambda,
    meta: task.meta,
  });
  const chunks = encodeInfluenceModel(model);
  const onnx = exportLogisticOnnx(model.influence.model);
  post(
    {
      type: "done",
      result: { kind: "influence", chunks, onnx, iterations: model.meta.iterations as number },
    },
    [...chunks, onnx],
  );
}

run(workerData as BuildTask).catch((err: unknown) =>
  post({ type: "error", message: (err as Error)?.stack ?? String(err) }),
);
