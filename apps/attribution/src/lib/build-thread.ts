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
  encodeSpanIndex,
  exportLogisticOnnx,
  indexStats,
  type LabelledRow,
  trainInfluenceModel,
} from "@openledger/attribution-core";
import type { BuildTask, BuildThreadMessage } from "./build-runner.ts";
import { loadAttributionTokenizer } from "./tokenizer.ts";

const port = parentPort!;
const post = (m: BuildThreadMessage) => port.postMessage(m);

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
    post({ type: "done", result: { kind: "span", chunks: encodeSpanIndex(index), stats } });
    return;
  }
  const rows: LabelledRow[] = task.rows;
  const model = trainInfluenceModel(rows, task.features, {
    classes: task.classes,
    lambda: task.lambda,
    meta: task.meta,
  });
  post({
    type: "done",
    result: {
      kind: "influence",
      chunks: encodeInfluenceModel(model),
      onnx: exportLogisticOnnx(model.influence.model),
      iterations: model.meta.iterations as number,
    },
  });
}

run(workerData as BuildTask).catch((err: unknown) =>
  post({ type: "error", message: (err as Error)?.stack ?? String(err) }),
);
