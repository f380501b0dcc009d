// `npm run roles [-- --json] [-- --profile dev]`: deploys the platform (production profile by default) on a
// fresh local chain and lists every (contract, role, holder) — derived from the chain's own role events
// (RoleGranted / RoleRevoked, ValidatorAdded / ValidatorRemoved, the governor's ProposalGuardianSet /
// TimelockChange), not from a list kept here. `--json` prints one JSON array of
// {"contract","role","holder","holderKind"}; the table adds what each role can do. Exits 1 when an externally
// owned account holds a role that moves funds or grants roles (the production profile's promise).
import {
  auditRoles,
  type ChainPublicClient,
  createChainPublicClient,
  type DeployProfile,
  eoaViolations,
  ROLE_CATALOG,
} from "@openledger/chain";
import { startLocalChain } from "@openledger/chain/testing";

const json = process.argv.includes("--json");
const profileArg = process.argv[process.argv.indexOf("--profile") + 1];
const profile: DeployProfile =
  process.argv.includes("--profile") && profileArg === "dev" ? "dev" : "production";

const chain = await startLocalChain({
  profile,
  log: (line) => {
    if (!json) process.stderr.write(`[roles] ${line}\n`);
  },
});
try {
  const addresses = chain.addresses;
  if (!addresses) throw new Error("the platform was not deployed");
  const publicClient: ChainPublicClient = createChainPublicClient({
    rpcUrl: chain.rpcUrl,
    chainId: chain.chainId,
  });
  const holders = await auditRoles(publicClient, addresses);
  const violations = eoaViolations(holders);
  if (json) {
    process.stdout.write(
      `${JSON.stringify(holders.map(({ contract, role, holder, holderKind }) => ({ contract, role, holder, holderKind })))}\n`,
    );
  } else {
    const rows = holders.map((h) => {
      const info = ROLE_CATALOG[h.contract][h.role];
      return [h.contract, h.role, h.holder, h.holderKind, info?.power ?? "?", info?.bound ?? ""];
    });
    const head = ["contract", "role", "holder", "kind", "power", "bound"];
    const widths = head.map((x, i) => Math.min(60, Math.max(x.length, ...rows.map((r) => r[i]!.length))));
    const line = (r: string[]) => r.map((x, i) => (i === r.length - 1 ? x : x.padEnd(widths[i]!))).join("  ");
    console.log(`profile: ${profile} (chain ${chain.chainId})`);
    console.log(line(head));
    for (const r of rows) console.log(line(r));
    console.log(
      violations.length === 0
        ? "no externally owned account holds a role that moves funds or grants roles"
        : `${violations.length} EOA role(s) that move funds or grant roles${profile === "dev" ? " (the dev profile's dev admin)" : ""}`,
    );
  }
  if (profile === "production" && violations.length > 0) process.exitCode = 1;
} finally {
  await chain.stop();
}
