import { createHash, randomUUID } from "node:crypto";
import { mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import {
  argmax,
  type FeatureOptions,
  hashFeatures,
  toDenseFloat32,
  tokenizeWords,
} from "@openledger/attribution-core";
import { AppError } from "@openledger/errors";
import * as ort from "onnxruntime-node";

/**
 * What serving a version's influence model needs besides its ONNX graph, as the attribution
 * service describes it (`GET /v1/indexes/:versionId/influence`).
 */
export interface SmallModelDescriptor {
  datanetVersionId: string;
  blobHash: string;
  onnxBlobHash: string;
  features: FeatureOptions;
  classNames: string[];
  onnx: { input: string; output: string };
}

export interface Classification {
  /** The predicted class name: the completion text. */
  label: string;
  classIndex: number;
  probabilities: number[];
}

/** Why a small model cannot be loaded; a retryable one says when to ask again (Retry-After). */
export function smallModelUnavailable(
  status: number,
  code: string,
  message: string,
  retryable: boolean,
): AppError {
  return new AppError(code, message, { status, ...(retryable ? { headers: { "retry-after": "5" } } : {}) });
}

/** One loaded classifier: the ONNX session of the influence model and its feature settings. */
export class LoadedSmallModel {
  constructor(
    readonly descriptor: SmallModelDescriptor,
    readonly session: ort.InferenceSession,
  ) {}

  /**
   * Billable input tokens of a text: the words the featurizer reads (attribution-core's word
   * split of the first `maxChars` characters), exactly what the prediction is computed from.
   */
  inputTokens(text: string): number {
    const { maxChars } = this.descriptor.features;
    return tokenizeWords(maxChars !== undefined ? text.slice(0, maxChars) : text).length;
  }

  /**
   * Features are hashed with attribution-core's `hashFeatures` and the version's own settings —
   * the validators' code path — and the class scores come from onnxruntime. Ties go to the
   * smaller class index, as attribution-core's `argmax`.
   */
  async classify(text: string): Promise<Classification> {
    const { features, classNames, onnx } = this.descriptor;
    const x = toDenseFloat32([hashFeatures(text, features)], features.dim);
    const out = await this.session.run({ [onnx.input]: new ort.Tensor("float32", x, [1, features.dim]) });
    const probabilities = Array.from(out[onnx.output]!.data as Float32Array);
    const classIndex = argmax(probabilities);
    return { label: classNames[classIndex] ?? String(classIndex), classIndex, probabilities };
  }
}

const HEX64 = /^[0-9a-f]{64}$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * Small models on this gateway node. The ONNX graph and descriptor of a version's influence model
 * come from the attribution service over HTTP (any node can reach it; no shared disk needed), are
 * checked against the SHA-256 recorded in Postgres (`attribution_indexes.onnx_blob_hash`), and kept
 * in `<GATEWAY_DATA_DIR>/small-models/<sha256>/<versionId>/` so a restart does not fetch again.
 * Sessions are loaded once per (ONNX hash, version) and shared by every model id that serves it:
 * the graph does not carry the class names, so two versions with the same texts under other label
 * names have byte-identical graphs but must answer their own names.
 */
export class SmallModelRuntime {
  readonly #sessions = new Map<string, Promise<LoadedSmallModel>>();

  constructor(
    readonly dir: string,
    readonly attributionUrl: string,
    /** GATEWAY_ATTRIBUTION_TOKEN: the attribution service gives the graphs to its token's holders only. */
    readonly attributionToken?: string,
  ) {}

  /** Loads (or returns the loaded) classifier of `versionId`, whose ONNX must hash to `onnxHash`. */
  load(version: string, onnxHash: string): Promise<LoadedSmallModel> {
    // A client may spell the uuid in upper case; Postgres and the attribution service do not care.
    const versionId = version.toLowerCase();
    const key = `${onnxHash}/${versionId}`;
    let p = this.#sessions.get(key);
    if (!p) {
      p = this.#load(versionId, onnxHash);
      this.#sessions.set(key, p);
      p.catch(() => this.#sessions.delete(key));
    }
    return p;
  }

  async #load(versionId: string, onnxHash: string): Promise<LoadedSmallModel> {
    if (!HEX64.test(onnxHash)) throw new Error(`bad ONNX hash ${onnxHash}`);
    if (!UUID.test(versionId)) throw new Error(`bad datanet version id ${versionId}`);
    const dir = path.join(this.dir, onnxHash, versionId);
    let descriptor: SmallModelDescriptor;
    let bytes: Buffer;
    try {
      descriptor = JSON.parse(await readFile(path.join(dir, "descriptor.json"), "utf8"));
      bytes = await readFile(path.join(dir, "model.onnx"));
      if (sha256(bytes) !== onnxHash || descriptor.datanetVersionId?.toLowerCase() !== versionId) {
        throw new Error("corrupt local copy");
      }
    } catch {
      ({ descriptor, bytes } = await this.#fetch(versionId, onnxHash));
      await this.#keep(dir, descriptor, bytes);
    }
    const session = await ort.InferenceSession.create(bytes, {
      executionProviders: ["cpu"],
      // One [1, D] x [D, C] product per request: a thread pool per model would cost more than it saves.
      intraOpNumThreads: 1,
      interOpNumThreads: 1,
    });
    return new LoadedSmallModel(descriptor, session);
  }

  async #get(url: string): Promise<Response> {
    let res: Response;
    try {
      res = await fetch(url, {
        signal: AbortSignal.timeout(30_000),
        ...(this.attributionToken ? { headers: { authorization: `Bearer ${this.attributionToken}` } } : {}),
      });
    } catch (err) {
      throw smallModelUnavailable(
        503,
        "ATTRIBUTION_UNAVAILABLE",
        `the attribution service does not answer at ${this.attributionUrl} (${(err as Error).message})`,
        true,
      );
    }
    if (res.status === 409 || res.status === 404) {
      const body = (await res.json().catch(() => ({}))) as { error?: { message?: string } };
      throw smallModelUnavailable(
        409,
        "INFLUENCE_MODEL_NOT_READY",
        body.error?.message ?? `the attribution service has no influence model at ${url}`,
        true,
      );
    }
    if (res.status === 401) {
      throw smallModelUnavailable(
        503,
        "ATTRIBUTION_UNAVAILABLE",
        `the attribution service refused the gateway at ${url}: GATEWAY_ATTRIBUTION_TOKEN must be its ATTRIBUTION_SERVICE_TOKEN`,
        false,
      );
    }
    if (!res.ok) {
      throw smallModelUnavailable(
        503,
        "ATTRIBUTION_UNAVAILABLE",
        `the attribution service answered ${res.status} for ${url}`,
        true,
      );
    }
    return res;
  }

  async #fetch(versionId: string, onnxHash: string) {
    const base = `${this.attributionUrl.replace(/\/$/, "")}/v1/indexes/${versionId}/influence`;
    const descriptor = (await (await this.#get(base)).json()) as SmallModelDescriptor;
    const bytes = Buffer.from(await (await this.#get(`${base}/onnx`)).arrayBuffer());
    // The hash recorded in Postgres is the authority: a descriptor or graph that does not match
    // it (a stale or misconfigured attribution node) is refused, never served.
    if (
      descriptor.onnxBlobHash !== onnxHash ||
      sha256(bytes) !== onnxHash ||
      descriptor.datanetVersionId?.toLowerCase() !== versionId
    ) {
      throw smallModelUnavailable(
        502,
        "ONNX_HASH_MISMATCH",
        `the ONNX graph served for datanet version ${versionId} does not hash to the recorded ${onnxHash}`,
        false,
      );
    }
    if (
      !Number.isInteger(descriptor.features?.dim) ||
      !Array.isArray(descriptor.classNames) ||
      descriptor.classNames.length < 2
    ) {
      throw smallModelUnavailable(
        502,
        "ONNX_DESCRIPTOR_INVALID",
        `the influence descriptor of datanet version ${versionId} is incomplete`,
        false,
      );
    }
    return { descriptor, bytes };
  }

  /** Writes the pair into a temporary directory and renames it into place (readers never see half). */
  async #keep(dir: string, descriptor: SmallModelDescriptor, bytes: Buffer) {
    const tmp = `${dir}.tmp-${randomUUID()}`;
    await mkdir(tmp, { recursive: true });
    await writeFile(path.join(tmp, "model.onnx"), bytes);
    await writeFile(path.join(tmp, "descriptor.json"), JSON.stringify(descriptor));
    await rm(dir, { recursive: true, force: true });
    try {
      await rename(tmp, dir);
    } catch {
      await rm(tmp, { recursive: true, force: true }); // another request put the same files there
    }
  }

  async close(): Promise<void> {
    const all = [...this.#sessions.values()];
    this.#sessions.clear();
    for (const p of all) {
      const m = await p.catch(() => undefined);
      await m?.session.release().catch(() => {});
    }
  }
}

function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}
