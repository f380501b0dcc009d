// Install step of @openledger/suffix-native (scripts/lib/build-addon.mjs): without a compiler, Python or
// headers the platform runs the TypeScript SA-IS instead (attribution-core logs that once).
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { buildAddon } from "../../scripts/lib/build-addon.mjs";

buildAddon(
  dirname(fileURLToPath(import.meta.url)),
  "@openledger/suffix-native: native SA-IS",
  "suffix arrays use the TypeScript builder",
);
