// Regenerates src/generated/{abis,bytecode}.ts from contracts/artifacts (compile the contracts first).
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { GENERATED_DIR, renderGenerated } from "../src/codegen.ts";

const { abis, bytecode } = await renderGenerated();
await writeFile(join(GENERATED_DIR, "abis.ts"), abis);
await writeFile(join(GENERATED_DIR, "bytecode.ts"), bytecode);
console.error(`wrote ${join(GENERATED_DIR, "abis.ts")} and bytecode.ts`);
