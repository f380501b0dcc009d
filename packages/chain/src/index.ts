export * from "./clients.ts";
export * from "./contract-names.ts";
export * from "./deploy.ts";
export * from "./generated/abis.ts";
export * from "./generated/bytecode.ts";
export * from "./merkle.ts";
export * from "./roles.ts";
export * from "./typed-data.ts";
