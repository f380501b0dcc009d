import type * as api from "@openledger/attribution/api";
import type { ReplyOf } from "./contract.ts";
import { enc } from "./datanets.ts";
import { OpenLedgerError } from "./errors.ts";
import { type OnProgress, poll, type ServiceHttp } from "./http.ts";

export type IndexStatus = ReplyOf<typeof api.GetIndexRoute>;
export type IndexBuild = ReplyOf<typeof api.BuildIndexRoute, 202> | ReplyOf<typeof api.BuildIndexRoute, 200>;
export type InferenceAttribution = ReplyOf<typeof api.InferenceAttributionRoute>;
export type ArtifactKind = IndexStatus["artifacts"][number]["kind"];

/** The attribution service: version indexes (span + influence) and validators' signed attributions. */
export class AttributionClient {
  constructor(private readonly http: ServiceHttp) {}

  /** Asks for a version's index build (idempotent: publishing a version already queues it); needs the API key. */
  buildIndex(datanetVersionId: string): Promise<IndexBuild> {
    return this.http.json("POST", "/v1/indexes", { body: { datanetVersionId }, expect: [200, 202] });
  }
  index(datanetVersionId: string): Promise<IndexStatus> {
    return this.http.json("GET", `/v1/indexes/${enc(datanetVersionId)}`);
  }

  /**
   * Waits until the version's artifacts of `kinds` are ready (default: the span index, plus the
   * influence model when the build makes one); `onProgress` gets the build job's phase and percent.
   */
  waitIndexed(
    datanetVersionId: string,
    opts: { kinds?: ArtifactKind[]; onProgress?: OnProgress; timeoutMs?: number } = {},
  ): Promise<IndexStatus> {
    return poll(
      `the index of version ${datanetVersionId}`,
      async () => {
        const s = await this.index(datanetVersionId);
        const failed = s.artifacts.find((a) => a.status === "failed");
        if (failed)
          throw new OpenLedgerError(
            "INDEX_FAILED",
            `the ${failed.kind} index failed: ${failed.error ?? "unknown"}`,
            {
              source: "attribution",
            },
          );
        const p = s.job?.progress as { phase?: string; percent?: number } | null | undefined;
        const kinds = opts.kinds ?? ["span"];
        const ready = kinds.every((k) => s.artifacts.some((a) => a.kind === k && a.status === "ready"));
        const building = s.artifacts.some((a) => a.status === "building");
        opts.onProgress?.({
          stage: `index${p?.phase ? `:${p.phase}` : ""}`,
          done: ready && !building ? 100 : (p?.percent ?? 0),
          total: 100,
          unit: "percent",
        });
        return ready && !building ? s : undefined;
      },
      { timeoutMs: opts.timeoutMs ?? 300_000 },
    );
  }

  /** The validators' signed results for an inference (404 NOT_FOUND until the gateway recorded it). */
  inference(inferenceId: string): Promise<InferenceAttribution> {
    return this.http.json("GET", `/v1/inferences/${enc(inferenceId)}/attribution`);
  }

  /** Waits until at least `quorum` validators signed one result hash and all agree. */
  waitAttributed(
    inferenceId: string,
    opts: { quorum: number; timeoutMs?: number },
  ): Promise<InferenceAttribution> {
    return poll(
      `a quorum of attribution results for ${inferenceId}`,
      async () => {
        const r = await this.inference(inferenceId).catch((err: unknown) => {
          if (err instanceof OpenLedgerError && err.status === 404) return undefined;
          throw err;
        });
        return r?.agree && r.consensusCount >= opts.quorum ? r : undefined;
      },
      { timeoutMs: opts.timeoutMs ?? 120_000 },
    );
  }
}
