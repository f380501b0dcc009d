export {
  adapterBytes,
  adapterContentHash,
  contentHashOfDigests,
  DEFAULT_TARGET_MODULES,
  generateRandomAdapter,
  generateRandomPeft,
  type LoraAdapter,
  type LoraWeights,
  loadPeftAdapter,
  loraAdapterBytes,
  moduleRankScale,
  type PeftAdapterConfig,
  type PeftFiles,
  parseAdapterConfig,
  parsePeftAdapter,
  type RandomAdapterOptions,
  readAdapterConfig,
  sha256,
  writePeftAdapter,
} from "./adapter.ts";
export { AdapterLoadPool, type AdapterLoadPoolOptions } from "./adapter-pool.ts";
export {
  type BpeTrainOptions,
  byteLevelBpeTokenizerJson,
  bytesToUnicode,
  type TrainedBpe,
  trainByteLevelBpe,
} from "./bpe-train.ts";
export {
  type LlamaConfig,
  LORA_MODULES,
  type LoraModule,
  moduleDims,
  parseHfConfig,
  SMOLLM_135M_CONFIG,
  TINY_BOS,
  TINY_CONFIG,
  TINY_EOS,
  TINY_PAD,
  toHfConfig,
} from "./config.ts";
export { ModelRuntimeError, type ModelRuntimeErrorCode } from "./errors.ts";
export { type GenerateResult, generate, loadModel, type ModelSource, tokenizerFor } from "./generate.ts";
export {
  encodeGgmlTensor,
  type GgufWeightType,
  permuteForLlamaCppRope,
  writeLoraGguf,
  writeModelGguf,
} from "./gguf.ts";
export {
  finiteDifferenceCheck,
  GRAD_CHECK_BATCH,
  GRAD_CHECK_CONFIG,
  type GradCheckResult,
  gradCheckModel,
  loraGradCheck,
  referenceLoss,
  trainerAdapter,
} from "./grad-check.ts";
export { type AttentionImpl, buildLlamaGraph } from "./graph.ts";
export {
  AnswerGradientGraph,
  answerGradientShape,
  answerLoraGradient,
  type ExampleGradientOptions,
  exampleLoraGradients,
  loraGradientBlocks,
  loraSpecOf,
} from "./lora-gradients.ts";
export { AdapterMerger } from "./merge.ts";
export {
  type BaseModel,
  baseModelHash,
  baseWeightBytes,
  ensureGeneratedModelDir,
  ensureTinyModelDir,
  generateBaseModel,
  loadBaseModelDir,
  validateWeights,
  writeBaseModelDir,
} from "./model.ts";
export {
  initialWeights,
  type PretrainOptions,
  type PretrainProgress,
  type PretrainResult,
  pretrain,
} from "./pretrain.ts";
export {
  type ChannelQuantizedMatrix,
  dequantizeBlockwise,
  dequantizePerChannel,
  QUANT_BLOCK,
  type QuantizedMatrix,
  quantizeBlockwise,
  quantizePerChannel,
  WEIGHT_FORMATS,
  type WeightFormat,
} from "./quantize.ts";
export { Rng } from "./rng.ts";
export {
  ModelRuntime,
  type RuntimeOptions,
  type SampledStepRow,
  type StepRow,
  type StepRuntime,
  type StepTimings,
} from "./runtime.ts";
export { WorkerRuntime } from "./runtime-host.ts";
export type { WorkerModelSource } from "./runtime-worker.ts";
export {
  parseSafetensors,
  readSafetensors,
  readSafetensorsLazy,
  serializeSafetensors,
  type Tensor,
  writeSafetensors,
} from "./safetensors.ts";
export {
  argmax,
  Sampler,
  type SamplingParams,
  type StopCheck,
  StopCondition,
  type StopOptions,
  type StopReason,
} from "./sampler.ts";
export { loadSlotAdapter, type SlotLoadSource, slotFileName } from "./slot-file.ts";
export {
  isPreparedAdapter,
  type PreparedAdapter,
  prepareSlotAdapter,
  type SlotLayout,
  SlotTable,
  scaleSlotAdapter,
  slotBucket,
  slotByteLength,
  slotViews,
} from "./slots.ts";
export {
  ByteTokenizer,
  CHATML_TEMPLATE,
  type ChatMessage,
  HfTokenizer,
  type TextTokenizer,
} from "./tokenizer.ts";
export {
  type GradientResult,
  type OptimizerOptions,
  type ResolvedAdamW,
  resolveOptimizer,
  type StepRecord,
  type StepResult,
  Trainer,
  type TrainerOptions,
  trainingConfigHash,
} from "./train.ts";
export {
  batchFromRows,
  emptyBatch,
  PackedDataset,
  type PackedDatasetOptions,
  type TrainBatch,
  type TrainDocument,
} from "./train-data.ts";
export {
  type BuiltTrainGraph,
  buildTrainGraph,
  exampleGradOutput,
  gradOutput,
  type LoraTrainSpec,
  loraParamName,
  paramInput,
  type TrainGraphOptions,
  type TrainMode,
  type TrainParam,
  trainParams,
} from "./train-graph.ts";
