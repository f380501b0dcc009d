// `npm run roles -- --json` as a user runs it: a fresh local chain, the production profile, one JSON array of
// {"contract","role","holder","holderKind"} derived from the chain's role events — and no EOA among the
// holders of a role that moves funds or grants roles.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import path from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { type ContractName, type RoleHolder, rolePower } from "@openledger/chain";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

function run(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ["--import", "tsx", path.join(ROOT, "scripts", "roles.ts"), ...args],
      {
        cwd: ROOT,
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    child.on("error", reject);
    child.on("exit", (code) => resolve({ code, stdout, stderr }));
  });
}

test("npm run roles -- --json: production holders, none of them an EOA that moves funds or grants roles", async () => {
  const { code, stdout, stderr } = await run(["--json"]);
  assert.equal(code, 0, stderr);
  const lines = stdout.trim().split("\n");
  assert.equal(lines.length, 1, "one JSON array, nothing else on stdout");
  const holders = JSON.parse(lines[0]!) as RoleHolder[];
  assert.ok(holders.length >= 20);
  const kinds = new Set(["timelock", "governor", "contract", "guardian", "eoa"]);
  for (const h of holders) {
    assert.deepEqual(Object.keys(h).sort(), ["contract", "holder", "holderKind", "role"]);
    assert.ok(kinds.has(h.holderKind), h.holderKind);
    const power = rolePower(h.contract as ContractName, h.role);
    assert.ok(power, `${h.contract} ${h.role} is not classified`);
    if (h.holderKind === "eoa") {
      assert.ok(
        power !== "admin" && power !== "moves-funds",
        `EOA ${h.holder} holds ${h.contract} ${h.role}`,
      );
    }
  }
  const timelock = holders.find((h) => h.holderKind === "timelock")!.holder;
  for (const h of holders.filter((x) => x.role === "DEFAULT_ADMIN_ROLE"))
    assert.equal(h.holder, timelock, h.contract);
});

test("npm run roles -- --profile dev: the dev admin is listed and flagged", async () => {
  const { code, stdout } = await run(["--profile", "dev"]);
  assert.equal(code, 0, "the dev profile is allowed its dev admin");
  assert.match(stdout, /profile: dev/);
  assert.match(
    stdout,
    /OpenTimelock\s+PROPOSER_ROLE\s+0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266\s+eoa\s+admin/,
  );
  assert.match(stdout, /EOA role\(s\) that move funds or grant roles \(the dev profile's dev admin\)/);
});
