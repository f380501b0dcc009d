import { z } from "zod";

/*
 * Response schemas of the gateway's registry routes (adapters, small models). They document the
 * answers at /docs, are checked when a reply is serialized, and are the types @openledger/sdk
 * compiles against (through src/api.ts): a change here breaks the SDK's typecheck, not its users.
 * The OpenAI routes keep OpenAI's own shapes (the `openai` package's types describe them).
 */

const Wei = z.string().describe("wei of OPEN, decimal string");

/** The on-chain registration (ModelRegistry) of a model, as far as it got. */
export const ChainRegistrationView = z.object({
  status: z
    .string()
    .describe("confirmed; pending (kept and retried by the sweeper); failed; skipped (no chain configured)"),
  txHash: z.string().nullable().optional(),
  chainModelId: z.string().optional().describe("ModelRegistry id once confirmed"),
  error: z.string().nullable().optional(),
});

export const AdapterSummary = z.object({
  id: z.string().describe("The model id clients pass as `model`"),
  object: z.literal("adapter"),
  owner: z.string().describe("Owner address (the API key's account), lower case"),
  contentHash: z.string().describe("SHA-256 over the two files' digests (content address)"),
  pricePer1kInputWei: Wei,
  pricePer1kOutputWei: Wei,
  createdAt: z.string(),
});

export const AdapterCreated = AdapterSummary.extend({
  rank: z.number().int(),
  sizeBytes: z.number().int(),
  datanetVersionIds: z.array(z.string()).describe("The datanet versions it was trained on"),
  chain: ChainRegistrationView,
  training: z
    .object({
      grantId: z.string(),
      usageInferenceId: z
        .string()
        .nullable()
        .describe("The training's metered usage (settled to contributors)"),
    })
    .optional()
    .describe("Uploads under a training grant (the factory's): the grant and the training's usage"),
});

export const AdapterDetail = AdapterSummary.extend({
  status: z.string().describe("active or retired"),
  baseModel: z.string().nullable(),
  chainModelId: z.string().nullable(),
  chain: ChainRegistrationView,
  datanetVersionIds: z.array(z.string()),
});

export const SmallModelSummary = z.object({
  id: z.string(),
  object: z.literal("small_model"),
  owner: z.string(),
  contentHash: z.string().describe("SHA-256 of the influence model file"),
  datanetVersionId: z.string().nullable(),
  pricePer1kInputWei: Wei,
  pricePer1kOutputWei: Wei,
  createdAt: z.string(),
});

export const SmallModelCreated = SmallModelSummary.extend({
  onnxSha256: z.string().describe("SHA-256 of the ONNX export the gateway serves"),
  classes: z.array(z.string()).describe("The labels it answers"),
  features: z.unknown().describe("Feature hashing settings"),
  chain: ChainRegistrationView,
});

export const SmallModelDetail = SmallModelSummary.extend({
  status: z.string().describe("active or retired"),
  chainModelId: z.string().nullable(),
  chain: ChainRegistrationView,
});

export const Retired = z.object({ id: z.string(), object: z.string(), status: z.literal("retired") });

export const ModelList = <T extends z.ZodType>(item: T) =>
  z.object({ object: z.literal("list"), data: z.array(item) });
