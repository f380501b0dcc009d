/**
 * Adapter upload stall: what a small gzip bomb (a .tar.gz of 255 KiB holding 256 MiB of zeros)
 * costs the gateway's event loop and memory. Baseline = the previous upload path (the whole
 * upload buffered, then `gunzipSync` with a 1 GiB output cap, as `readTarball` did); ours = the
 * streaming path (`AdapterUpload.addArchive`: Node's asynchronous zlib, tar-stream, a byte budget),
 * with the gateway's default limit (512 MiB: the bomb is inflated and dropped chunk by chunk) and a
 * small one (4 MiB: refused at the limit). Each trial runs in a fresh child process (so memory
 * figures do not carry over), the arms interleaved.
 *
 *   npm run bench:gateway-upload [-- --json] [--rounds N]
 */
import { spawnSync } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { fileURLToPath } from "node:url";
import { gunzipSync, gzipSync } from "node:zlib";
import { AppError } from "@openledger/errors";
import tar from "tar-stream";
import { AdapterUpload } from "../apps/gateway/src/lib/upload.ts";

const args = process.argv.slice(2);
const arg = (name: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const MiB = 1024 * 1024;

interface Trial {
  arm: string;
  ms: number;
  maxLoopDelayMs: number;
  peakRssMiB: number;
  peakArrayBuffersMiB: number;
  outcome: string;
}

/** Child: one trial, measured with a 1 ms heartbeat (its largest gap = the longest the loop stalled). */
async function trial(arm: string, file: string): Promise<Trial> {
  const bytes = await readFile(file);
  const base = process.memoryUsage();
  let peakRss = base.rss;
  let peakAb = base.arrayBuffers;
  let last = performance.now();
  let maxGap = 0;
  const beat = setInterval(() => {
    const now = performance.now();
    maxGap = Math.max(maxGap, now - last);
    last = now;
    const m = process.memoryUsage();
    peakRss = Math.max(peakRss, m.rss);
    peakAb = Math.max(peakAb, m.arrayBuffers);
  }, 1);
  await new Promise((r) => setTimeout(r, 20));
  const started = performance.now();
  let outcome = "ok";
  if (arm === "buffered gunzipSync (before)") {
    const out = gunzipSync(bytes, { maxOutputLength: 1024 * MiB });
    outcome = `inflated ${Math.round(out.length / MiB)} MiB`;
  } else {
    const limit = arm.includes("4 MiB") ? 4 * MiB : 512 * MiB;
    const dir = await mkdtemp(join(tmpdir(), "bench-upload-"));
    const upload = new AdapterUpload(dir, {
      bytes: limit,
      error: () => new AppError("PAYLOAD_TOO_LARGE", `at most ${limit} bytes`),
    });
    await upload.open();
    try {
      await upload.addArchive(Readable.from([bytes]));
      outcome = `streamed ${Math.round(upload.received / MiB)} MiB, kept ${upload.files.size} files`;
    } catch (err) {
      outcome = `refused after ${Math.round(upload.received / MiB)} MiB (${(err as AppError).code})`;
    } finally {
      await upload.discard();
    }
  }
  const ms = performance.now() - started;
  await new Promise((r) => setTimeout(r, 20));
  clearInterval(beat);
  return {
    arm,
    ms,
    maxLoopDelayMs: maxGap,
    peakRssMiB: (peakRss - base.rss) / MiB,
    peakArrayBuffersMiB: (peakAb - base.arrayBuffers) / MiB,
    outcome,
  };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
};

async function main() {
  if (arg("--trial")) {
    process.stdout.write(`${JSON.stringify(await trial(arg("--trial")!, arg("--file")!))}\n`);
    return;
  }
  const json = args.includes("--json");
  const rounds = Number(arg("--rounds") ?? 5);
  const dir = await mkdtemp(join(tmpdir(), "bench-bomb-"));
  const pack = tar.pack();
  pack.entry({ name: "adapter/padding.bin", size: 256 * MiB }, Buffer.alloc(256 * MiB));
  pack.finalize();
  const parts: Buffer[] = [];
  for await (const c of pack) parts.push(c as Buffer);
  const bomb = gzipSync(Buffer.concat(parts), { level: 9 });
  const file = join(dir, "bomb.tar.gz");
  await writeFile(file, bomb);
  const arms = ["buffered gunzipSync (before)", "streaming, 512 MiB limit", "streaming, 4 MiB limit"];
  const results = new Map<string, Trial[]>(arms.map((a) => [a, []]));
  const self = fileURLToPath(import.meta.url);
  for (let r = 0; r < rounds; r++) {
    for (const arm of arms) {
      const child = spawnSync(process.execPath, ["--import", "tsx", self, "--trial", arm, "--file", file], {
        encoding: "utf8",
      });
      if (child.status !== 0) throw new Error(`trial ${arm} failed: ${child.stderr}`);
      const t = JSON.parse(child.stdout.trim().split("\n").pop()!) as Trial;
      results.get(arm)!.push(t);
      if (!json)
        process.stderr.write(
          `round ${r + 1}: ${arm}: ${t.ms.toFixed(0)} ms, loop ${t.maxLoopDelayMs.toFixed(0)} ms\n`,
        );
    }
  }
  await rm(dir, { recursive: true, force: true });
  const summary = arms.map((arm) => {
    const ts = results.get(arm)!;
    return {
      arm,
      ms: median(ts.map((t) => t.ms)),
      maxLoopDelayMs: median(ts.map((t) => t.maxLoopDelayMs)),
      peakRssMiB: median(ts.map((t) => t.peakRssMiB)),
      peakArrayBuffersMiB: median(ts.map((t) => t.peakArrayBuffersMiB)),
      outcome: ts[0]!.outcome,
    };
  });
  const before = summary[0]!;
  const out = {
    bombBytes: bomb.length,
    inflatedBytes: 256 * MiB,
    rounds,
    arms: summary.map((s) => ({
      ...s,
      loopDelayRatio: s.maxLoopDelayMs / before.maxLoopDelayMs,
      arrayBuffersRatio: s.peakArrayBuffersMiB / before.peakArrayBuffersMiB,
    })),
  };
  if (json) {
    process.stdout.write(`${JSON.stringify(out)}\n`);
    return;
  }
  console.log(
    `gzip bomb: ${(bomb.length / 1024).toFixed(0)} KiB -> 256 MiB; medians of ${rounds} interleaved rounds`,
  );
  console.log(
    "| arm | time ms | max event-loop stall ms | peak RSS +MiB | peak array buffers +MiB | outcome |",
  );
  console.log("| --- | ---: | ---: | ---: | ---: | --- |");
  for (const s of summary) {
    console.log(
      `| ${s.arm} | ${s.ms.toFixed(0)} | ${s.maxLoopDelayMs.toFixed(1)} | ${s.peakRssMiB.toFixed(0)} | ${s.peakArrayBuffersMiB.toFixed(1)} | ${s.outcome} |`,
    );
  }
}

await main();
