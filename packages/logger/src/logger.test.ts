import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { test } from "node:test";
import { componentLogger, createLogger } from "./index.ts";

function capture() {
  const lines: Record<string, unknown>[] = [];
  const destination = new Writable({
    write(chunk, _enc, done) {
      for (const line of String(chunk).split("\n").filter(Boolean)) lines.push(JSON.parse(line));
      done();
    },
  });
  return { lines, destination };
}

test("JSON lines carry service and component; secrets are redacted", async () => {
  const { lines, destination } = capture();
  const log = createLogger({ name: "gateway", level: "debug", destination });
  const child = componentLogger(log, "scheduler", { replica: 2 });
  child.info({ user: { apiKey: "sk-secret", id: 7 } }, "admitted");
  log.debug("hidden?");
  await new Promise((r) => setImmediate(r));
  assert.equal(lines.length, 2);
  const first = lines[0]!;
  assert.equal(first.service, "gateway");
  assert.equal(first.component, "scheduler");
  assert.equal(first.replica, 2);
  assert.equal(first.msg, "admitted");
  assert.deepEqual(first.user, { apiKey: "[redacted]", id: 7 });
  assert.equal(typeof first.time, "string");
});

test("level filters lines", async () => {
  const { lines, destination } = capture();
  const log = createLogger({ name: "x", level: "warn", destination });
  log.info("no");
  log.warn("yes");
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(
    lines.map((l) => l.msg),
    ["yes"],
  );
});

test("pretty: human lines with level, message and fields; JSON otherwise", async () => {
  let out = "";
  const destination = new Writable({
    write(chunk, _enc, done) {
      out += String(chunk);
      done();
    },
  });
  const log = createLogger({ name: "settlement", level: "info", pretty: true, destination });
  log.info({ epoch: 7 }, "epoch confirmed");
  await new Promise((r) => setImmediate(r));
  assert.match(out, /INFO.*epoch confirmed/);
  assert.match(out, /epoch: 7/);
  assert.throws(() => JSON.parse(out.split("\n")[0]!), "not JSON");
});
