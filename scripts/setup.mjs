// Shared set-up for `npm start` and `npm test`, in plain Node (it runs before
// dependencies exist): install dependencies when missing or stale, make sure the local
// Postgres and Redis run, and generate what the code imports (Prisma client, contracts).
import { spawnSync } from "node:child_process";
import { existsSync, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

export function run(command, args, options = {}) {
  const result = spawnSync(command, args, { cwd: ROOT, stdio: "inherit", ...options });
  if (result.status !== 0) {
    const why = result.error ? result.error.message : `exit code ${result.status ?? result.signal}`;
    throw new Error(`${command} ${args.join(" ")} failed (${why})`);
  }
}

export function step(message) {
  process.stderr.write(`\n▶ ${message}\n`);
}

/** npm ci when node_modules is missing or older than package-lock.json. */
export function installIfNeeded() {
  const marker = path.join(ROOT, "node_modules", ".package-lock.json");
  const lock = path.join(ROOT, "package-lock.json");
  if (existsSync(marker) && statSync(marker).mtimeMs >= statSync(lock).mtimeMs) return;
  step("installing dependencies (npm ci)");
  run("npm", ["ci", "--no-audit", "--no-fund", "--loglevel=warn"]);
}

/** Postgres and Redis up; `browser`: Debian's chromium installed too (the explorer's browser test). */
export function ensureServices({ browser = false } = {}) {
  if (process.env.OPENLEDGER_SKIP_SERVICES === "1") return;
  step(browser ? "checking PostgreSQL, Redis and Chromium" : "checking PostgreSQL and Redis");
  run("bash", [path.join(ROOT, "scripts", "ensure-services.sh"), ...(browser ? ["--browser"] : [])]);
}

export function prepare() {
  run(process.execPath, [path.join(ROOT, "scripts", "prepare.mjs")]);
}
