import type { TrainerOptions } from "@openledger/model-runtime";
import type { ResolvedHyperparameters } from "../lib/plan.ts";

/** What the factory tells a training process (over the child's IPC channel). */
export type ToTrainer =
  | {
      type: "start";
      /** Base model directory (config.json + model.safetensors [+ tokenizer.json]). */
      modelDir: string;
      /** JSON lines `{"s": contributor address, "t": row text}` in training order. */
      dataFile: string;
      checkpointDir: string;
      /** Where the PEFT adapter is written (atomically) when training ends. */
      outDir: string;
      hyperparameters: ResolvedHyperparameters;
      seed: number;
      threads: number;
      /** Upper bound of the steps (the escrow hold's); the run may plan fewer. */
      stepBound: number;
      checkpointEvery: number;
      baseModelName: string;
    }
  /** Save a checkpoint at the current step and exit (the factory is shutting down). */
  | { type: "stop" };

/** What a training process reports. */
export type FromTrainer =
  | {
      type: "plan";
      windows: number;
      totalSteps: number;
      /** Label tokens the whole run trains on, and per contributor (decimal strings). */
      plannedTokens: number;
      tokensByContributor: Record<string, number>;
      /** The step it starts from (> 0 when resumed from a checkpoint). */
      resumedAt: number;
      /** The trainer's options for these steps, and their hash (the lineage's training-config hash). */
      options: TrainerOptions;
      configHash: string;
    }
  | {
      type: "step";
      step: number;
      loss: number;
      /** Label tokens trained so far (whole run, resumed steps included). */
      trainedTokens: number;
      /** Tokens of this step and how long it took. */
      tokens: number;
      ms: number;
    }
  | { type: "checkpoint"; step: number }
  | { type: "done"; step: number; trainedTokens: number; outDir: string }
  | { type: "stopped"; step: number }
  | { type: "error"; message: string; code?: string };
