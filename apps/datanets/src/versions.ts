import { Readable } from "node:stream";
import type { Datanet } from "@openledger/db";
import { AppError } from "@openledger/errors";
import { StandardMerkleTree } from "@openzeppelin/merkle-tree";
import type { Hex } from "viem";
import type { DatanetsContext } from "./context.ts";
import { driveIntent, intentKey, newIntent } from "./intents.ts";

/**
 * A version is the ordered list of ALL rows accepted in the datanet since genesis (cumulative, by
 * row id = acceptance-independent insertion order), so every version is a complete, self-contained
 * dataset a model can name. Leaf i of the merkle tree is OpenZeppelin's StandardMerkleTree leaf
 * (double keccak of the ABI encoding) of
 *   (uint32 position, uint256 rowId, address contributor, bytes32 sha256(UTF-8 text))
 * with leaves kept in position order (sortLeaves: false); the root is registered on-chain with
 * DatanetRegistry.publishVersion. Anyone holding the JSONL export recomputes it.
 */
export const LEAF_ENCODING = ["uint32", "uint256", "address", "bytes32"] as const;

export interface VersionLeafRow {
  position: number;
  rowId: bigint;
  contributor: string;
  textSha256: string; // hex, no 0x
}

export function versionTree(rows: VersionLeafRow[]) {
  return StandardMerkleTree.of(
    rows.map((r) => [r.position, r.rowId, r.contributor, `0x${r.textSha256}`]),
    [...LEAF_ENCODING],
    { sortLeaves: false },
  );
}

async function versionLeafRows(ctx: DatanetsContext, versionId: string): Promise<VersionLeafRow[]> {
  const out: VersionLeafRow[] = [];
  let after = -1;
  for (;;) {
    const page = await ctx.db.$queryRaw<
      { position: number; row_id: bigint; contributor: string; sha: string }[]
    >`
      SELECT vr.position, vr.row_id, r.contributor_address AS contributor,
             encode(sha256(convert_to(r.text, 'UTF8')), 'hex') AS sha
      FROM datanet_version_rows vr JOIN datanet_rows r ON r.id = vr.row_id
      WHERE vr.version_id = ${versionId}::uuid AND vr.position > ${after}
      ORDER BY vr.position LIMIT 10000`;
    for (const p of page)
      out.push({ position: p.position, rowId: p.row_id, contributor: p.contributor, textSha256: p.sha });
    if (page.length < 10_000) return out;
    after = page[page.length - 1]!.position;
  }
}

/**
 * Publishes the next version: freezes the accepted rows (datanet_version_rows), computes the
 * merkle root, and records the on-chain intent, all in one transaction; then registers it.
 */
export async function publishVersion(ctx: DatanetsContext, datanet: Datanet) {
  if (datanet.chainDatanetId === null) {
    throw new AppError("DATANET_NOT_REGISTERED", "the datanet is not registered on-chain yet", {
      status: 409,
    });
  }
  await ctx.chain.require();
  const versionId = await ctx.db.$transaction(
    async (tx) => {
      await tx.$executeRaw`SELECT pg_advisory_xact_lock(hashtextextended(${`publish:${datanet.id}`}, 0))`;
      const last = await tx.datanetVersion.findFirst({
        where: { datanetId: datanet.id },
        orderBy: { version: "desc" },
      });
      if (last && last.status === "pending") {
        throw new AppError(
          "VERSION_PENDING",
          `version ${last.version} is not registered on-chain yet: retry POST /v1/datanets/${datanet.id}/versions/${last.version}/register`,
          { status: 409 },
        );
      }
      const accepted = await tx.datanetRow.count({ where: { datanetId: datanet.id, status: "accepted" } });
      if (accepted === 0)
        throw new AppError("NO_ACCEPTED_ROWS", "the datanet has no accepted rows yet", { status: 409 });
      if (last && last.rowCount === accepted) {
        throw new AppError("NO_NEW_ROWS", `no rows were accepted since version ${last.version}`, {
          status: 409,
        });
      }
      const version = await tx.datanetVersion.create({
        data: {
          datanetId: datanet.id,
          version: (last?.version ?? 0) + 1,
          merkleRoot: `0x${"0".repeat(64)}`,
          rowCount: 0,
          contributorCount: 0,
        },
      });
      await tx.$executeRaw`
        INSERT INTO datanet_version_rows (version_id, position, row_id)
        SELECT ${version.id}::uuid, (row_number() OVER (ORDER BY id) - 1)::int, id
        FROM datanet_rows WHERE datanet_id = ${datanet.id}::uuid AND status = 'accepted'`;
      return version.id;
    },
    { timeout: 120_000 },
  );
  return versionId; // registerVersion computes the root and registers it (retryable)
}

/**
 * Computes the root of a frozen version and records its publish intent (once: the intent key is
 * unique). Separate from the freeze so that a crash in between is finished by a retry.
 */
export async function finalizeVersion(ctx: DatanetsContext, versionId: string) {
  if (await ctx.db.chainIntent.findUnique({ where: { key: intentKey.publish(versionId) } })) return;
  const chain = await ctx.chain.get();
  const { datanet } = await ctx.db.datanetVersion.findUniqueOrThrow({
    where: { id: versionId },
    include: { datanet: true },
  });
  // The frozen rows are the version's content from here on; compute the root from them.
  const leaves = await versionLeafRows(ctx, versionId);
  const root = versionTree(leaves).root as Hex;
  const contributors = new Set(leaves.map((l) => l.contributor)).size;
  const intent = await newIntent(chain, {
    kind: "datanet.publish",
    versionId,
    chainDatanetId: datanet.chainDatanetId!.toFixed(),
    root,
    rowCount: leaves.length,
    contributorCount: contributors,
  });
  await ctx.db.$transaction(async (tx) => {
    await tx.datanetVersion.update({
      where: { id: versionId },
      data: { merkleRoot: root, rowCount: leaves.length, contributorCount: contributors },
    });
    await tx.chainIntent.create({ data: intent });
  });
}

/** Registers (or resumes registering) a version on-chain, then queues its attribution index. */
export async function registerVersion(
  ctx: DatanetsContext,
  versionId: string,
  enqueueIndex: (versionId: string) => Promise<unknown>,
  log: { warn(o: object, m: string): void },
) {
  try {
    await finalizeVersion(ctx, versionId);
    const version = await ctx.db.datanetVersion.findUniqueOrThrow({ where: { id: versionId } });
    if (version.status === "pending") await driveIntent(ctx, intentKey.publish(versionId));
    await enqueueIndex(versionId);
  } catch (err) {
    log.warn(
      { err: (err as Error).message, versionId },
      "version registration/indexing not done yet; will retry",
    );
  }
}

/** The version's rows as JSONL, read page by page (constant memory). */
export function exportVersion(ctx: DatanetsContext, versionId: string): Readable {
  async function* lines() {
    let after = -1;
    for (;;) {
      const page = await ctx.db.$queryRaw<
        {
          position: number;
          row_id: bigint;
          contributor: string;
          text: string;
          label: string | null;
          metadata: unknown;
          normalized_hash: string;
        }[]
      >`
        SELECT vr.position, vr.row_id, r.contributor_address AS contributor, r.text, r.label, r.metadata, r.normalized_hash
        FROM datanet_version_rows vr JOIN datanet_rows r ON r.id = vr.row_id
        WHERE vr.version_id = ${versionId}::uuid AND vr.position > ${after}
        ORDER BY vr.position LIMIT 1000`;
      if (page.length === 0) return;
      let chunk = "";
      for (const r of page) {
        chunk += `${JSON.stringify({
          position: r.position,
          rowId: r.row_id.toString(),
          contributor: r.contributor,
          text: r.text,
          ...(r.label !== null ? { label: r.label } : {}),
          ...(r.metadata !== null ? { metadata: r.metadata } : {}),
          contentHash: r.normalized_hash,
        })}\n`;
      }
      yield chunk;
      after = page[page.length - 1]!.position;
    }
  }
  return Readable.from(lines());
}
