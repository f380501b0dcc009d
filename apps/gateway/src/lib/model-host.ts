import { availableParallelism } from "node:os";
import { dirname, isAbsolute, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { DEFAULT_BASE_MODEL_DIR, type GatewayConfig, TINY_MODEL, TINY_MODEL_DIR } from "@openledger/config";
import {
  AdapterLoadPool,
  type BaseModel,
  baseModelHash,
  ensureTinyModelDir,
  type LoraModule,
  loadModel,
  type PreparedAdapter,
  type SamplingParams,
  type StepRuntime,
  type TextTokenizer,
  WorkerRuntime,
} from "@openledger/model-runtime";
import {
  AdapterCache,
  type CompletionResult,
  Engine,
  monotonicClock,
  Scheduler,
  ServingError,
  type StepStats,
} from "@openledger/serving-core";

/** Repository root (apps/gateway/src/lib -> ../../../..): relative paths in the config resolve against it. */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../../..");

export function repoPath(p: string): string {
  return isAbsolute(p) ? p : join(REPO_ROOT, p);
}

/**
 * Per-request sampling parameters handed to the executor on every row (serving-core `context`).
 * The sampler itself (its PRNG state) lives on the runtime's thread with the sequence.
 */
export interface RowContext {
  sampling: SamplingParams;
}

/** LoRA modules the runtime serves; adapters targeting others are refused at upload. */
export const SERVED_MODULES: LoraModule[] = ["q_proj", "k_proj", "v_proj", "o_proj"];

export interface AdapterLocator {
  /** Directory holding the adapter's PEFT files, or undefined when the id is unknown/retired. */
  dirOf(adapterId: string): string | undefined;
}

/**
 * Callbacks of the engine, settable after start-up: the model is loaded before the Fastify
 * app exists (a large model takes longer than Fastify's plugin timeout), and the state and
 * metrics that consume these are built with the app.
 */
export interface ModelHostHooks {
  locator: AdapterLocator;
  onStep: (s: StepStats) => void;
  onFinished: (r: CompletionResult) => void;
  onError: (err: unknown) => void;
}

export function defaultHooks(): ModelHostHooks {
  return {
    locator: { dirOf: () => undefined },
    onStep: () => {},
    onFinished: () => {},
    onError: () => {},
  };
}

/**
 * The base model, its runtime and the serving engine (tiers -> scheduler -> engine loop),
 * built once at start-up. Rows of a step go to `runtime.step` in the scheduler's
 * admission order, which keeps model-runtime's resident KV batch on its fast path.
 */
export class ModelHost {
  private constructor(
    readonly model: BaseModel,
    readonly tokenizer: TextTokenizer,
    /** On its own worker thread: a step never blocks this thread's event loop. */
    readonly runtime: StepRuntime,
    readonly cache: AdapterCache<PreparedAdapter>,
    readonly scheduler: Scheduler<RowContext, PreparedAdapter>,
    readonly engine: Engine<RowContext, PreparedAdapter>,
    readonly loadPool: AdapterLoadPool,
    /** SHA-256 (hex) of the base model's model.safetensors: its content hash. */
    readonly contentHash: string,
    readonly modelDir: string,
    readonly hooks: ModelHostHooks,
  ) {}

  static async start(config: GatewayConfig, options: ModelHostHooks = defaultHooks()): Promise<ModelHost> {
    const modelDir =
      config.GATEWAY_MODEL_DIR === TINY_MODEL
        ? await ensureTinyModel()
        : repoPath(config.GATEWAY_MODEL_DIR ?? DEFAULT_BASE_MODEL_DIR);
    // Config and tokenizer only: this thread never reads the weights (lazy tensors).
    const { model, tokenizer } = await loadModel({ dir: modelDir }, { lazy: true });
    const contentHash = await baseModelHash(modelDir);
    const slots = config.GATEWAY_SLOTS;
    // The runtime runs on its own thread, which loads the weights (onnxruntime keeps the only
    // copy): onnxruntime-node runs a session synchronously on its calling thread, so on this
    // one HTTP, SSE and admission would wait for every step.
    const runtime = await WorkerRuntime.create(
      { dir: modelDir },
      {
        slots,
        rankBuckets: [config.GATEWAY_MAX_ADAPTER_RANK],
        targetModules: SERVED_MODULES,
        weights: config.GATEWAY_WEIGHTS,
        ...(config.GATEWAY_THREADS > 0 ? { intraOpThreads: config.GATEWAY_THREADS } : {}),
      },
    );
    // Cold adapters are read, decoded and laid out for the slots on worker threads, into
    // shared memory: the RAM tier holds them and they reach the runtime thread without a copy
    // (which copies them once into the slot's stack entry).
    // More threads than concurrent loads would idle.
    const loadPool = new AdapterLoadPool(model.config, runtime.slotLayout, {
      threads: Math.min(2, availableParallelism(), config.GATEWAY_MAX_CONCURRENT_LOADS),
      shared: true,
      slotFiles: config.GATEWAY_ADAPTER_SLOT_FILES,
    });
    await loadPool.warmUp();
    const cache = new AdapterCache<PreparedAdapter>({
      loader: {
        load: async (adapterId) => {
          const dir = options.locator.dirOf(adapterId);
          if (!dir) throw new ServingError("adapter_load_failed", `adapter ${adapterId} is not servable`);
          const adapter = await loadPool.load(dir);
          return { weights: adapter, bytes: adapter.byteLength };
        },
      },
      slotWriter: {
        writeSlot: (slot, _id, adapter) => {
          runtime.loadAdapter(slot, adapter);
        },
      },
      ramBudgetBytes: config.GATEWAY_ADAPTER_RAM_BYTES,
      numSlots: slots,
      maxConcurrentLoads: config.GATEWAY_MAX_CONCURRENT_LOADS,
    });
    // Per-account rate limits are the gateway's (decided before any database work, for every kind
    // of model), not the scheduler's.
    const scheduler = new Scheduler<RowContext, PreparedAdapter>({
      cache,
      clock: monotonicClock,
      maxBatchTokens: Math.max(config.GATEWAY_MAX_BATCH_TOKENS, config.GATEWAY_MAX_RUNNING),
      ...(config.GATEWAY_MAX_PREFILL_TOKENS > 0
        ? { maxPrefillTokens: config.GATEWAY_MAX_PREFILL_TOKENS }
        : {}),
      maxRunningSequences: config.GATEWAY_MAX_RUNNING,
      maxPromptTokens: config.GATEWAY_MAX_PROMPT_TOKENS,
      maxNewTokens: config.GATEWAY_MAX_NEW_TOKENS,
      maxContextTokens: model.config.maxPositionEmbeddings,
      // model-runtime pads the rows of one session run to the longest; it runs a step's prompt
      // rows as a second, detached run beside the decode rows, so mixing costs a session run per
      // step with arrivals rather than padding. "separate" gathers a few steps' arrivals into one
      // prefill step; "mixed" admits at every step (one step less to the first token).
      // bench:gateway measures both (bench/RESULTS.md, "Gateway").
      costModel: "padded",
      prefillMode: config.GATEWAY_PREFILL_MODE,
    });
    const engine = new Engine<RowContext, PreparedAdapter>({
      scheduler,
      cache,
      clock: monotonicClock,
      executor: {
        // Sampling runs on the runtime's thread: only token ids come back, so this thread does
        // no work over the vocabulary per step (64 rows x 49,152 logits for SmolLM).
        async step(batch) {
          const tokens = await runtime.stepSample(
            batch.rows.map((r) => ({
              seqId: r.seqId,
              tokens: [...r.tokens],
              slot: r.slot,
              ...(r.sample ? { sample: r.context!.sampling } : {}),
            })),
          );
          const next = new Map<string, number>();
          batch.rows.forEach((r, i) => {
            if (r.sample) next.set(r.seqId, tokens[i]!);
          });
          return next;
        },
        release(ids) {
          for (const id of ids) runtime.release(id);
        },
      },
      onStep: (s) => options.onStep(s),
      onFinished: (r) => options.onFinished(r),
      onError: (err) => options.onError(err),
    });
    engine.start();
    return new ModelHost(
      model,
      tokenizer,
      runtime,
      cache,
      scheduler,
      engine,
      loadPool,
      contentHash,
      modelDir,
      options,
    );
  }

  async close(): Promise<void> {
    await this.engine.close();
    await this.loadPool.close();
    await this.runtime.dispose();
  }
}

/** Writes the tiny deterministic model to `<repo>/.data/models/tiny` once (atomic rename). */
export async function ensureTinyModel(): Promise<string> {
  return ensureTinyModelDir(join(REPO_ROOT, TINY_MODEL_DIR));
}
