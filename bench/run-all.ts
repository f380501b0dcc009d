// `npm run bench` (turbo) / `npm run bench -w @openledger/bench`: every benchmark in turn,
// each printing its own table. Long: each program documents its own duration.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const AREAS = ["contracts", "datanets", "attribution", "runtime", "gateway", "settlement"];
let failed = 0;
for (const area of AREAS) {
  const file = path.join(here, `${area}.ts`);
  if (!existsSync(file)) continue;
  process.stderr.write(`\n=== bench:${area}\n`);
  const run = spawnSync(process.execPath, ["--import", "tsx", file, ...process.argv.slice(2)], {
    stdio: "inherit",
  });
  if (run.status !== 0) failed++;
}
process.exit(failed > 0 ? 1 : 0);
