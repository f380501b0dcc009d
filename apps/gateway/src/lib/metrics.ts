import type { CompletionResult, StepStats } from "@openledger/serving-core";
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import type { ModelHost } from "./model-host.ts";

/**
 * Prometheus metrics of the engine: queue depth, batch size, distinct adapters per step,
 * tokens (rate() = tokens/s), time to first token, adapter cache hits/misses/loads/
 * evictions per tier (RAM, slots), RAM bytes in use.
 */
export function engineMetrics(registry: Registry) {
  const registers = [registry];
  const batch = new Histogram({
    name: "gateway_batch_size",
    help: "Rows (sequences) per engine step",
    buckets: [1, 2, 4, 8, 16, 32, 64, 128],
    registers,
  });
  const distinct = new Histogram({
    name: "gateway_step_distinct_adapters",
    help: "Distinct adapters per engine step",
    buckets: [0, 1, 2, 4, 8, 16, 32, 64],
    registers,
  });
  const stepSeconds = new Histogram({
    name: "gateway_step_seconds",
    help: "Duration of one engine step",
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
    registers,
  });
  const tokens = new Counter({
    name: "gateway_generated_tokens_total",
    help: "Tokens sampled (rate() gives tokens/s)",
    registers,
  });
  const prefill = new Counter({ name: "gateway_prefill_tokens_total", help: "Prompt tokens fed", registers });
  const ttft = new Histogram({
    name: "gateway_time_to_first_token_seconds",
    help: "From submission to the first sampled token",
    buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers,
  });
  const finished = new Counter({
    name: "gateway_requests_finished_total",
    help: "Finished requests by reason",
    labelNames: ["reason"],
    registers,
  });
  let host: ModelHost | undefined;
  const queue = new Gauge({
    name: "gateway_queue_depth",
    help: "Requests waiting for admission",
    registers,
    collect() {
      if (host) this.set(host.scheduler.stats().waiting);
    },
  });
  const running = new Gauge({
    name: "gateway_running_sequences",
    help: "Sequences in the running batch",
    registers,
    collect() {
      if (host) this.set(host.scheduler.stats().running);
    },
  });
  const ramBytes = new Gauge({
    name: "gateway_adapter_ram_bytes",
    help: "Bytes of decoded adapters held in RAM",
    registers,
    collect() {
      if (host) this.set(host.cache.metrics().ram.bytesInUse);
    },
  });
  // Cumulative cache counters read from serving-core at scrape time.
  const cacheEvents = new Gauge({
    name: "gateway_adapter_cache_events",
    help: "Adapter cache events since start, by tier (ram, slot) and event (hit, miss, load, load_failure, eviction); monotonic",
    labelNames: ["tier", "event"],
    registers,
    collect() {
      if (!host) return;
      const m = host.cache.metrics();
      this.set({ tier: "ram", event: "hit" }, m.ram.hits);
      this.set({ tier: "ram", event: "miss" }, m.ram.misses);
      this.set({ tier: "ram", event: "load" }, m.ram.loads);
      this.set({ tier: "ram", event: "load_failure" }, m.ram.loadFailures);
      this.set({ tier: "ram", event: "eviction" }, m.ram.evictions);
      this.set({ tier: "slot", event: "hit" }, m.slots.hits);
      this.set({ tier: "slot", event: "miss" }, m.slots.misses);
      this.set({ tier: "slot", event: "load" }, m.slots.misses - m.slots.writeFailures);
      this.set({ tier: "slot", event: "eviction" }, m.slots.evictions);
    },
  });
  void queue;
  void running;
  void ramBytes;
  void cacheEvents;
  return {
    attach(h: ModelHost) {
      host = h;
    },
    onStep(s: StepStats) {
      batch.observe(s.prefillRows + s.decodeRows);
      distinct.observe(s.distinctAdapters);
      stepSeconds.observe(s.durationMs / 1000);
      tokens.inc(s.sampled);
      prefill.inc(Math.max(0, s.tokens - s.decodeRows));
    },
    onFinished(r: CompletionResult) {
      finished.inc({ reason: r.reason });
      const t = r.timings;
      if (t.firstTokenAt !== undefined) ttft.observe((t.firstTokenAt - t.queuedAt) / 1000);
    },
  };
}
