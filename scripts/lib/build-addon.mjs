// The install step of the native addons (packages/suffix-native, packages/decode-native): compiles the
// addon in `dir` with node-gyp (npm's own copy) against the headers of the Node that runs the install.
// It never fails the install: without a compiler, Python or headers the platform runs the addon's
// fallback instead, so a failed build is one warning line (`what` + `fallback`), exit 0.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";

export function buildAddon(dir, what, fallback) {
  const warn = (why) => {
    console.warn(`${what} not built (${why}); ${fallback}`);
    process.exit(0);
  };

  // npm sets npm_config_node_gyp for lifecycle scripts; outside npm, look beside the running Node.
  const prefix = dirname(dirname(process.execPath));
  const nodeGyp = [
    process.env.npm_config_node_gyp,
    join(prefix, "lib", "node_modules", "npm", "node_modules", "node-gyp", "bin", "node-gyp.js"),
    join(prefix, "share", "nodejs", "npm", "node_modules", "node-gyp", "bin", "node-gyp.js"),
  ].find((p) => p && existsSync(p));
  if (!nodeGyp) warn("node-gyp not found");

  const args = [nodeGyp, "rebuild"];
  // Headers installed with Node (official tarballs and images, Debian's nodejs): build offline against them
  // unless npm was told a nodedir already.
  if (!process.env.npm_config_nodedir && existsSync(join(prefix, "include", "node", "node_api.h")))
    args.push(`--nodedir=${prefix}`);
  const res = spawnSync(process.execPath, args, {
    cwd: dir,
    stdio: ["ignore", "pipe", "pipe"],
    encoding: "utf8",
  });
  if (res.status !== 0) {
    // node-gyp ends with boilerplate (stack, versions, cwd): keep the lines that say what failed.
    const detail = `${res.stdout ?? ""}${res.stderr ?? ""}`
      .split("\n")
      .map((l) => l.trim())
      .filter(
        (l) =>
          /error|not found|no such file|missing/i.test(l) &&
          !/^gyp ERR! (stack|System|command|cwd|node)/.test(l),
      )
      .slice(-2)
      .join(" | ");
    warn(`node-gyp exited ${res.status ?? res.signal ?? res.error?.message}: ${detail.slice(0, 400)}`);
  }
}
