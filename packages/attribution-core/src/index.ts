export * from "./det-math.ts";
export * from "./ppm.ts";
export * from "./span-index.ts";
export * from "./span-query.ts";
export * from "./suffix-array.ts";
