/**
 * The native SA-IS builder (@openledger/suffix-native: C++ over Node-API, compiled by node-gyp at
 * `npm ci`), loaded once. It is optional: where the install could not compile it (no compiler, no
 * Node headers) or the package is not linked yet, `nativeSuffixArrayBuild` is null and `buildSuffixArray`
 * runs the TypeScript SA-IS, which gives the same array (a suffix array is unique) at ~0.3x the speed.
 * Loaded with `require` (a .node file), so a missing addon is a caught error, not a failed import.
 * `OPENLEDGER_SA_NATIVE=off` keeps it unloaded for the whole process: an operator's switch for a
 * native component (read here, once, rather than in every app's config: it is a property of the
 * install, not of a service), and how the tests reproduce a machine where the build failed.
 */
import { createRequire } from "node:module";

type NativeText = Uint8Array | Uint16Array | Int32Array;

interface SuffixNativeAddon {
  /** Fills `out` (an Int32Array of the text's length) with the suffix array; throws on bad input. */
  build(text: NativeText, alphabetSize: number, out: Int32Array): void;
}

let addon: SuffixNativeAddon | null = null;
let loadError: string | null = null;
try {
  if (process.env.OPENLEDGER_SA_NATIVE === "off") throw new Error("disabled by OPENLEDGER_SA_NATIVE=off");
  addon = createRequire(import.meta.url)("@openledger/suffix-native") as SuffixNativeAddon;
  if (typeof addon.build !== "function") throw new Error("the addon has no build()");
} catch (err) {
  addon = null;
  loadError = ((err as Error).message ?? String(err)).split("\n")[0]!;
}

/** Whether the native builder loaded, and why not. */
export function nativeSuffixArrayStatus(): { available: boolean; reason: string | null } {
  return { available: addon !== null, reason: loadError };
}

/** The native build, or null when the addon is unavailable. */
export const nativeSuffixArrayBuild: ((text: NativeText, alphabetSize: number) => Int32Array) | null =
  addon === null
    ? null
    : (text, alphabetSize) => {
        const out = new Int32Array(text.length);
        addon!.build(text, alphabetSize, out);
        return out;
      };
