// `npm start`: install if needed, make sure Postgres and Redis run, generate code, then
// hand over to the platform supervisor (migrate, start every service, print addresses).
import { spawn } from "node:child_process";
import path from "node:path";
import { ensureServices, installIfNeeded, prepare, ROOT } from "./setup.mjs";

installIfNeeded();
ensureServices();
prepare();

const child = spawn(process.execPath, ["--import", "tsx", path.join(ROOT, "scripts", "platform.ts")], {
  cwd: ROOT,
  // stdin is a pipe the supervisor watches: when this process dies, the services stop.
  stdio: ["pipe", "inherit", "inherit"],
});
for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => child.kill(signal));
child.on("exit", (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
