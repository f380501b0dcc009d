/**
 * Adapters kept on disk in the runtime's slot layout, so a cold load is one read.
 *
 * Decoding a PEFT adapter for the slots reads the safetensors file, parses it and transposes
 * every A and B into slot layout (`prepareSlotAdapter`): for a 7.4 MB rank-16 SmolLM adapter
 * ~12 ms of CPU alone and 60-200 ms of wall time on two cores shared with the model step, which
 * is what a burst of cold adapters queued behind (bench/RESULTS.md, "Gateway"). The first load
 * of an adapter (the gateway's upload validates by loading) writes the laid-out buffer next to
 * the PEFT files; every later cold load reads it straight into the buffer the slots use and
 * only multiplies B by its scale.
 *
 * The file holds B *without* its scale (alpha / r comes from `adapter_config.json` at load):
 * adapters that differ only in alpha can share one hard-linked file (the gateway bench's 10,000
 * adapters over a few weight files), and the scale pass rounds exactly as the direct layout
 * does, so both paths give the same bits (tested). Nothing here is a cache of anything but the
 * adapter's own files: a missing, foreign or damaged slot file is ignored and the adapter is
 * decoded from its PEFT files as before (and the slot file written again).
 *
 * Layout: "OLSLOT01", u32 LE header length, the header (JSON), zero padding to a multiple of
 * 64 bytes, then the slot buffer (`slotViews` order: per layer x target module, A [in, bucket]
 * then unscaled B [bucket, out], f32 LE). The header names the layout (layers, target modules
 * and their dims: the file name carries a hash of it with the rank buckets), the bucket, each
 * adapted `layer.module` with its rank, and the SHA-256 of the weights file it came from: in a
 * A slot file is read only in a content-addressed directory (named
 * `contentHashOfDigests(sha256(config), sha256(weights))`, as the gateway's store is), and only
 * when this directory's config and the file's digest give that name: a slot file is only ever
 * used with the adapter it was made from. (It is written wherever the adapter is first decoded:
 * the gateway's upload decodes in its incoming directory, which then moves into the store.)
 */
import { createHash, randomBytes } from "node:crypto";
import { closeSync, fstatSync, openSync, readFileSync, readSync } from "node:fs";
import { readFile, rename, rm, writeFile } from "node:fs/promises";
import { basename, join } from "node:path";
import {
  contentHashOfDigests,
  type LoraAdapter,
  moduleRankScale,
  parseAdapterConfig,
  parsePeftAdapter,
  readAdapterConfig,
  sha256,
} from "./adapter.ts";
import { type LlamaConfig, type LoraModule, moduleDims } from "./config.ts";
import { ModelRuntimeError } from "./errors.ts";
import {
  type PreparedAdapter,
  prepareSlotAdapter,
  type SlotLayout,
  scaleSlotAdapter,
  slotBucket,
  slotByteLength,
  slotViews,
} from "./slots.ts";

const MAGIC = "OLSLOT01";
const ALIGN = 64;
const CONTENT_HASH = /^[0-9a-f]{64}$/;

interface SlotFileHeader {
  /** `layoutKey` of the runtime the file was laid out for. */
  layout: string;
  bucket: number;
  /** Adapted `layer.module` keys with their ranks (the blocks that get a scale). */
  modules: [string, number][];
  /** SHA-256 (hex) of the adapter_model.safetensors the file was made from. */
  weightsSha256: string;
}

/** The layout a slot file depends on, as text: layers, and each target module with its dims. */
function layoutKey(config: LlamaConfig, layout: SlotLayout): string {
  const dims = layout.targetModules.map((m) => {
    const { inDim, outDim } = moduleDims(config, m);
    return `${m}=${inDim}x${outDim}`;
  });
  return `layers=${config.numLayers};${dims.join(",")}`;
}

/** The slot file's name in an adapter directory, for this runtime's layout and rank buckets. */
export function slotFileName(config: LlamaConfig, layout: SlotLayout): string {
  const buckets = [...layout.rankBuckets].sort((x, y) => x - y).join(",");
  const key = createHash("sha256")
    .update(`${layoutKey(config, layout)};buckets=${buckets}`)
    .digest("hex");
  return `adapter_slots-${key.slice(0, 16)}.bin`;
}

export type SlotLoadSource = "slot-file" | "peft";

/**
 * Loads the adapter in `dir` in slot layout: from its slot file when there is a valid one,
 * else from its PEFT files (validated and decoded as `loadPeftAdapter` + `prepareSlotAdapter`
 * do, throwing the same ModelRuntimeErrors), writing the slot file for next time unless
 * `writeSlotFile` is false. A slot file that cannot be written (read-only store, full disk)
 * only costs the next load the slow path. `slotFiles: false` neither reads nor writes one.
 */
export async function loadSlotAdapter(
  config: LlamaConfig,
  layout: SlotLayout,
  dir: string,
  options: { shared?: boolean; writeSlotFile?: boolean; slotFiles?: boolean } = {},
): Promise<{ adapter: PreparedAdapter; source: SlotLoadSource }> {
  const shared = options.shared ?? false;
  const useFiles = options.slotFiles ?? true;
  const name = slotFileName(config, layout);
  if (useFiles) {
    let fast: PreparedAdapter | undefined;
    try {
      fast = readSlotFile(config, layout, dir, name, shared);
    } catch {
      fast = undefined; // unreadable or inconsistent: decode, as if there were none
    }
    if (fast !== undefined) return { adapter: fast, source: "slot-file" };
  }
  const { configJson } = await readAdapterConfig(dir);
  const weights = await readFile(join(dir, "adapter_model.safetensors"));
  const decoded = parsePeftAdapter(config, configJson, weights);
  if (!useFiles) return { adapter: prepareSlotAdapter(config, layout, decoded, { shared }), source: "peft" };
  const p = prepareSlotAdapter(config, layout, decoded, { shared, unscaled: true });
  if (options.writeSlotFile ?? true) {
    await writeSlotFile(join(dir, name), config, layout, p, decoded, sha256(weights)).catch(() => {});
  }
  scaleSlotAdapter(p, scalesOf(decoded));
  return { adapter: p, source: "peft" };
}

function scalesOf(adapter: LoraAdapter): Map<string, number> {
  return new Map([...adapter.modules].map(([key, w]) => [key, w.scale]));
}

async function writeSlotFile(
  path: string,
  config: LlamaConfig,
  layout: SlotLayout,
  p: PreparedAdapter,
  adapter: LoraAdapter,
  weightsDigest: Uint8Array,
): Promise<void> {
  const header: SlotFileHeader = {
    layout: layoutKey(config, layout),
    bucket: p.bucket,
    modules: [...adapter.modules].map(([key, w]) => [key, w.rank]),
    weightsSha256: Buffer.from(weightsDigest).toString("hex"),
  };
  const json = Buffer.from(JSON.stringify(header));
  const head = Buffer.alloc(bodyOffset(json.length));
  head.write(MAGIC, 0, "latin1");
  head.writeUInt32LE(json.length, MAGIC.length);
  json.copy(head, MAGIC.length + 4);
  // Written aside and renamed: a reader sees the whole file or none.
  const tmp = `${path}.tmp-${randomBytes(6).toString("hex")}`;
  try {
    await writeFile(tmp, head);
    await writeFile(tmp, new Uint8Array(p.buffer), { flag: "a" });
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

function bodyOffset(headerLength: number): number {
  return Math.ceil((MAGIC.length + 4 + headerLength) / ALIGN) * ALIGN;
}

/**
 * The adapter from its slot file, or undefined when there is none or it does not fit this adapter
 * and runtime. Synchronous on purpose: the load pool runs it on its worker thread, where a chain of
 * asynchronous reads (open, stat, header, config, body, close) would be a dozen hand-offs to libuv's
 * pool and back, each waiting for a core on a busy machine, for what is one read of a file in the
 * page cache; on the calling thread it runs only for files under the pool's inline limit (1 MiB).
 */
function readSlotFile(
  config: LlamaConfig,
  layout: SlotLayout,
  dir: string,
  name: string,
  shared: boolean,
): PreparedAdapter | undefined {
  // Only a content-addressed directory names what its files must be (elsewhere, e.g. an upload
  // being received, the PEFT files could change under an older slot file): the check below
  // refuses any other directory; this only spares it the reads.
  if (!CONTENT_HASH.test(basename(dir))) return undefined;
  let fd: number;
  try {
    fd = openSync(join(dir, name), "r");
  } catch {
    return undefined;
  }
  try {
    const size = fstatSync(fd).size;
    const first = Buffer.alloc(Math.min(size, 4096));
    readFully(fd, first, 0);
    if (first.length < MAGIC.length + 4 || first.toString("latin1", 0, MAGIC.length) !== MAGIC)
      return undefined;
    const headerLength = first.readUInt32LE(MAGIC.length);
    const start = MAGIC.length + 4;
    let headerBytes: Buffer;
    if (start + headerLength <= first.length) headerBytes = first.subarray(start, start + headerLength);
    else {
      if (start + headerLength > size) return undefined;
      headerBytes = Buffer.alloc(headerLength);
      readFully(fd, headerBytes, start);
    }
    const header = JSON.parse(headerBytes.toString("utf8")) as SlotFileHeader;
    if (header.layout !== layoutKey(config, layout) || !Array.isArray(header.modules)) return undefined;
    const body = slotByteLength(config, layout.targetModules, header.bucket);
    const offset = bodyOffset(headerLength);
    if (size !== offset + body) return undefined;

    // The adapter's own config: with the file's weights digest it must give the directory's
    // name (the file belongs to this adapter); its ranks must be the file's; its alpha gives the scales.
    const configBytes = readFileSync(join(dir, "adapter_config.json"));
    if (
      contentHashOfDigests(sha256(configBytes), Buffer.from(header.weightsSha256, "hex")) !== basename(dir)
    ) {
      return undefined;
    }
    const { config: cfg, targets } = parseAdapterConfig(JSON.parse(configBytes.toString("utf8")));
    const scales = new Map<string, number>();
    const seen = new Set<LoraModule>();
    let rank = 0;
    for (const [key, fileRank] of header.modules) {
      const dot = key.indexOf(".");
      const layer = Number(key.slice(0, dot));
      const module = key.slice(dot + 1) as LoraModule;
      if (!Number.isInteger(layer) || layer < 0 || layer >= config.numLayers) return undefined;
      if (!layout.targetModules.includes(module) || !targets.includes(module)) return undefined;
      const rs = moduleRankScale(cfg, layer, module);
      if (rs.rank !== fileRank) return undefined;
      scales.set(key, rs.scale);
      seen.add(module);
      rank = Math.max(rank, rs.rank);
    }
    if (targets.some((t) => !seen.has(t))) return undefined;
    let bucket: number;
    try {
      bucket = slotBucket(layout, rank);
    } catch (err) {
      if (err instanceof ModelRuntimeError) return undefined; // the PEFT path reports it
      throw err;
    }
    if (bucket !== header.bucket) return undefined;

    const buffer = shared ? new SharedArrayBuffer(body) : new ArrayBuffer(body);
    readFully(fd, new Uint8Array(buffer), offset);
    const views = slotViews(config, layout.targetModules, bucket, buffer);
    const p: PreparedAdapter = {
      kind: "prepared",
      rank,
      bucket,
      targetModules: [...layout.targetModules],
      a: views.a,
      b: views.b,
      buffer,
      byteLength: body,
    };
    scaleSlotAdapter(p, scales);
    return p;
  } finally {
    closeSync(fd);
  }
}

function readFully(fd: number, into: Uint8Array, position: number): void {
  let done = 0;
  while (done < into.length) {
    const n = readSync(fd, into, done, into.length - done, position + done);
    if (n === 0) throw new Error("slot file ended early");
    done += n;
  }
}
