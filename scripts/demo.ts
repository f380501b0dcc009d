// `npm run demo`: the whole OpenLedger story against a platform started with `npm start`
// (same environment variables: ports, CHAIN_RPC_URL, CHAIN_ADDRESSES_FILE, REDIS_URL,
// QUEUE_PREFIX, SETTLEMENT_ADMIN_TOKEN). Prints every step with its
// figures; exits 1 on any mismatch, 2 when the platform is not running.
// `--json`: the steps go to stderr and stdout gets one JSON object, the run's summary:
// {"checks": {"passed", "failed"}, "validators": [{"address", "pid"}], "quorum": {"numerator",
// "denominator", "need"}, "contributorEarningsWei": {"span", "influence", "loraInfluence"}, "fineTune":
// {"model", "steps", "trainedTokens", "seconds", "feeWei"}} (wei as decimal strings: what this run's
// journals credit contributors for adapters' answers, span attribution; for the small model's, influence
// attribution; for the fine-tuned adapter's answer that quotes no span, LoRA influence; the ModelFactory
// job of the language-model loop).
import { defaultAddressesPath, loadAddresses } from "@openledger/chain";
import { loadConfig, platformEnv, SERVICE_ENVS } from "@openledger/config";
import { PlatformNotRunningError, runStory, type StoryPlatform, type StoryResult } from "./lib/story.ts";
import { validatorUrls } from "./lib/validators.ts";

const json = process.argv.slice(2).includes("--json");
const out = json ? process.stderr : process.stdout;

/** The `--json` summary (one object on stdout). */
function summary(result: StoryResult | null, error?: string): Record<string, unknown> {
  const failed = result ? result.checks.filter((c) => !c.ok).length : 0;
  return {
    checks: { passed: result ? result.checks.length - failed : 0, failed: failed + (error ? 1 : 0) },
    validators: (result?.validators ?? []).map((v) => ({ address: v.address, pid: v.pid })),
    quorum: result?.quorum
      ? {
          numerator: result.quorum.numerator,
          denominator: result.quorum.denominator,
          need: result.quorum.need,
        }
      : null,
    contributorEarningsWei: {
      span: (result?.contributorEarningsWei.span ?? 0n).toString(),
      influence: (result?.contributorEarningsWei.influence ?? 0n).toString(),
      loraInfluence: (result?.contributorEarningsWei.loraInfluence ?? 0n).toString(),
    },
    ...(result?.fineTune
      ? {
          fineTune: {
            model: result.fineTune.model,
            steps: result.fineTune.steps,
            trainedTokens: result.fineTune.trainedTokens,
            seconds: result.fineTune.seconds,
            feeWei: result.fineTune.feeWei.toString(),
          },
        }
      : {}),
    ...(error ? { error } : {}),
  };
}

function urlOf(name: keyof typeof SERVICE_ENVS, portVar: string): string {
  const cfg = loadConfig(name, SERVICE_ENVS[name]) as Record<string, unknown>;
  const host = cfg.HOST === "0.0.0.0" ? "127.0.0.1" : String(cfg.HOST);
  return `http://${host}:${cfg[portVar] as number}`;
}

async function main(): Promise<number> {
  const settlement = loadConfig("settlement", SERVICE_ENVS.settlement);
  const datanets = loadConfig("datanets", SERVICE_ENVS.datanets);
  const addressesFile = settlement.CHAIN_ADDRESSES_FILE ?? defaultAddressesPath(31337);
  const addresses = await loadAddresses(addressesFile).catch(() => undefined);
  if (!addresses) {
    process.stderr.write(
      `The platform is not running: no contract addresses at ${addressesFile}.\nStart it with \`npm start\` (in another terminal), then run \`npm run demo\` again.\n`,
    );
    return 2;
  }
  const platform: StoryPlatform = {
    datanetsUrl: urlOf("datanets", "DATANETS_PORT"),
    attributionUrl: urlOf("attribution", "ATTRIBUTION_PORT"),
    validatorUrls: validatorUrls(
      urlOf("attribution", "ATTRIBUTION_PORT"),
      loadConfig("platform", platformEnv).PLATFORM_VALIDATOR_PORTS,
    ),
    gatewayUrl: urlOf("gateway", "GATEWAY_PORT"),
    settlementUrl: urlOf("settlement", "SETTLEMENT_PORT"),
    factoryUrl: urlOf("factory", "FACTORY_PORT"),
    rpcUrl: settlement.CHAIN_RPC_URL,
    addresses,
    settlementAdminToken: settlement.SETTLEMENT_ADMIN_TOKEN,
    epochWaitMs: (settlement.SETTLEMENT_EPOCH_INTERVAL_MS || 300_000) + 60_000,
    attributionDeadlineMs: settlement.SETTLEMENT_ATTRIBUTION_DEADLINE_MS,
    disputeWindowSeconds: (datanets as Record<string, unknown>).DATANETS_DISPUTE_WINDOW_SECONDS as number,
    sweepIntervalMs: (datanets as Record<string, unknown>).DATANETS_SWEEP_INTERVAL_MS as number,
  };
  out.write(
    `OpenLedger demo against ${platform.datanetsUrl}, ${platform.attributionUrl}, ${platform.gatewayUrl}, ${platform.settlementUrl}, ${platform.factoryUrl}; chain ${platform.rpcUrl}\n`,
  );
  try {
    const result = await runStory(platform, { log: (line) => out.write(`${line}\n`) });
    if (json) process.stdout.write(`${JSON.stringify(summary(result))}\n`);
    const failed = result.checks.filter((c) => !c.ok);
    if (result.skipped.length > 0) {
      out.write(
        `\nSkipped because of the platform's configuration:\n${result.skipped.map((n) => `  - ${n}`).join("\n")}\n`,
      );
    }
    if (failed.length > 0) {
      process.stderr.write(
        `\n${failed.length} MISMATCH(ES):\n${failed.map((f) => `  ✗ ${f.name}: ${f.detail}`).join("\n")}\n`,
      );
      return 1;
    }
    out.write("\nEverything adds up.\n");
    return 0;
  } catch (err) {
    if (err instanceof PlatformNotRunningError) {
      process.stderr.write(
        `The platform is not running (or not ready):\n${err.message}\nStart it with \`npm start\` (in another terminal), then run \`npm run demo\` again.\n`,
      );
      return 2;
    }
    process.stderr.write(`\nThe demo failed: ${(err as Error).stack ?? String(err)}\n`);
    if (json)
      process.stdout.write(`${JSON.stringify(summary(null, (err as Error).message ?? String(err)))}\n`);
    return 1;
  }
}

process.exit(await main());
