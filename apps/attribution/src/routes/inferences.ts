import { opensAttributionCommitment } from "@openledger/chain";
import type { AttributionConfig } from "@openledger/config";
import { AppError } from "@openledger/errors";
import { countedReveals } from "@openledger/settlement-core";
import type { FastifyBaseLogger, FastifyPluginAsync } from "fastify";
import type { ZodTypeProvider } from "fastify-type-provider-zod";
import type { Hex } from "viem";
import { z } from "zod";
import type { ChainContext } from "../lib/context.ts";
import { recoverSigner, resultHashOf } from "../lib/validator.ts";
import { ContributorWeight, ErrorBody, Uuid } from "./schemas.ts";

/** Characters of a row's text a trace carries (the row itself: GET /v1/contributions/{id}/rows on datanets). */
const TRACE_ROW_CHARS = 1000;

/** The fields of a signed canonical result a trace reads (attribution's lib/scoring.ts writes them). */
interface TraceEvidence {
  spans?: { start: number; end: number; count: number; rowIds: string[]; rowsTruncated: boolean }[];
  unattributed?: string | null;
  source?: { datanetVersionId?: string };
  labelName?: string;
  probabilitiesPpm?: number[];
  topHelpful?: { rowId: string; contributorId: string; influence: string }[];
  topHarmful?: { rowId: string; contributorId: string; influence: string }[];
  /** Adapter answers (format 3): the LoRA influence path over the tokens no span covers. */
  loraInfluence?: {
    coveredTokens: number;
    uncoveredTokens: number;
    estimator?: string;
    unattributed?: string | null;
    topHelpful?: { rowId: string; contributorId: string; influence: string }[];
    topHarmful?: { rowId: string; contributorId: string; influence: string }[];
    weights?: { contributorId: string; ppm: number }[];
  } | null;
}

const TraceRow = z.object({
  rowId: z.string(),
  contributorAddress: z.string(),
  text: z.string().describe(`The row's text (first ${TRACE_ROW_CHARS} characters)`),
  label: z.string().nullable(),
});

export const InferenceAttributionRoute = {
  tags: ["attribution"],
  summary: "The validators' signed attribution of an inference, with evidence",
  description:
    "Every revealed validator result: the canonical JSON (parsed, as evidence: spans and credited rows, or " +
    "influential training rows), its keccak256 hash, the validator's EIP-712 signature (checked here), the " +
    "salt opening its commitment, whether it counts (commit-reveal: it opens a commitment recorded before the " +
    "first reveal), and the contributor weights; and every recorded commitment (a result is not readable " +
    "anywhere before its validator reveals it). `agree` is true when at least one result exists and all " +
    "hashes are equal. 404 NOT_FOUND: no such inference.",
  params: z.object({ id: Uuid.describe("Inference id") }),
  response: {
    200: z.object({
      inferenceId: z.string(),
      modelId: z.string(),
      agree: z.boolean().describe("All validators produced byte-identical results (and there is one)"),
      consensusHash: z
        .string()
        .nullable()
        .describe("The result hash signed by the most validators whose reveals count"),
      consensusCount: z
        .number()
        .int()
        .describe("How many validators whose reveals count signed consensusHash"),
      results: z.array(
        z.object({
          validatorAddress: z.string(),
          method: z.enum(["span", "influence"]),
          resultHash: z.string().describe("keccak256 of the canonical JSON (UTF-8)"),
          signature: z.string().describe("EIP-712 AttributionResult{inferenceId, resultHash} signature"),
          signatureValid: z
            .boolean()
            .nullable()
            .describe("The signature recovers to validatorAddress (null: chain config unavailable)"),
          hashValid: z.boolean().describe("resultHash is the hash of the stored canonical JSON"),
          weights: z.array(ContributorWeight),
          salt: z.string().nullable().describe("The salt that opens the validator's commitment"),
          counted: z
            .boolean()
            .describe(
              "The reveal opens the validator's commitment, recorded before the inference's first reveal " +
                "(signatures and hash valid): only such reveals count toward the quorum",
            ),
          canonicalJson: z.string().describe("Exactly the bytes that were hashed"),
          evidence: z.record(z.string(), z.unknown()).describe("The canonical JSON, parsed"),
          createdAt: z.string(),
        }),
      ),
      commitments: z.array(
        z.object({
          validatorAddress: z.string(),
          commitment: z.string().describe("keccak256(abi.encodePacked(resultHash, validator, salt))"),
          signature: z.string().describe("EIP-712 AttributionCommitment{inferenceId, commitment} signature"),
          seq: z
            .string()
            .describe("The commitment's place in the database's order of commitments and reveals"),
          revealed: z.boolean(),
          createdAt: z.string(),
        }),
      ),
    }),
    400: ErrorBody,
    404: ErrorBody,
  },
};

export const InferenceTraceRoute = {
  tags: ["attribution"],
  summary:
    "An inference's answer with its attribution, for people: spans in characters, rows with their text",
  description:
    "The prompt and answer, and the attribution result signed by the most validators (counted reveals with " +
    "valid signatures over the stored bytes only): for span attribution each span as character offsets into `output` " +
    "(JavaScript string indices), its text, its occurrences and the rows (with text and contributor) that " +
    "contain it; for a small model the answered class, the class probabilities and the most helpful and " +
    "harmful training rows with their text. `weights` are the signed contributor weights. " +
    "`method` is null while no validator has signed. 404 NOT_FOUND: no such inference.",
  params: z.object({ id: Uuid.describe("Inference id") }),
  response: {
    200: z.object({
      inferenceId: z.string(),
      modelId: z.string(),
      method: z.enum(["span", "influence"]).nullable(),
      prompt: z.string(),
      output: z.string(),
      consensusHash: z.string().nullable(),
      consensusCount: z.number().int().describe("Validators whose valid signature is on consensusHash"),
      validators: z.array(z.string()),
      weights: z.array(ContributorWeight),
      unattributed: z.string().nullable().describe("Why nothing was credited, when nothing was"),
      spans: z.array(
        z.object({
          start: z.number().int().describe("First character of the span in `output`"),
          end: z.number().int().describe("One past its last character"),
          tokenStart: z.number().int(),
          tokenEnd: z.number().int(),
          text: z.string(),
          count: z.number().int().describe("Occurrences in the training rows"),
          contributors: z.array(z.string()).describe("Contributors of the rows listed, in row order"),
          rows: z.array(TraceRow),
          rowsTruncated: z.boolean(),
        }),
      ),
      influence: z
        .object({
          labelName: z.string(),
          classNames: z.array(z.string()),
          probabilitiesPpm: z.array(z.number().int()),
          topHelpful: z.array(TraceRow.extend({ influence: z.string() })),
          topHarmful: z.array(TraceRow.extend({ influence: z.string() })),
        })
        .nullable(),
      loraInfluence: z
        .object({
          estimator: z
            .string()
            .nullable()
            .describe('"damped-fisher": exact damped empirical-Fisher influence'),
          coveredTokens: z.number().int().describe("Answer tokens inside kept spans (paid by the span path)"),
          uncoveredTokens: z.number().int().describe("Answer tokens whose loss the gradient path explains"),
          unattributed: z.string().nullable().describe("Why this path paid nothing, when it did not"),
          weights: z.array(ContributorWeight).describe("This path's own contributor weights (ppm)"),
          topHelpful: z.array(TraceRow.extend({ influence: z.string() })),
          topHarmful: z.array(TraceRow.extend({ influence: z.string() })),
        })
        .nullable()
        .describe(
          "Answers of an adapter the factory trained: the training rows whose LoRA gradients explain the " +
            "answer's tokens that no span covers (null for other models)",
        ),
    }),
    400: ErrorBody,
    404: ErrorBody,
  },
};

export const inferenceRoutes: FastifyPluginAsync<{ config: AttributionConfig }> = async (root) => {
  const app = root.withTypeProvider<ZodTypeProvider>();
  const ctx = root.attribution;

  /** Every stored result of an inference, its signature checked, and the hash most validators signed. */
  async function signedResults(id: string, log: FastifyBaseLogger) {
    const inference = await root.db.inference.findUnique({
      where: { id },
      select: { id: true, modelId: true, prompt: true, output: true },
    });
    if (!inference) throw new AppError("NOT_FOUND", `inference ${id} does not exist`);
    const [results, commitments] = await Promise.all([
      root.db.attributionResult.findMany({
        where: { inferenceId: id },
        include: { weights: { orderBy: { contributorAddress: "asc" } } },
        orderBy: { validatorAddress: "asc" },
      }),
      root.db.attributionCommitment.findMany({ where: { inferenceId: id }, orderBy: { seq: "asc" } }),
    ]);
    const commitmentOf = new Map(commitments.map((c) => [c.validatorAddress.toLowerCase(), c]));
    let chain: ChainContext | null = null;
    try {
      chain = results.length > 0 ? await ctx.chain() : null;
    } catch (err) {
      log.warn({ err: (err as Error).message }, "chain unavailable: signatures not checked");
    }
    const views = await Promise.all(
      results.map(async (r) => {
        let signatureValid: boolean | null = null;
        if (chain) {
          try {
            signatureValid =
              (await recoverSigner(chain, id, r.resultHash as Hex, r.signature as Hex)) ===
              r.validatorAddress;
          } catch {
            signatureValid = false;
          }
        }
        return {
          validatorAddress: r.validatorAddress,
          method: r.method,
          resultHash: r.resultHash,
          signature: r.signature,
          signatureValid,
          hashValid: resultHashOf(r.canonicalJson) === r.resultHash,
          weights: r.weights.map((w) => ({ contributorAddress: w.contributorAddress, ppm: w.weightPpm })),
          salt: r.salt,
          revealSeq: r.revealSeq,
          canonicalJson: r.canonicalJson,
          evidence: JSON.parse(r.canonicalJson) as Record<string, unknown>,
          createdAt: r.createdAt.toISOString(),
        };
      }),
    );
    // Commit-reveal: which reveals count (as settlement decides, less the active-set check: see the chain).
    const opens = (v: (typeof views)[number]) =>
      v.hashValid &&
      v.signatureValid !== false &&
      opensAttributionCommitment(
        commitmentOf.get(v.validatorAddress.toLowerCase())?.commitment,
        v.resultHash,
        v.validatorAddress,
        v.salt,
      );
    const { counted } = countedReveals(
      views.map((v) => {
        const c = commitmentOf.get(v.validatorAddress.toLowerCase());
        return {
          validator: v.validatorAddress,
          revealSeq: v.revealSeq,
          opens: opens(v),
          ...(c ? { commitmentSeq: c.seq } : {}),
        };
      }),
    );
    const listed = views.map(({ revealSeq: _seq, ...v }) => ({
      ...v,
      counted: counted.has(v.validatorAddress.toLowerCase()),
    }));
    const counts = new Map<string, number>();
    for (const v of listed) if (v.counted) counts.set(v.resultHash, (counts.get(v.resultHash) ?? 0) + 1);
    const best = [...counts].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))[0];
    const revealedBy = new Set(results.map((r) => r.validatorAddress.toLowerCase()));
    return {
      inference,
      view: {
        inferenceId: id,
        modelId: inference.modelId,
        agree: listed.length > 0 && new Set(listed.map((v) => v.resultHash)).size === 1,
        consensusHash: best?.[0] ?? null,
        consensusCount: best?.[1] ?? 0,
        results: listed,
        commitments: commitments.map((c) => ({
          validatorAddress: c.validatorAddress,
          commitment: c.commitment,
          signature: c.signature,
          seq: c.seq.toString(),
          revealed: revealedBy.has(c.validatorAddress.toLowerCase()),
          createdAt: c.createdAt.toISOString(),
        })),
      },
    };
  }

  app.get(
    "/v1/inferences/:id/attribution",
    { schema: InferenceAttributionRoute },
    async (req) => (await signedResults(req.params.id, req.log)).view,
  );

  app.get("/v1/inferences/:id/trace", { schema: InferenceTraceRoute }, async (req) => {
    const { inference, view } = await signedResults(req.params.id, req.log);
    const valid = view.results.filter((r) => r.counted && r.signatureValid !== false && r.hashValid);
    const counts = new Map<string, number>();
    for (const r of valid) counts.set(r.resultHash, (counts.get(r.resultHash) ?? 0) + 1);
    const best = [...counts].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))[0];
    const signed = best ? valid.filter((r) => r.resultHash === best[0]) : [];
    const chosen = signed[0];
    const base = {
      inferenceId: inference.id,
      modelId: inference.modelId,
      prompt: inference.prompt,
      output: inference.output,
      consensusHash: best?.[0] ?? null,
      consensusCount: signed.length,
      validators: signed.map((r) => r.validatorAddress),
      weights: chosen?.weights ?? [],
    };
    if (!chosen)
      return { ...base, method: null, unattributed: null, spans: [], influence: null, loraInfluence: null };
    const ev = chosen.evidence as TraceEvidence;
    const rowIds = new Set<string>();
    for (const s of ev.spans ?? []) for (const r of s.rowIds) rowIds.add(r);
    const lora = ev.loraInfluence ?? null;
    for (const r of [
      ...(ev.topHelpful ?? []),
      ...(ev.topHarmful ?? []),
      ...(lora?.topHelpful ?? []),
      ...(lora?.topHarmful ?? []),
    ])
      rowIds.add(r.rowId);
    const rows = await root.db.datanetRow.findMany({
      where: { id: { in: [...rowIds].map((r) => BigInt(r)) } },
      select: { id: true, contributorAddress: true, text: true, label: true },
    });
    const byId = new Map(rows.map((r) => [r.id.toString(), r]));
    const row = (rowId: string, contributor?: string) => {
      const r = byId.get(rowId);
      return {
        rowId,
        contributorAddress: (contributor ?? r?.contributorAddress ?? "").toLowerCase(),
        text: r ? r.text.slice(0, TRACE_ROW_CHARS) : "",
        label: r?.label ?? null,
      };
    };
    if (chosen.method === "influence") {
      const source = ev.source?.datanetVersionId;
      const artifact = source
        ? await root.db.attributionIndex.findUnique({
            where: { datanetVersionId_kind: { datanetVersionId: source, kind: "influence" } },
            select: { stats: true },
          })
        : null;
      const classNames = ((artifact?.stats as { classNames?: string[] } | null)?.classNames ?? []).map(
        String,
      );
      return {
        ...base,
        method: "influence" as const,
        unattributed: ev.unattributed ?? null,
        spans: [],
        loraInfluence: null,
        influence: {
          labelName: ev.labelName ?? "",
          classNames,
          probabilitiesPpm: ev.probabilitiesPpm ?? [],
          topHelpful: (ev.topHelpful ?? []).map((r) => ({
            ...row(r.rowId, r.contributorId),
            influence: r.influence,
          })),
          topHarmful: (ev.topHarmful ?? []).map((r) => ({
            ...row(r.rowId, r.contributorId),
            influence: r.influence,
          })),
        },
      };
    }
    // Span offsets are token offsets of the tokenizer named in the result: characters = the length of
    // the decoded prefix (a span cutting a multi-byte character counts it where it ends).
    const tokenizer = await ctx.tokenizer();
    const tokens = Array.from(tokenizer.encode(inference.output));
    const chars = (t: number) => tokenizer.decode(tokens.slice(0, t)).length;
    return {
      ...base,
      method: "span" as const,
      unattributed: ev.unattributed ?? null,
      influence: null,
      loraInfluence: lora
        ? {
            estimator: lora.estimator ?? null,
            coveredTokens: lora.coveredTokens,
            uncoveredTokens: lora.uncoveredTokens,
            unattributed: lora.unattributed ?? null,
            weights: (lora.weights ?? []).map((w) => ({ contributorAddress: w.contributorId, ppm: w.ppm })),
            topHelpful: (lora.topHelpful ?? []).map((r) => ({
              ...row(r.rowId, r.contributorId),
              influence: r.influence,
            })),
            topHarmful: (lora.topHarmful ?? []).map((r) => ({
              ...row(r.rowId, r.contributorId),
              influence: r.influence,
            })),
          }
        : null,
      spans: (ev.spans ?? []).map((s) => {
        const listed = s.rowIds.map((id) => row(id));
        return {
          start: chars(s.start),
          end: chars(s.end),
          tokenStart: s.start,
          tokenEnd: s.end,
          text: tokenizer.decode(tokens.slice(s.start, s.end)),
          count: s.count,
          contributors: [...new Set(listed.map((r) => r.contributorAddress))],
          rows: listed,
          rowsTruncated: s.rowsTruncated,
        };
      }),
    };
  });
};
