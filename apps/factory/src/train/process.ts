import { type ChildProcess, fork } from "node:child_process";
import { fileURLToPath } from "node:url";
import { REPO_ROOT } from "@openledger/chain";
import type { FromTrainer, ToTrainer } from "./protocol.ts";

const CHILD = fileURLToPath(new URL("./child.ts", import.meta.url));

/** How a training process ended. */
export interface TrainerExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/**
 * One training run in a child process (`child.ts`): its reports as an async stream, `stop()` to
 * checkpoint and exit (shutdown), `kill()` to end it at once (cancel). A process, not a worker
 * thread: a crash (or an out-of-memory kill) of the trainer cannot take the factory down, and
 * killing it is always possible, even in the middle of a step.
 */
export class TrainingProcess {
  readonly #child: ChildProcess;
  readonly #queue: FromTrainer[] = [];
  #wake: (() => void) | undefined;
  readonly exited: Promise<TrainerExit>;
  #exit: TrainerExit | undefined;
  stderr = "";

  constructor(start: Extract<ToTrainer, { type: "start" }>) {
    this.#child = fork(CHILD, [], {
      cwd: REPO_ROOT,
      execArgv: ["--import", "tsx"],
      stdio: ["ignore", "ignore", "pipe", "ipc"],
      serialization: "advanced",
    });
    this.#child.stderr?.on("data", (chunk: Buffer) => {
      this.stderr = (this.stderr + chunk.toString()).slice(-4000);
    });
    this.#child.on("message", (m: FromTrainer) => {
      this.#queue.push(m);
      this.#wake?.();
    });
    this.exited = new Promise((resolve) => {
      this.#child.once("exit", (code, signal) => {
        this.#exit = { code, signal };
        this.#wake?.();
        resolve(this.#exit);
      });
    });
    this.#child.send(start);
  }

  get pid(): number | undefined {
    return this.#child.pid;
  }

  /** The reports in order; ends when the process has exited and every report was read. */
  async *messages(): AsyncGenerator<FromTrainer> {
    for (;;) {
      const next = this.#queue.shift();
      if (next) {
        yield next;
        continue;
      }
      if (this.#exit) return;
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
      });
      this.#wake = undefined;
    }
  }

  /** Asks for a checkpoint and a clean exit (the run resumes from it later). */
  stop(): void {
    if (this.#exit || !this.#child.connected) return;
    this.#child.send({ type: "stop" } satisfies ToTrainer);
  }

  /** Ends the run now (cancelled): no checkpoint is written. */
  kill(): void {
    if (!this.#exit) this.#child.kill("SIGKILL");
  }
}
