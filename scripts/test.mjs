// `npm test`: sets everything up on a fresh machine (dependencies, Postgres, Redis,
// generated code) and runs every test: the TypeScript tests of apps/, packages/ and
// scripts/ with node:test, then the contracts' own suite.
import { readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { ensureServices, installIfNeeded, prepare, ROOT, run, step } from "./setup.mjs";

function findTests(dir, out = []) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.name === "node_modules" || entry.name === "generated" || entry.name.startsWith(".")) continue;
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) findTests(full, out);
    else if (entry.name.endsWith(".test.ts")) out.push(path.relative(ROOT, full));
  }
  return out;
}

// Arguments narrow the run: `npm test -- packages/db` runs the tests under that path.
const filters = process.argv.slice(2);
const roots = ["apps", "packages", "scripts"].filter((d) =>
  statSync(path.join(ROOT, d), { throwIfNoEntry: false }),
);
let files = roots.flatMap((d) => findTests(path.join(ROOT, d))).sort();
if (filters.length > 0) files = files.filter((f) => filters.some((x) => f.startsWith(x)));

installIfNeeded();
// Browser tests (`browser.test.ts`, the explorer's) need Debian's chromium: installed when missing.
ensureServices({ browser: files.some((f) => f.endsWith("browser.test.ts")) });
prepare();

let failed = false;
if (files.length > 0) {
  step(`running ${files.length} test files`);
  try {
    // Tests are mostly waiting on Postgres, Redis or a chain; three files at a time
    // keeps two cores busy without starving the CPU-heavy ones.
    run(process.execPath, ["--import", "tsx", "--test", "--test-concurrency=3", ...files]);
  } catch {
    failed = true;
  }
}

const contracts = JSON.parse(readFileSync(path.join(ROOT, "contracts", "package.json"), "utf8"));
if (contracts.scripts?.test && (filters.length === 0 || filters.some((x) => x.startsWith("contracts")))) {
  step("running the contracts' tests");
  try {
    run("npm", ["run", "--silent", "test", "-w", "@openledger/contracts"]);
  } catch {
    failed = true;
  }
}
process.exit(failed ? 1 : 0);
