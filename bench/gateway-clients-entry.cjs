// Entry of bench/gateway.ts's client thread: in a worker the process's `--import tsx` installs
// tsx's require hook but not its ESM loader, so the thread starts from this CommonJS file
// (as model-runtime's runtime-worker-entry.cjs does).
require("./gateway-clients.ts");
