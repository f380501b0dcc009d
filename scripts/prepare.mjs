// Generates what the TypeScript imports but git does not hold: the Prisma client
// (from prisma/schema.prisma), the compiled contracts and the explorer's built web app. Each
// step is skipped when its inputs have not changed, so running this before every command is cheap.
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

function run(command, args, env = {}) {
  const result = spawnSync(command, args, {
    cwd: ROOT,
    stdio: ["ignore", "inherit", "inherit"],
    env: { ...process.env, ...env },
  });
  if (result.status !== 0) {
    process.stderr.write(`prepare: ${command} ${args.join(" ")} failed\n`);
    process.exit(result.status ?? 1);
  }
}

// Prisma client. `prisma generate` needs no schema engine, but the CLI insists on
// finding one before it starts: point it at any executable (it is not run).
const schemaPath = path.join(ROOT, "prisma", "schema.prisma");
const generatedDir = path.join(ROOT, "packages", "db", "src", "generated", "prisma");
const stamp = path.join(generatedDir, ".schema-hash");
const hash = createHash("sha256").update(readFileSync(schemaPath)).digest("hex");
if (!existsSync(stamp) || readFileSync(stamp, "utf8") !== hash) {
  process.stderr.write("prepare: generating the Prisma client\n");
  run(path.join(ROOT, "node_modules", ".bin", "prisma"), ["generate"], {
    PRISMA_SCHEMA_ENGINE_BINARY: process.env.PRISMA_SCHEMA_ENGINE_BINARY ?? "/bin/true",
    PRISMA_HIDE_UPDATE_MESSAGE: "1",
    CHECKPOINT_DISABLE: "1",
  });
  writeFileSync(stamp, hash);
}

// Contracts: Hardhat caches the compilation, so an unchanged tree compiles nothing.
if (existsSync(path.join(ROOT, "contracts", "hardhat.config.js"))) {
  run("npm", ["run", "--silent", "compile", "-w", "@openledger/contracts"]);
}

// The explorer's web app (apps/explorer/web -> apps/explorer/dist), built by Vite when its sources,
// the ABIs it imports or the installed packages changed; the explorer's server serves the result.
const explorerDir = path.join(ROOT, "apps", "explorer");
if (existsSync(path.join(explorerDir, "web", "vite.config.ts"))) {
  const files = [];
  const walk = (dir) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else files.push(full);
    }
  };
  walk(path.join(explorerDir, "web"));
  files.push(
    path.join(explorerDir, "package.json"),
    path.join(ROOT, "package-lock.json"),
    path.join(ROOT, "packages", "chain", "src", "generated", "abis.ts"),
  );
  const inputs = createHash("sha256");
  for (const f of files.sort()) inputs.update(path.relative(ROOT, f)).update(readFileSync(f));
  const builtHash = inputs.digest("hex");
  const builtStamp = path.join(explorerDir, "dist", ".build-hash");
  if (!existsSync(builtStamp) || readFileSync(builtStamp, "utf8") !== builtHash) {
    process.stderr.write("prepare: building the explorer's web app\n");
    run(path.join(ROOT, "node_modules", ".bin", "vite"), [
      "build",
      "--config",
      path.join(explorerDir, "web", "vite.config.ts"),
      "--logLevel",
      "warn",
    ]);
    writeFileSync(builtStamp, builtHash);
  }
}
