// `npm run db:migrate`: creates the database if needed and applies pending migrations.
import { baseEnv, loadConfig } from "@openledger/config";
import { ensureDatabase } from "./client.ts";
import { migrate } from "./migrator.ts";

const command = process.argv[2] ?? "migrate";
if (command !== "migrate") {
  process.stderr.write(`unknown command "${command}" (expected: migrate)\n`);
  process.exit(64);
}
const { DATABASE_URL: databaseUrl } = loadConfig("db:migrate", baseEnv.pick({ DATABASE_URL: true }));
try {
  await ensureDatabase(databaseUrl);
  const result = await migrate({ databaseUrl, log: (m) => process.stdout.write(`${m}\n`) });
  process.stdout.write(
    `schema "${result.schema}": ${result.applied.length} applied, ${result.alreadyApplied.length} already applied\n`,
  );
} catch (err) {
  process.stderr.write(`migration failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
}
