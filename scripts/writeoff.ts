// `npm run writeoff -- --consumer 0x… --reason "…"`: the operator's command for the write-off rule
// (settlement's POST /v1/writeoffs): a consumer's fees that the escrow has not covered for
// SETTLEMENT_WRITEOFF_AFTER_MS are written off, explicitly, with the reason, and logged. `--list`
// prints the write-offs so far. Reads SETTLEMENT_PORT / SETTLEMENT_ADMIN_TOKEN like the service
// (or --url for another host).
import { parseArgs } from "node:util";
import { loadConfig, SERVICE_ENVS } from "@openledger/config";

const { values } = parseArgs({
  options: {
    consumer: { type: "string" },
    reason: { type: "string" },
    url: { type: "string" },
    list: { type: "boolean", default: false },
  },
});
const config = loadConfig("settlement", SERVICE_ENVS.settlement);
const base = values.url ?? `http://127.0.0.1:${config.SETTLEMENT_PORT}`;

if (values.list) {
  const res = await fetch(`${base}/v1/writeoffs`);
  process.stdout.write(`${JSON.stringify(await res.json(), null, 2)}\n`);
  process.exit(res.ok ? 0 : 1);
}
if (!values.consumer || !values.reason) {
  process.stderr.write(
    'usage: npm run writeoff -- --consumer 0x… --reason "why it can never be collected" [--url …]\n',
  );
  process.exit(2);
}
if (!config.SETTLEMENT_ADMIN_TOKEN) {
  process.stderr.write("SETTLEMENT_ADMIN_TOKEN is not set: the settlement service's admin routes are off\n");
  process.exit(2);
}
const res = await fetch(`${base}/v1/writeoffs`, {
  method: "POST",
  headers: { "content-type": "application/json", authorization: `Bearer ${config.SETTLEMENT_ADMIN_TOKEN}` },
  body: JSON.stringify({ consumer: values.consumer, reason: values.reason }),
});
process.stdout.write(`${JSON.stringify(await res.json(), null, 2)}\n`);
process.exit(res.status === 201 ? 0 : 1);
