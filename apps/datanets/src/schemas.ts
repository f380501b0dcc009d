import { Address, ErrorBody, Uuid } from "@openledger/service-kit";
import { z } from "zod";

/** Shared zod schemas of the datanets API (they become the OpenAPI document at /docs). */

export { Address, ErrorBody, Uuid };

export const Wei = z
  .string()
  .regex(/^\d+$/, "an integer amount of wei")
  .describe("Amount in wei of OPEN (decimal string)");
export const IdParams = z.object({ id: Uuid.describe("Datanet id") });

export const ChainIntentView = z.object({
  id: Uuid,
  kind: z.string(),
  status: z.enum(["pending", "submitted", "confirmed", "failed"]),
  txHash: z.string().nullable(),
  error: z.string().nullable(),
});

export const DatanetView = z.object({
  id: Uuid,
  slug: z.string(),
  name: z.string(),
  description: z.string(),
  tags: z.array(z.string()),
  type: z.string(),
  license: z.string(),
  ownerAddress: z.string(),
  minStakeWei: Wei,
  dailyRowLimitPerContributor: z.number().int(),
  dailyRowLimit: z.number().int(),
  chainDatanetId: z.string().nullable().describe("Id in DatanetRegistry once the registration is confirmed"),
  registration: ChainIntentView.nullable().describe("The on-chain registration intent"),
  createdAt: z.string(),
  updatedAt: z.string(),
});

export const Page = <T extends z.ZodType>(item: T) =>
  z.object({
    items: z.array(item),
    nextCursor: z.string().nullable().describe("Pass as `cursor` to get the next page; null at the end"),
  });

export const PageQuery = z.object({
  limit: z.coerce.number().int().min(1).max(200).default(50).describe("Page size (1-200)"),
  cursor: z.string().optional().describe("Opaque cursor from the previous page"),
});

export const RowStatusView = z.enum(["pending", "accepted", "rejected"]);

export const ContributionView = z.object({
  id: Uuid,
  datanetId: Uuid,
  contributorAddress: z.string(),
  source: z.enum(["rows", "file"]),
  fileName: z.string().nullable(),
  status: z.enum(["pending", "validating", "validated", "failed"]),
  rowCount: z.number().int(),
  acceptedCount: z.number().int(),
  rejectedCount: z.number().int(),
  createdAt: z.string(),
  validatedAt: z.string().nullable(),
});

export const JobView = z
  .object({
    id: z.string(),
    state: z.string().describe("BullMQ state: waiting, active, completed, failed, delayed, unknown"),
    progress: z.unknown().describe("{ processed, total } while validating"),
    attemptsMade: z.number().int(),
    failedReason: z.string().nullable(),
  })
  .nullable();

export const SlashingStatusView = z.enum(["proposed", "disputed", "upheld", "dismissed", "executed"]);

export const SlashingProposalView = z.object({
  id: Uuid,
  datanetId: Uuid,
  contributorAddress: z.string(),
  contributionId: Uuid.nullable(),
  reason: z.string(),
  evidenceHash: z.string(),
  amountWei: Wei,
  status: SlashingStatusView,
  disputeDeadline: z.string(),
  disputeReason: z.string().nullable(),
  executedTxHash: z.string().nullable(),
  createdAt: z.string(),
  updatedAt: z.string(),
});

export const VersionView = z.object({
  id: Uuid,
  datanetId: Uuid,
  version: z.number().int(),
  merkleRoot: z
    .string()
    .describe("OpenZeppelin StandardMerkleTree root over (position, rowId, contributor, sha256(text))"),
  rowCount: z.number().int(),
  contributorCount: z.number().int(),
  status: z.enum(["pending", "registered", "indexed"]),
  chainTxHash: z.string().nullable(),
  createdAt: z.string(),
});
