// Entry of WorkerRuntime's thread. The runtime code is TypeScript: in a worker thread the
// `--import tsx` of the process installs tsx's require hook but not its ESM loader, so the
// thread starts from this CommonJS file and requires the module (as piscina's workers do).
require("./runtime-worker.ts");
