export * from "./errors.ts";
export * from "./parse/byte-source.ts";
export * from "./parse/formats.ts";
export * from "./parse/limits.ts";
export * from "./parse/lines.ts";
