import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { homedir } from "node:os";
import path from "node:path";
import { HARDHAT_DEV_ACCOUNTS } from "@openledger/chain/dev";
import type { Hex, LocalAccount } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { addressesFromEnv, endpointsFromEnv, OpenLedger } from "../client.ts";
import { OpenLedgerError } from "../errors.ts";
import { readKeystore } from "./keystore.ts";

export interface GlobalOptions {
  json?: boolean;
  keystore?: string;
  devAccount?: string;
  timeout?: string;
}

type Env = Record<string, string | undefined>;

/** Where the CLI keeps sessions and API keys (mode 600): $OPENLEDGER_HOME, default ~/.openledger. */
export function homeDir(env: Env = process.env): string {
  return env.OPENLEDGER_HOME ?? path.join(homedir(), ".openledger");
}

interface Credentials {
  sessions: Record<string, { token: string; expiresAt: string }>;
  apiKeys: Record<string, string>;
}

async function loadCredentials(env: Env): Promise<Credentials> {
  try {
    return JSON.parse(await readFile(path.join(homeDir(env), "credentials.json"), "utf8")) as Credentials;
  } catch {
    return { sessions: {}, apiKeys: {} };
  }
}

async function saveCredentials(env: Env, c: Credentials): Promise<void> {
  const dir = homeDir(env);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const file = path.join(dir, "credentials.json");
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, `${JSON.stringify(c, null, 2)}\n`, { mode: 0o600 });
  await rename(tmp, file);
}

/** Reads a secret without echoing it (a TTY prompt), or fails with a code when there is no terminal. */
export async function promptSecret(message: string, code: string): Promise<string> {
  if (!process.stdin.isTTY)
    throw new OpenLedgerError(
      code,
      `${message}: no terminal to ask on; set it in the environment (see openledger --help)`,
    );
  const { default: password } = await import("@inquirer/password");
  return password({ message, mask: true });
}

/**
 * The signing key, in this order: --keystore / OPENLEDGER_KEYSTORE (password from
 * OPENLEDGER_KEYSTORE_PASSWORD or a prompt), OPENLEDGER_PRIVATE_KEY, --dev-account / OPENLEDGER_DEV_ACCOUNT
 * (a well-known Hardhat account: local dev chains only). Never printed.
 */
export async function loadAccount(
  opts: GlobalOptions,
  env: Env,
): Promise<{ account?: LocalAccount; dev: boolean }> {
  const keystore = opts.keystore ?? env.OPENLEDGER_KEYSTORE;
  if (keystore) {
    const password =
      env.OPENLEDGER_KEYSTORE_PASSWORD ??
      (await promptSecret(`Password of ${keystore}`, "KEY_PASSWORD_REQUIRED"));
    return { account: privateKeyToAccount(await readKeystore(keystore, password)), dev: false };
  }
  const raw = env.OPENLEDGER_PRIVATE_KEY;
  if (raw) {
    const key = (raw.startsWith("0x") ? raw : `0x${raw}`) as Hex;
    if (!/^0x[0-9a-fA-F]{64}$/.test(key))
      throw new OpenLedgerError("KEY_INVALID", "OPENLEDGER_PRIVATE_KEY is not a 32-byte hex key");
    return { account: privateKeyToAccount(key), dev: false };
  }
  const dev = opts.devAccount ?? env.OPENLEDGER_DEV_ACCOUNT;
  if (dev !== undefined) {
    const i = Number(dev);
    const acc = Number.isInteger(i) ? HARDHAT_DEV_ACCOUNTS[i] : undefined;
    if (!acc)
      throw new OpenLedgerError(
        "KEY_INVALID",
        `--dev-account takes a Hardhat account index 0-19, not ${dev}`,
      );
    return { account: privateKeyToAccount(acc.privateKey), dev: true };
  }
  return { dev: false };
}

export interface CliContext {
  ol: OpenLedger;
  env: Env;
  opts: GlobalOptions;
  /** Longest wait of a step, ms. */
  timeoutMs: number | undefined;
  /** A datanets session for the key (reused from the credentials file while valid). */
  ensureSession(): Promise<void>;
  /** An API key for the key: OPENLEDGER_API_KEY, the stored one, or a new one by signature. */
  ensureApiKey(): Promise<string>;
  rememberApiKey(key: string): Promise<void>;
}

export async function createContext(opts: GlobalOptions, env: Env = process.env): Promise<CliContext> {
  const ep = endpointsFromEnv(env);
  const addresses = await addressesFromEnv(ep.rpcUrl, env);
  const { account, dev } = await loadAccount(opts, env);
  if (dev && addresses.profile !== "dev")
    throw new OpenLedgerError(
      "NOT_DEV_CHAIN",
      "--dev-account uses public Hardhat keys: only on a local dev chain",
    );
  const ol = new OpenLedger({
    endpoints: {
      datanets: ep.datanets,
      attribution: ep.attribution,
      gateway: ep.gateway,
      settlement: ep.settlement,
      factory: ep.factory,
    },
    rpcUrl: ep.rpcUrl,
    addresses,
    ...(account ? { account } : {}),
    ...(env.SETTLEMENT_ADMIN_TOKEN ? { settlementAdminToken: env.SETTLEMENT_ADMIN_TOKEN } : {}),
  });
  const timeoutMs = opts.timeout ? Number(opts.timeout) * 1000 : undefined;
  if (timeoutMs !== undefined && !(timeoutMs > 0))
    throw new OpenLedgerError("USAGE", "--timeout takes a number of seconds");
  const slot = (url: string) => `${url}|${ol.address.toLowerCase()}`;
  const ctx: CliContext = {
    ol,
    env,
    opts,
    timeoutMs,
    async ensureSession() {
      const creds = await loadCredentials(env);
      const saved = creds.sessions[slot(ep.datanets)];
      if (saved && Date.parse(saved.expiresAt) > Date.now() + 60_000) {
        ol.sessionToken = saved.token;
        const ok = await ol.datanets.session().then(
          () => true,
          () => false,
        );
        if (ok) return;
      }
      const s = await ol.signIn();
      creds.sessions[slot(ep.datanets)] = { token: s.token, expiresAt: s.expiresAt };
      await saveCredentials(env, creds);
    },
    async ensureApiKey() {
      const known = env.OPENLEDGER_API_KEY ?? (await loadCredentials(env)).apiKeys[slot(ep.gateway)];
      if (known) {
        ol.apiKey = known;
        return known;
      }
      const key = await ol.createApiKey("openledger-cli");
      await ctx.rememberApiKey(key.key);
      return key.key;
    },
    async rememberApiKey(key: string) {
      const creds = await loadCredentials(env);
      creds.apiKeys[slot(ep.gateway)] = key;
      await saveCredentials(env, creds);
      ol.apiKey = key;
    },
  };
  return ctx;
}
