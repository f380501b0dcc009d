// Install step of @openledger/decode-native (scripts/lib/build-addon.mjs): without a compiler, Python or
// headers model-runtime runs every decode step in onnxruntime instead.
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { buildAddon } from "../../scripts/lib/build-addon.mjs";

buildAddon(
  dirname(fileURLToPath(import.meta.url)),
  "@openledger/decode-native: native batch-1 decode step",
  "batch-1 int8c decode runs in onnxruntime",
);
