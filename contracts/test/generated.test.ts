// packages/chain commits TypeScript generated from the Hardhat artifacts (so services typecheck and deploy
// without compiling). This fails when the contracts changed and `npm run generate -w @openledger/chain`
// was not re-run.
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { describe, it } from "node:test";
import { CONTRACT_NAMES } from "@openledger/chain";
import { hre } from "./helpers.ts";

const chainDir = path.join(__dirname, "..", "..", "packages", "chain");

describe("generated ABIs and bytecode", () => {
  it("match the compiled artifacts", async () => {
    // codegen.ts is not part of the package's public API; import it by path.
    const { renderGenerated } = await import(path.join(chainDir, "src", "codegen.ts"));
    const expected = await renderGenerated(path.join(__dirname, ".."));
    const abis = await readFile(path.join(chainDir, "src", "generated", "abis.ts"), "utf8");
    const bytecode = await readFile(path.join(chainDir, "src", "generated", "bytecode.ts"), "utf8");
    const hint = "run `npm run generate -w @openledger/chain` after compiling";
    assert.ok(abis === expected.abis, `packages/chain/src/generated/abis.ts is stale: ${hint}`);
    assert.ok(bytecode === expected.bytecode, `packages/chain/src/generated/bytecode.ts is stale: ${hint}`);
  });

  it("cover every production contract Hardhat compiled", async () => {
    const names: string[] = [];
    for (const fqn of await hre.artifacts.getAllFullyQualifiedNames()) {
      if (!fqn.startsWith("contracts/") || fqn.startsWith("contracts/mocks/")) continue;
      const artifact = await hre.artifacts.readArtifact(fqn);
      if (artifact.bytecode !== "0x") names.push(artifact.contractName); // skip interfaces
    }
    assert.deepEqual([...names].sort(), [...CONTRACT_NAMES].sort());
  });
});
