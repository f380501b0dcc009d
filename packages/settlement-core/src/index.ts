export * from "./earnings.ts";
export * from "./fee.ts";
export * from "./journal.ts";
export * from "./quorum.ts";
export * from "./rounding.ts";
export * from "./signatures.ts";
export * from "./signed-result.ts";
export * from "./split.ts";
