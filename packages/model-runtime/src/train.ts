import { createHash } from "node:crypto";
import { mkdir, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import * as ort from "onnxruntime-node";
import type { PeftAdapterConfig, PeftFiles } from "./adapter.ts";
import { ModelRuntimeError } from "./errors.ts";
import type { BaseModel } from "./model.ts";
import { Rng } from "./rng.ts";
import { parseSafetensors, serializeSafetensors, type Tensor } from "./safetensors.ts";
import type { TrainBatch } from "./train-data.ts";
import {
  type BuiltTrainGraph,
  buildTrainGraph,
  exampleGradOutput,
  gradOutput,
  type LoraTrainSpec,
  paramInput,
  type TrainMode,
  type TrainParam,
} from "./train-graph.ts";

/** The file naming the newest complete checkpoint directory (see `Trainer.saveCheckpoint`). */
const LATEST = "LATEST";
let checkpointSeq = 0;

export interface OptimizerOptions {
  /** Peak learning rate. */
  lr: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  /** Decoupled (AdamW) weight decay; default 0. */
  weightDecay?: number;
  /** Clip the global gradient L2 norm to this (default 1; 0 = off). */
  clipNorm?: number;
  /** Linear warm-up steps (default 0). */
  warmupSteps?: number;
  /** "cosine": decay to 10% of lr at totalSteps; "constant" (default). */
  schedule?: "constant" | "cosine";
  totalSteps?: number;
}

export interface TrainerOptions {
  mode: TrainMode;
  lora?: LoraTrainSpec;
  batch: number;
  seq: number;
  optimizer: OptimizerOptions;
  /** Seeds the initial LoRA A (B starts at zero, as in PEFT). */
  seed: number | string;
  intraOpThreads?: number;
  /** Build the gradient graph with per-example LoRA gradients (influence, #19). */
  perExampleGrads?: boolean;
}

/** AdamW settings with the defaults applied (the one place they are resolved). */
export interface ResolvedAdamW {
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  clipNorm: number;
}

export function resolveOptimizer(o: OptimizerOptions): ResolvedAdamW {
  return {
    beta1: o.beta1 ?? 0.9,
    beta2: o.beta2 ?? 0.999,
    eps: o.eps ?? 1e-8,
    weightDecay: o.weightDecay ?? 0,
    clipNorm: o.clipNorm ?? 1,
  };
}

/**
 * What one optimizer step saw, for metagradients (attribution-core's `adamwMetagradientInfluence`):
 * flat vectors in parameter order, copies.
 */
export interface StepRecord {
  /** 0-based step index. */
  step: number;
  lr: number;
  /** Parameters and Adam moments before the step. */
  params: Float32Array;
  m: Float32Array;
  v: Float32Array;
  /** The batch gradient at `params`, before clipping. */
  grad: Float32Array;
}

export interface StepResult {
  step: number;
  loss: number;
  gradNorm: number;
  lr: number;
  tokens: number;
}

export interface GradientResult {
  loss: number;
  nll: Float32Array;
  grads: Map<string, Float32Array>;
  /** Per-example gradients [batch, ...shape] when built with perExampleGrads. */
  exampleGrads: Map<string, Float32Array>;
}

const CHECKPOINT_VERSION = 1;

/**
 * Runs training steps of a `buildTrainGraph` graph: feeds the trainable tensors, reads
 * their gradients, clips the global norm and applies AdamW in place (f64 arithmetic per
 * element, f32 storage, fixed order: the same inputs give bit-identical parameters).
 * Checkpoints hold parameters, both Adam moments and the step, so a resumed run
 * continues exactly where the uninterrupted one would be (the data order is a function
 * of the step, see `PackedDataset`).
 */
export class Trainer {
  readonly options: TrainerOptions;
  readonly params: TrainParam[];
  readonly values = new Map<string, Float32Array>();
  private readonly m = new Map<string, Float32Array>();
  private readonly v = new Map<string, Float32Array>();
  step = 0;
  private evalSession: ort.InferenceSession | null = null;

  private constructor(
    readonly model: BaseModel,
    private readonly session: ort.InferenceSession,
    graph: BuiltTrainGraph,
    options: TrainerOptions,
  ) {
    this.options = options;
    this.params = graph.params;
  }

  /**
   * `session.profileFilePrefix`: run the training session under onnxruntime's profiler (per-node
   * timings, written as JSON by `endProfiling`; bench/factory.ts sums them per op type).
   */
  static async create(
    model: BaseModel,
    options: TrainerOptions,
    session: { profileFilePrefix?: string } = {},
  ): Promise<Trainer> {
    const graph = buildTrainGraph(model, {
      mode: options.mode,
      batch: options.batch,
      seq: options.seq,
      ...(options.lora ? { lora: options.lora } : {}),
      perExampleGrads: options.perExampleGrads ?? false,
    });
    const ortSession = await createSession(graph.bytes, options.intraOpThreads, session.profileFilePrefix);
    const t = new Trainer(model, ortSession, graph, options);
    t.initialize();
    return t;
  }

  /** PEFT's initialisation for LoRA (A ~ U(±1/√in), the kaiming-uniform bound; B = 0); the model's weights in full mode. */
  private initialize(): void {
    const rng = new Rng(`${String(this.options.seed)}:init`);
    for (const p of this.params) {
      const n = p.shape.reduce((a, b) => a * b, 1);
      let data: Float32Array;
      if (this.options.mode === "full") {
        data = Float32Array.from(this.model.weights.get(p.name)!.data);
      } else if (p.name.includes(".lora_A.")) {
        data = rng.fillUniform(new Float32Array(n), 1 / Math.sqrt(p.shape[1]!));
      } else {
        data = new Float32Array(n);
      }
      this.values.set(p.name, data);
      this.m.set(p.name, new Float32Array(n));
      this.v.set(p.name, new Float32Array(n));
    }
  }

  private feeds(batch: TrainBatch): Record<string, ort.Tensor> {
    const { batch: B, seq: T } = batch;
    if (B !== this.options.batch || T !== this.options.seq) {
      throw new ModelRuntimeError(
        "SEQUENCE_INVALID",
        `batch shape [${B}, ${T}] differs from the trainer's [${this.options.batch}, ${this.options.seq}]`,
      );
    }
    const feeds: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor("int64", batch.inputIds, [B, T]),
      position_ids: new ort.Tensor("int64", batch.positionIds, [B, T]),
      attn_bias: new ort.Tensor("float32", batch.attnBias, [B, T, T]),
      labels: new ort.Tensor("int64", batch.labels, [B, T]),
      label_weights: new ort.Tensor("float32", batch.labelWeights, [B, T]),
    };
    for (const p of this.params)
      feeds[paramInput(p.name)] = new ort.Tensor("float32", this.values.get(p.name)!, p.shape);
    return feeds;
  }

  /** Loss and gradients at the current parameters (no update). */
  async gradients(batch: TrainBatch): Promise<GradientResult> {
    const out = await this.session.run(this.feeds(batch));
    const grads = new Map<string, Float32Array>();
    const exampleGrads = new Map<string, Float32Array>();
    for (const p of this.params) {
      grads.set(p.name, out[gradOutput(p.name)]!.data as Float32Array);
      const ex = out[exampleGradOutput(p.name)];
      if (ex) exampleGrads.set(p.name, ex.data as Float32Array);
    }
    return {
      loss: (out["loss"]!.data as Float32Array)[0]!,
      nll: out["nll"]!.data as Float32Array,
      grads,
      exampleGrads,
    };
  }

  /** Loss only (a forward graph without the backward half, built on first use). */
  async evaluate(batch: TrainBatch): Promise<{ loss: number; nll: Float32Array }> {
    if (!this.evalSession) {
      const graph = buildTrainGraph(this.model, {
        mode: this.options.mode,
        batch: this.options.batch,
        seq: this.options.seq,
        ...(this.options.lora ? { lora: this.options.lora } : {}),
        gradients: false,
      });
      this.evalSession = await createSession(graph.bytes, this.options.intraOpThreads);
    }
    const out = await this.evalSession.run(this.feeds(batch));
    return { loss: (out["loss"]!.data as Float32Array)[0]!, nll: out["nll"]!.data as Float32Array };
  }

  /** Learning rate of step `step` (0-based). */
  lrAt(step: number): number {
    const o = this.options.optimizer;
    const warm = o.warmupSteps ?? 0;
    if (step < warm) return (o.lr * (step + 1)) / warm;
    if (o.schedule === "cosine" && o.totalSteps) {
      const p = Math.min(1, (step - warm) / Math.max(1, o.totalSteps - warm));
      return o.lr * (0.1 + 0.9 * 0.5 * (1 + Math.cos(Math.PI * p)));
    }
    return o.lr;
  }

  /**
   * One step: gradients, global-norm clipping, AdamW (PyTorch's update order). `record` receives
   * the step's state and gradient before the update (for metagradients through the run).
   */
  async trainStep(batch: TrainBatch, record?: (r: StepRecord) => void): Promise<StepResult> {
    const { loss, grads } = await this.gradients(batch);
    const {
      beta1: b1,
      beta2: b2,
      eps,
      weightDecay: wd,
      clipNorm: clip,
    } = resolveOptimizer(this.options.optimizer);
    if (record) {
      record({
        step: this.step,
        lr: this.lrAt(this.step),
        params: this.flat(this.values),
        m: this.flat(this.m),
        v: this.flat(this.v),
        grad: this.flat(grads),
      });
    }
    let sq = 0;
    for (const p of this.params) {
      const gr = grads.get(p.name)!;
      for (let i = 0; i < gr.length; i++) sq += gr[i]! * gr[i]!;
    }
    const gradNorm = Math.sqrt(sq);
    if (!Number.isFinite(gradNorm)) {
      throw new ModelRuntimeError("SEQUENCE_INVALID", `non-finite gradient norm at step ${this.step}`);
    }
    const gScale = clip > 0 && gradNorm > clip ? clip / (gradNorm + 1e-6) : 1;
    const lr = this.lrAt(this.step);
    const t = this.step + 1;
    const bc1 = 1 - b1 ** t;
    const bc2 = 1 - b2 ** t;
    const decay = 1 - lr * wd;
    for (const p of this.params) {
      const gr = grads.get(p.name)!;
      const w = this.values.get(p.name)!;
      const m = this.m.get(p.name)!;
      const v = this.v.get(p.name)!;
      for (let i = 0; i < w.length; i++) {
        const gi = gr[i]! * gScale;
        const mi = b1 * m[i]! + (1 - b1) * gi;
        const vi = b2 * v[i]! + (1 - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        w[i] = w[i]! * decay - (lr * (mi / bc1)) / (Math.sqrt(vi / bc2) + eps);
      }
    }
    this.step = t;
    return { step: t, loss, gradNorm, lr, tokens: batch.tokens };
  }

  /** Total number of trainable values (the length of a flat parameter vector). */
  get dim(): number {
    return this.params.reduce((s, p) => s + p.shape.reduce((a, b) => a * b, 1), 0);
  }

  /** Tensors of `map` concatenated in parameter order (a copy). */
  private flat(map: Map<string, Float32Array>): Float32Array {
    const out = new Float32Array(this.dim);
    let at = 0;
    for (const p of this.params) {
      const t = map.get(p.name)!;
      out.set(t, at);
      at += t.length;
    }
    return out;
  }

  /** The parameters as one flat vector in parameter order (a copy). */
  flatValues(): Float32Array {
    return this.flat(this.values);
  }

  /** Sets the parameters from a flat vector in parameter order (Adam moments untouched). */
  setFlatValues(flat: ArrayLike<number>): void {
    if (flat.length !== this.dim) throw new RangeError("flat parameter vector has the wrong length");
    let at = 0;
    for (const p of this.params) {
      const w = this.values.get(p.name)!;
      for (let i = 0; i < w.length; i++) w[i] = flat[at + i]!;
      at += w.length;
    }
  }

  /**
   * The batch gradient at the current parameters, flat, and — built with perExampleGrads — each
   * batch row's term of it (rows × dim, row-major: row r's label weights times its loss gradient).
   */
  async flatGradients(
    batch: TrainBatch,
  ): Promise<{ loss: number; grad: Float32Array; rowGrads: Float32Array | null }> {
    const { loss, grads, exampleGrads } = await this.gradients(batch);
    const grad = this.flat(grads);
    if (exampleGrads.size === 0) return { loss, grad, rowGrads: null };
    const dim = grad.length;
    const rows = batch.batch;
    const rowGrads = new Float32Array(rows * dim);
    let at = 0;
    for (const p of this.params) {
      const ex = exampleGrads.get(p.name)!;
      const size = ex.length / rows;
      for (let r = 0; r < rows; r++) rowGrads.set(ex.subarray(r * size, (r + 1) * size), r * dim + at);
      at += size;
    }
    return { loss, grad, rowGrads };
  }

  /**
   * H·v, the Hessian of the batch loss at the current parameters times v (flat, parameter order), by
   * central differences of the gradient graph: (∇L(θ + hv) − ∇L(θ − hv)) / 2h with
   * ‖hv‖ = relStep·max(‖θ‖, 1e-3), float64 out. The graph is float32, so the step trades truncation
   * (O(h²)) against float32 rounding (O(1e-7/h)); relStep 1e-3 is where the two met on the bench's
   * adapter (bench/RESULTS.md). The parameters are restored afterwards. Deterministic: two fixed graph
   * runs and fixed-order float64 arithmetic.
   */
  async hessianVectorProduct(
    batch: TrainBatch,
    v: ArrayLike<number>,
    options: { relStep?: number } = {},
  ): Promise<Float64Array> {
    const dim = this.dim;
    if (v.length !== dim) throw new RangeError("vector has the wrong length");
    const theta = this.flatValues();
    let vv = 0;
    let tt = 0;
    for (let j = 0; j < dim; j++) {
      vv += v[j]! * v[j]!;
      tt += theta[j]! * theta[j]!;
    }
    const out = new Float64Array(dim);
    if (!(vv > 0)) return out;
    const h = ((options.relStep ?? 1e-3) * Math.max(Math.sqrt(tt), 1e-3)) / Math.sqrt(vv);
    const shifted = new Float64Array(dim);
    try {
      for (let j = 0; j < dim; j++) shifted[j] = theta[j]! + h * v[j]!;
      this.setFlatValues(shifted);
      const plus = (await this.flatGradients(batch)).grad;
      for (let j = 0; j < dim; j++) shifted[j] = theta[j]! - h * v[j]!;
      this.setFlatValues(shifted);
      const minus = (await this.flatGradients(batch)).grad;
      for (let j = 0; j < dim; j++) out[j] = (plus[j]! - minus[j]!) / (2 * h);
    } finally {
      this.setFlatValues(theta);
    }
    return out;
  }

  /** Everything a resume needs, as safetensors bytes (parameters, Adam moments) + JSON. */
  checkpoint(): { tensors: Uint8Array; state: Record<string, unknown> } {
    const tensors = new Map<string, Tensor>();
    for (const p of this.params) {
      tensors.set(`param/${p.name}`, { shape: p.shape, data: this.values.get(p.name)! });
      tensors.set(`adam_m/${p.name}`, { shape: p.shape, data: this.m.get(p.name)! });
      tensors.set(`adam_v/${p.name}`, { shape: p.shape, data: this.v.get(p.name)! });
    }
    return {
      tensors: serializeSafetensors(tensors),
      state: {
        version: CHECKPOINT_VERSION,
        step: this.step,
        configHash: trainingConfigHash(this.options),
      },
    };
  }

  /** Restores a `checkpoint()`; refuses one made with another training configuration. */
  restore(ckpt: { tensors: Uint8Array; state: Record<string, unknown> }): void {
    if (ckpt.state["version"] !== CHECKPOINT_VERSION) throw invalidCheckpoint("unknown checkpoint version");
    if (ckpt.state["configHash"] !== trainingConfigHash(this.options)) {
      throw invalidCheckpoint("checkpoint was made with a different training configuration");
    }
    const { tensors } = parseSafetensors(ckpt.tensors);
    for (const p of this.params) {
      for (const [prefix, map] of [
        ["param", this.values],
        ["adam_m", this.m],
        ["adam_v", this.v],
      ] as const) {
        const t = tensors.get(`${prefix}/${p.name}`);
        if (!t || t.data.length !== map.get(p.name)!.length)
          throw invalidCheckpoint(`${prefix}/${p.name} missing`);
        map.get(p.name)!.set(t.data);
      }
    }
    this.step = Number(ckpt.state["step"]);
  }

  /**
   * Writes the checkpoint under `dir` so that a reader always finds a complete one: the files go to
   * a fresh `ckpt-<step>-<pid>-<n>` directory, then the `LATEST` pointer file is replaced by
   * rename (atomic on POSIX), then older checkpoint directories are removed. (Replacing the
   * directory itself — rm, then rename — left a moment with no checkpoint at all: a resuming run
   * that read then started from step 0, and a crash there lost the run's progress.)
   */
  async saveCheckpoint(dir: string): Promise<void> {
    const ckpt = this.checkpoint();
    await mkdir(dir, { recursive: true });
    const name = `ckpt-${this.step}-${process.pid}-${++checkpointSeq}`;
    await mkdir(join(dir, name));
    await writeFile(join(dir, name, "trainer.safetensors"), ckpt.tensors);
    await writeFile(join(dir, name, "trainer.json"), JSON.stringify(ckpt.state));
    const pointer = join(dir, `${LATEST}.tmp-${process.pid}`);
    await writeFile(pointer, name);
    await rename(pointer, join(dir, LATEST));
    for (const entry of await readdir(dir)) {
      // Older checkpoints, and any a dead (or orphaned) writer left half-written.
      if (
        entry !== name &&
        (entry.startsWith("ckpt-") || entry === "trainer.json" || entry === "trainer.safetensors")
      ) {
        await rm(join(dir, entry), { recursive: true, force: true });
      }
    }
  }

  /** Restores from the newest complete checkpoint under `dir`; false when there is none. */
  async loadCheckpoint(dir: string): Promise<boolean> {
    // A writer may replace the checkpoint while we read it (an orphaned trainer of a crashed run
    // finishing its step): re-read the pointer and try again.
    for (let attempt = 0; ; attempt++) {
      let name: string;
      try {
        name = (await readFile(join(dir, LATEST), "utf8")).trim();
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
        // The layout before the LATEST pointer: the files directly in `dir`.
        name = ".";
      }
      try {
        const state = JSON.parse(await readFile(join(dir, name, "trainer.json"), "utf8")) as Record<
          string,
          unknown
        >;
        this.restore({ tensors: await readFile(join(dir, name, "trainer.safetensors")), state });
        return true;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
        if (name === ".") return false;
        if (attempt >= 4) throw err;
      }
    }
  }

  /** The trained LoRA as PEFT files (adapter_config.json + adapter_model.safetensors). */
  toPeft(baseModelName: string | null = null): PeftFiles {
    const lora = this.options.lora;
    if (this.options.mode !== "lora" || !lora) throw new Error("toPeft needs a LoRA trainer");
    const tensors = new Map<string, Tensor>();
    for (const p of this.params) tensors.set(p.name, { shape: p.shape, data: this.values.get(p.name)! });
    const adapterConfig: PeftAdapterConfig = {
      peft_type: "LORA",
      task_type: "CAUSAL_LM",
      base_model_name_or_path: baseModelName,
      r: lora.rank,
      lora_alpha: lora.alpha,
      lora_dropout: 0,
      target_modules: [...lora.targetModules],
      use_rslora: false,
      bias: "none",
      fan_in_fan_out: false,
      modules_to_save: null,
    };
    return { adapterConfig, safetensors: serializeSafetensors(tensors, { metadata: { format: "pt" } }) };
  }

  /** Full mode: the trained weights as a base model (same config). */
  toBaseModel(): BaseModel {
    if (this.options.mode !== "full") throw new Error("toBaseModel needs a full-mode trainer");
    const weights = new Map<string, Tensor>();
    for (const p of this.params)
      weights.set(p.name, { shape: p.shape, data: Float32Array.from(this.values.get(p.name)!) });
    return { ...this.model, weights };
  }

  /** Ends profiling of a trainer created with `profileFilePrefix` (onnxruntime writes `<prefix>_<date>.json`). */
  endProfiling(): void {
    this.session.endProfiling();
  }

  async dispose(): Promise<void> {
    await this.session.release();
    await this.evalSession?.release();
  }
}

/** SHA-256 of the canonical JSON of the options that decide the result (lineage: "training-config hash"). */
export function trainingConfigHash(options: TrainerOptions): string {
  const canonical = {
    mode: options.mode,
    lora: options.lora
      ? { rank: options.lora.rank, alpha: options.lora.alpha, targetModules: [...options.lora.targetModules] }
      : null,
    batch: options.batch,
    seq: options.seq,
    optimizer: {
      lr: options.optimizer.lr,
      ...resolveOptimizer(options.optimizer),
      warmupSteps: options.optimizer.warmupSteps ?? 0,
      schedule: options.optimizer.schedule ?? "constant",
      totalSteps: options.optimizer.totalSteps ?? null,
    },
    seed: String(options.seed),
  };
  return createHash("sha256").update(JSON.stringify(canonical)).digest("hex");
}

async function createSession(
  bytes: Uint8Array,
  threads?: number,
  profileFilePrefix?: string,
): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(bytes, {
    ...(profileFilePrefix ? { enableProfiling: true, profileFilePrefix } : {}),
    intraOpNumThreads: threads ?? 2,
    interOpNumThreads: 1,
    executionMode: "sequential",
    graphOptimizationLevel: "all",
    extra: { session: { intra_op: { allow_spinning: "0" } } },
  });
}

function invalidCheckpoint(message: string): ModelRuntimeError {
  return new ModelRuntimeError("MODEL_WEIGHTS_INVALID", `checkpoint: ${message}`);
}
