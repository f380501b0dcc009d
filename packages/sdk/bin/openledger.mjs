#!/usr/bin/env node
// The `openledger` CLI (packages/sdk/src/cli/main.ts), run from its TypeScript source through tsx,
// like every other program of this repository (no build step to forget).
import { register } from "tsx/esm/api";

register();
const { run } = await import("../src/cli/main.ts");
process.exitCode = await run(process.argv.slice(2));
