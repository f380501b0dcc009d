// The compose `migrate` job (after `deploy`): binds the database to the chain deployment it was
// written against, so that the chain's state and the database cannot silently contradict each
// other after a restart. A deployment is identified by (chain id, OpenToken address, hash of the
// deployment block): a dev Hardhat node that was restarted is a new, empty chain even where the
// contracts land at the same addresses, and its deployment block has another hash. When the database
// is bound to another deployment, its rows are moved aside to `<schema>_before_chain_<stamp>` (nothing
// dropped; said in the log, as `npm start` does) and the platform starts clean; then the migrations run
// and the binding is recorded in `_openledger_chain` (a meta table beside `_prisma_migrations`).
import { loadAddresses, type PlatformAddresses, rpcRequest } from "@openledger/chain";
import { loadConfig, platformEnv } from "@openledger/config";
import { archiveSchema, ensureDatabase, migrate, parseDatabaseUrl } from "@openledger/db";
import pg from "pg";

export interface ChainIdentity {
  chainId: number;
  token: string;
  deployBlockHash: string;
}

export async function chainIdentity(rpcUrl: string, a: PlatformAddresses): Promise<ChainIdentity> {
  const block = await rpcRequest<{ hash: string } | null>(rpcUrl, "eth_getBlockByNumber", [
    `0x${BigInt(a.deployedAtBlock).toString(16)}`,
    false,
  ]);
  if (!block)
    throw new Error(`the chain has no block ${a.deployedAtBlock}: the addresses file is not from this chain`);
  return { chainId: a.chainId, token: a.contracts.OpenToken.toLowerCase(), deployBlockHash: block.hash };
}

async function readBinding(databaseUrl: string): Promise<ChainIdentity | null> {
  const t = parseDatabaseUrl(databaseUrl);
  const c = new pg.Client({ connectionString: t.connectionString });
  await c.connect();
  try {
    const r = await c.query<{ chain_id: number; token: string; deploy_block_hash: string }>(
      `SELECT chain_id, token, deploy_block_hash FROM "${t.schema}"._openledger_chain LIMIT 1`,
    );
    const row = r.rows[0];
    return row ? { chainId: row.chain_id, token: row.token, deployBlockHash: row.deploy_block_hash } : null;
  } catch (err) {
    if ((err as { code?: string }).code === "42P01") return null; // no binding table: never bound
    throw err;
  } finally {
    await c.end();
  }
}

async function writeBinding(databaseUrl: string, id: ChainIdentity): Promise<void> {
  const t = parseDatabaseUrl(databaseUrl);
  const c = new pg.Client({ connectionString: t.connectionString });
  await c.connect();
  try {
    await c.query("BEGIN");
    await c.query(
      `CREATE TABLE IF NOT EXISTS "${t.schema}"._openledger_chain (chain_id integer NOT NULL, token text NOT NULL, deploy_block_hash text NOT NULL, bound_at timestamptz NOT NULL DEFAULT now())`,
    );
    await c.query(`DELETE FROM "${t.schema}"._openledger_chain`);
    await c.query(
      `INSERT INTO "${t.schema}"._openledger_chain (chain_id, token, deploy_block_hash) VALUES ($1, $2, $3)`,
      [id.chainId, id.token, id.deployBlockHash],
    );
    await c.query("COMMIT");
  } catch (err) {
    await c.query("ROLLBACK").catch(() => {});
    throw err;
  } finally {
    await c.end();
  }
}

const same = (a: ChainIdentity, b: ChainIdentity) =>
  a.chainId === b.chainId && a.token === b.token && a.deployBlockHash === b.deployBlockHash;

/** Binds (or re-binds, archiving the old rows) the database to the deployment; then migrates. */
export async function bindAndMigrate(opts: {
  databaseUrl: string;
  rpcUrl: string;
  addresses: PlatformAddresses;
  log: (msg: string, fields?: object) => void;
}): Promise<{ archived?: string }> {
  await ensureDatabase(opts.databaseUrl);
  const current = await chainIdentity(opts.rpcUrl, opts.addresses);
  const bound = await readBinding(opts.databaseUrl);
  let archived: string | undefined;
  if (bound && !same(bound, current)) {
    const stamp = new Date().toISOString().replace(/\D/g, "").slice(0, 14);
    archived = await archiveSchema(opts.databaseUrl, `before_chain_${stamp}`);
    opts.log(
      "the database was written against another chain deployment (a restarted dev chain is a new, empty chain): its rows were moved aside and the platform starts clean",
      { archivedSchema: archived, bound, current },
    );
  }
  const m = await migrate({ databaseUrl: opts.databaseUrl, log: (msg) => opts.log(msg) });
  opts.log("database up to date", { applied: m.applied.length });
  await writeBinding(opts.databaseUrl, current);
  opts.log("database bound to the chain deployment", current);
  return archived ? { archived } : {};
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const config = loadConfig("platform", platformEnv) as {
    DATABASE_URL: string;
    CHAIN_RPC_URL: string;
    CHAIN_ADDRESSES_FILE?: string;
  };
  const file = config.CHAIN_ADDRESSES_FILE;
  if (!file) throw new Error("CHAIN_ADDRESSES_FILE is required (the deploy job writes it)");
  const log = (msg: string, fields?: object) =>
    process.stdout.write(`${JSON.stringify({ msg, ...fields })}\n`);
  await bindAndMigrate({
    databaseUrl: config.DATABASE_URL,
    rpcUrl: config.CHAIN_RPC_URL,
    addresses: await loadAddresses(file),
    log,
  });
}
