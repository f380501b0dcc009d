/**
 * Worker-thread side of AdapterLoadPool: reads an adapter directory in slot layout (its slot
 * file, or its PEFT files validated, decoded and laid out, writing the slot file; see
 * slot-file.ts), and hands the one buffer back by transfer. Errors come back as values (code, message, details) because a thrown
 * ModelRuntimeError loses its class and fields on the way through structured clone.
 */
import { threadId } from "node:worker_threads";
import { move, transferableSymbol, valueSymbol } from "piscina";
import type { LlamaConfig, LoraModule } from "./config.ts";
import { ModelRuntimeError } from "./errors.ts";
import { loadSlotAdapter, type SlotLoadSource } from "./slot-file.ts";

export interface LoadTask {
  /** Absent: a warm-up task (loads this module and its imports, nothing else). */
  dir?: string;
  config: LlamaConfig;
  targetModules: LoraModule[];
  rankBuckets: number[];
  /** Lay out into a SharedArrayBuffer (shared with a runtime thread, not transferred). */
  shared?: boolean;
  /** Read and write the adapter's slot file (AdapterLoadPoolOptions.slotFiles). */
  slotFiles?: boolean;
}

export type LoadReply =
  | {
      ok: true;
      rank: number;
      bucket: number;
      buffer: ArrayBuffer | SharedArrayBuffer;
      threadId: number;
      source: SlotLoadSource;
    }
  | { ok: false; code?: string; message: string; details?: Record<string, unknown> };

export default async function loadAdapter(task: LoadTask): Promise<unknown> {
  if (task.dir === undefined) return { ok: false, message: "warm-up" } satisfies LoadReply;
  try {
    const { adapter: p, source } = await loadSlotAdapter(task.config, task, task.dir, {
      shared: task.shared ?? false,
      slotFiles: task.slotFiles ?? true,
    });
    const reply: LoadReply = { ok: true, rank: p.rank, bucket: p.bucket, buffer: p.buffer, threadId, source };
    // A SharedArrayBuffer is shared by posting it; an ArrayBuffer is moved (no copy).
    if (p.buffer instanceof SharedArrayBuffer) return reply;
    return move({ [transferableSymbol]: p.buffer, [valueSymbol]: reply });
  } catch (err) {
    const reply: LoadReply =
      err instanceof ModelRuntimeError
        ? {
            ok: false,
            code: err.code,
            message: err.message,
            ...(err.details ? { details: err.details } : {}),
          }
        : { ok: false, message: err instanceof Error ? err.message : String(err) };
    return reply;
  }
}
