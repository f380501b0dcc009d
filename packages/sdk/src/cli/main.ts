// `openledger`: every role's steps on the command line, on @openledger/sdk. Tables by default,
// `--json` for scripts; progress bars on stderr; keys from an encrypted keystore or the environment
// (never printed); exit codes in EXIT (output.ts).
import { readFile } from "node:fs/promises";
import { HARDHAT_DEV_ACCOUNTS } from "@openledger/chain/dev";
import { Command, CommanderError } from "commander";
import type { Address, Hex } from "viem";
import type { Datanet } from "../datanets.ts";
import { OpenLedgerError } from "../errors.ts";
import type { FineTuneJob } from "../factory.ts";
import type { CliContext, GlobalOptions } from "./context.ts";
import { EXIT, exitCodeOf, Output } from "./output.ts";

/*
 * What the commands need beyond commander (viem, the chain package's ABIs, the SDK's clients) is
 * loaded by a preAction hook when a command runs, not at start-up: `openledger --help` and a mistyped
 * command do not pay for it (see the start-up figures in packages/sdk/README.md).
 */
let L: typeof import("./lib.ts");
const loadLib = async () => {
  L ??= await import("./lib.ts");
};
/** OPEN with up to 6 decimals (exact wei in --json); only called by commands, after loadLib. */
const open = (wei: bigint | string) => L.open(wei);
const subjectOf = (id: bigint) => L.subjectOf(id);

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** "100" or "100 OPEN" or "1.5open" = OPEN; "250wei" = wei. */
export function parseAmount(text: string): bigint {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(open|wei)?\s*$/i.exec(text);
  if (!m) throw new OpenLedgerError("USAGE", `not an amount: ${text} (e.g. 100, 1.5OPEN, 250wei)`);
  if (m[2]?.toLowerCase() === "wei") {
    if (m[1]!.includes(".")) throw new OpenLedgerError("USAGE", `wei are whole: ${text}`);
    return BigInt(m[1]!);
  }
  return L.parseUnits(m[1]!, 18);
}

function parseAddress(text: string): Address {
  if (!L.isAddress(text)) throw new OpenLedgerError("USAGE", `not an address: ${text}`);
  return L.getAddress(text);
}

async function resolveDatanet(ctx: CliContext, idOrSlug: string): Promise<Datanet> {
  if (UUID.test(idOrSlug)) return ctx.ol.datanets.get(idOrSlug);
  const page = await ctx.ol.datanets.list({ q: idOrSlug, limit: 200 });
  const d = page.items.find((x) => x.slug === idOrSlug);
  if (!d) throw new OpenLedgerError("NOT_FOUND", `no datanet with id or slug ${idOrSlug}`, { status: 404 });
  return d;
}

function chainIdOf(d: Datanet): string {
  if (d.chainDatanetId === null)
    throw new OpenLedgerError(
      "DATANET_NOT_REGISTERED",
      `datanet ${d.slug} is not registered on-chain yet (its owner can retry: POST /v1/datanets/${d.id}/register)`,
      { status: 409 },
    );
  return d.chainDatanetId;
}

/** Builds the program. `run` parses and executes; exported for tests. */
export function buildProgram(out: { current: Output }): Command {
  const program = new Command("openledger")
    .description(
      "OpenLedger from the command line: datanets, models, inference, attribution, earnings, claims, validators.\n" +
        "Where: DATANETS_PORT/ATTRIBUTION_PORT/GATEWAY_PORT/SETTLEMENT_PORT/FACTORY_PORT (or OPENLEDGER_<SERVICE>_URL), CHAIN_RPC_URL,\n" +
        "CHAIN_ADDRESSES_FILE — the same environment as `npm start`.\n" +
        "Key (never printed): --keystore FILE / OPENLEDGER_KEYSTORE (+ OPENLEDGER_KEYSTORE_PASSWORD or a prompt),\n" +
        "OPENLEDGER_PRIVATE_KEY, or --dev-account N (a public Hardhat key; local dev chain only).\n" +
        "Exit codes: 0 ok, 1 refused, 2 usage, 3 unreachable, 4 timed out, 5 key problem.",
    )
    .option("--json", "print the result as JSON (amounts in wei, as strings)")
    .option("--keystore <file>", "encrypted key file (Web3 Secret Storage v3)")
    .option("--dev-account <index>", "use Hardhat dev account N (0-19) on a local dev chain")
    .option("--timeout <seconds>", "longest wait of a step")
    .showHelpAfterError()
    .exitOverride()
    .hook("preAction", loadLib);

  const globals = () => program.opts<GlobalOptions>();
  const ctx = () => L.createContext(globals());
  const o = () => out.current;
  const wait = (c: CliContext, ms: number) => ({ timeoutMs: c.timeoutMs ?? ms });

  // ---------------------------------------------------------------- status
  program
    .command("status")
    .description("what answers, the chain and the contracts, the key's balances")
    .action(async () => {
      const c = await ctx();
      const down = await c.ol.unreachable();
      const a = c.ol.chain.addresses;
      const me = c.ol.chain.account?.address;
      const balances = me
        ? {
            address: me,
            eth: await c.ol.chain.ethBalance(me),
            open: await c.ol.chain.openBalance(me),
            escrow: (await c.ol.chain.escrow(me)).balance,
          }
        : null;
      o().result(
        {
          endpoints: c.ol.endpoints,
          chainId: a.chainId,
          profile: a.profile,
          contracts: a.contracts,
          down,
          account: balances,
        },
        () => {
          o().fields([
            ...Object.entries(c.ol.endpoints).map(
              ([k, v]) =>
                [k, `${v} ${down.some((d) => d.startsWith(k)) ? "DOWN" : "ok"}`] as [string, unknown],
            ),
            ["chain", `${a.chainId} (${a.profile} profile)`],
            ...(balances
              ? ([
                  ["account", balances.address],
                  ["OPEN", open(balances.open)],
                  ["escrow", open(balances.escrow)],
                ] as [string, unknown][])
              : []),
          ]);
          for (const d of down) o().line(`DOWN: ${d}`);
        },
      );
      if (down.length) process.exitCode = EXIT.unreachable;
    });

  // ---------------------------------------------------------------- account (keystore)
  const account = program.command("account").description("your key: an encrypted keystore file");
  account
    .command("new")
    .description("create a new key in an encrypted keystore file (prints only its address)")
    .requiredOption("--out <file>", "keystore file to write (never overwritten)")
    .option("--light", "faster, weaker scrypt (N=2^12, like geth --lightkdf): for throwaway dev keys")
    .action(async (opts: { out: string; light?: boolean }) => {
      const password =
        process.env.OPENLEDGER_KEYSTORE_PASSWORD ??
        (await L.promptSecret("New keystore password", "KEY_PASSWORD_REQUIRED"));
      const address = await L.writeKeystore(opts.out, L.generatePrivateKey(), password, {
        light: opts.light ?? false,
      });
      o().result({ address, keystore: opts.out }, () => o().line(`${address} (key in ${opts.out})`));
    });
  account
    .command("import")
    .description("encrypt an existing private key (OPENLEDGER_PRIVATE_KEY or a prompt) into a keystore file")
    .requiredOption("--out <file>", "keystore file to write (never overwritten)")
    .option("--light", "faster, weaker scrypt (N=2^12)")
    .action(async (opts: { out: string; light?: boolean }) => {
      const raw =
        process.env.OPENLEDGER_PRIVATE_KEY ?? (await L.promptSecret("Private key (0x…)", "KEY_REQUIRED"));
      const key = (raw.startsWith("0x") ? raw : `0x${raw}`) as Hex;
      if (!/^0x[0-9a-fA-F]{64}$/.test(key))
        throw new OpenLedgerError("KEY_INVALID", "not a 32-byte hex private key");
      const password =
        process.env.OPENLEDGER_KEYSTORE_PASSWORD ??
        (await L.promptSecret("New keystore password", "KEY_PASSWORD_REQUIRED"));
      const address = await L.writeKeystore(opts.out, key, password, { light: opts.light ?? false });
      o().result({ address, keystore: opts.out }, () => o().line(`${address} (key in ${opts.out})`));
    });
  account
    .command("address")
    .description("the address of the configured key (a keystore's without its password)")
    .action(async () => {
      const g = globals();
      const file = g.keystore ?? process.env.OPENLEDGER_KEYSTORE;
      const address = file
        ? await L.keystoreAddress(file)
        : process.env.OPENLEDGER_PRIVATE_KEY
          ? L.privateKeyToAccount(
              (process.env.OPENLEDGER_PRIVATE_KEY.startsWith("0x")
                ? process.env.OPENLEDGER_PRIVATE_KEY
                : `0x${process.env.OPENLEDGER_PRIVATE_KEY}`) as Hex,
            ).address
          : g.devAccount !== undefined
            ? HARDHAT_DEV_ACCOUNTS[Number(g.devAccount)]?.address
            : undefined;
      if (!address)
        throw new OpenLedgerError(
          "KEY_REQUIRED",
          "no key configured (--keystore, OPENLEDGER_PRIVATE_KEY, --dev-account)",
        );
      o().result({ address }, () => o().line(address));
    });

  // ---------------------------------------------------------------- sign in, API keys
  program
    .command("signin")
    .description("Sign-In with Ethereum on the datanets service (the session is kept in $OPENLEDGER_HOME)")
    .action(async () => {
      const c = await ctx();
      await c.ensureSession();
      const s = await c.ol.datanets.session();
      o().result(s, () => o().line(`signed in as ${s.address}`));
    });
  program
    .command("keys")
    .description("gateway API keys")
    .command("create")
    .description(
      "create an API key for your account by its own EIP-712 signature (shown once, kept for chat)",
    )
    .option("--name <name>", "a label", "openledger-cli")
    .action(async (opts: { name: string }) => {
      const c = await ctx();
      const key = await c.ol.createApiKey(opts.name);
      await c.rememberApiKey(key.key);
      o().result(key, () =>
        o().fields([
          ["id", key.id],
          ["account", key.account],
          ["key", key.key],
          ["", "shown once; kept in $OPENLEDGER_HOME for openledger chat/adapter/model"],
        ]),
      );
    });

  // ---------------------------------------------------------------- datanets
  const datanet = program
    .command("datanet")
    .description("datanets: create, stake, contribute, publish, show");
  datanet
    .command("create")
    .description("create a datanet (you own it) and wait for its DatanetRegistry id")
    .requiredOption("--slug <slug>", "unique URL-safe name")
    .requiredOption("--name <name>", "display name")
    .option("--description <text>", "what belongs in it", "")
    .option("--type <type>", "kind of data: text, qa, classification", "text")
    .option("--license <license>", "SPDX id", "CC-BY-4.0")
    .option("--tags <tags>", "comma-separated tags")
    .option("--min-stake <amount>", "contributor stake required (OPEN)", "0")
    .action(
      async (opts: {
        slug: string;
        name: string;
        description: string;
        type: string;
        license: string;
        tags?: string;
        minStake: string;
      }) => {
        const c = await ctx();
        await c.ensureSession();
        const created = await c.ol.datanets.create({
          slug: opts.slug,
          name: opts.name,
          description: opts.description,
          type: opts.type,
          license: opts.license,
          tags: opts.tags ? opts.tags.split(",").map((t) => t.trim()) : [],
          minStakeWei: parseAmount(opts.minStake).toString(),
        });
        const d = await c.ol.datanets.waitRegistered(created.id, { retry: true, ...wait(c, 60_000) });
        o().result(d, () => printDatanet(o(), d));
      },
    );
  datanet
    .command("list")
    .description("datanets, newest first")
    .option("--q <text>", "search name, slug or tag")
    .option("--mine", "only yours")
    .action(async (opts: { q?: string; mine?: boolean }) => {
      const c = await ctx();
      const page = await c.ol.datanets.list({
        limit: 100,
        ...(opts.q ? { q: opts.q } : {}),
        ...(opts.mine ? { owner: c.ol.address } : {}),
      });
      o().result(page.items, () =>
        o().table(
          ["slug", "name", "type", "chain id", "min stake", "owner"],
          page.items.map((d) => [
            d.slug,
            d.name,
            d.type,
            d.chainDatanetId,
            open(d.minStakeWei),
            d.ownerAddress,
          ]),
        ),
      );
    });
  datanet
    .command("show <datanet>")
    .description("a datanet (id or slug), its versions and your stake on it")
    .action(async (idOrSlug: string) => {
      const c = await ctx();
      const d = await resolveDatanet(c, idOrSlug);
      const versions = (await c.ol.datanets.versions(d.id)).items;
      const me = c.ol.chain.account?.address;
      const stake =
        me && d.chainDatanetId !== null
          ? await c.ol.chain.position(me, "Contributor", subjectOf(BigInt(d.chainDatanetId)))
          : null;
      o().result({ datanet: d, versions, stake }, () => {
        printDatanet(o(), d);
        if (versions.length)
          o().table(
            ["version", "id", "rows", "contributors", "status", "merkle root"],
            versions.map((v) => [
              v.version,
              v.id,
              v.rowCount,
              v.contributorCount,
              v.status,
              `${v.merkleRoot.slice(0, 18)}…`,
            ]),
          );
        if (stake) o().line(`your stake: ${open(stake.active)} active, ${open(stake.unbonding)} unbonding`);
      });
    });
  datanet
    .command("stake <datanet> <amount>")
    .description("stake OPEN as a contributor on a datanet (approves Staking first when needed)")
    .action(async (idOrSlug: string, amount: string) => {
      const c = await ctx();
      const d = await resolveDatanet(c, idOrSlug);
      const sent = await c.ol.chain.stakeOnDatanet(chainIdOf(d), parseAmount(amount));
      const p = await c.ol.chain.position(c.ol.address, "Contributor", subjectOf(BigInt(chainIdOf(d))));
      o().result({ tx: sent.hash, datanet: d.id, activeWei: p.active }, () =>
        o().line(`staked on ${d.slug}: ${open(p.active)} active (tx ${sent.hash})`),
      );
    });
  datanet
    .command("unbond <datanet> <amount>")
    .description("start unbonding part of your stake on a datanet")
    .action(async (idOrSlug: string, amount: string) => {
      const c = await ctx();
      const d = await resolveDatanet(c, idOrSlug);
      const subject = subjectOf(BigInt(chainIdOf(d)));
      const sent = await c.ol.chain.unbond("Contributor", subject, parseAmount(amount));
      const p = await c.ol.chain.position(c.ol.address, "Contributor", subject);
      o().result({ tx: sent.hash, ...p }, () =>
        o().line(
          `unbonding ${open(p.unbonding)} until ${new Date(Number(p.unbondingEnd) * 1000).toISOString()} (chain clock)`,
        ),
      );
    });
  datanet
    .command("withdraw <datanet>")
    .description("withdraw stake whose unbonding period ended")
    .action(async (idOrSlug: string) => {
      const c = await ctx();
      const d = await resolveDatanet(c, idOrSlug);
      const before = await c.ol.chain.openBalance(c.ol.address);
      const sent = await c.ol.chain.withdrawStake("Contributor", subjectOf(BigInt(chainIdOf(d))));
      const got = (await c.ol.chain.openBalance(c.ol.address)) - before;
      o().result({ tx: sent.hash, withdrawnWei: got }, () => o().line(`withdrew ${open(got)}`));
    });
  datanet
    .command("contribute <datanet> <files...>")
    .description("contribute files (.txt .md .jsonl .csv), streamed, and wait for validation")
    .option("--no-wait", "do not wait for validation")
    .action(async (idOrSlug: string, files: string[], opts: { wait: boolean }) => {
      const c = await ctx();
      await c.ensureSession();
      const d = await resolveDatanet(c, idOrSlug);
      const results: {
        file: string;
        contribution: import("../datanets.ts").ContributionStatus["contribution"];
        slashingProposalIds?: string[];
        rejected: Awaited<ReturnType<typeof c.ol.datanets.allRows>>;
      }[] = [];
      for (const file of files) {
        const sub = await o().withProgress("upload", (onProgress) =>
          c.ol.datanets.contributeFile(d.id, file, { onProgress }),
        );
        if (!opts.wait) {
          results.push({ file, contribution: sub.contribution, rejected: [] });
          continue;
        }
        const v = await o().withProgress("validate", (onProgress) =>
          c.ol.datanets.waitValidated(sub.contribution.id, { onProgress, ...wait(c, 300_000) }),
        );
        const rejected = (await c.ol.datanets.allRows(sub.contribution.id)).filter(
          (r) => r.status === "rejected",
        );
        results.push({
          file,
          contribution: v.contribution,
          slashingProposalIds: v.slashingProposalIds,
          rejected,
        });
      }
      o().result(results, () => {
        o().table(
          ["file", "contribution", "rows", "accepted", "rejected", "status"],
          results.map((r) => [
            r.file,
            r.contribution.id,
            r.contribution.rowCount,
            r.contribution.acceptedCount,
            r.contribution.rejectedCount,
            r.contribution.status,
          ]),
        );
        const rejected = results.flatMap((r) => r.rejected);
        if (rejected.length)
          o().table(
            ["row", "reason", "text"],
            rejected.map((r) => [
              r.ordinal,
              r.rejectReason,
              r.text.length > 60 ? `${r.text.slice(0, 60)}…` : r.text,
            ]),
          );
        for (const r of results)
          for (const id of r.slashingProposalIds ?? []) o().line(`slashing proposal drawn: ${id}`);
      });
    });
  datanet
    .command("publish <datanet>")
    .description(
      "publish the next version (owner): merkle root on chain, then the attribution index is built",
    )
    .option("--no-wait", "do not wait for the index build")
    .action(async (idOrSlug: string, opts: { wait: boolean }) => {
      const c = await ctx();
      await c.ensureSession();
      const d = await resolveDatanet(c, idOrSlug);
      const v = await c.ol.datanets.publish(d.id);
      const registered = await c.ol.datanets.waitVersionRegistered(d.id, v.version, wait(c, 60_000));
      let index = null;
      if (opts.wait) {
        const first = await c.ol.attribution.index(v.id);
        // The influence model is built when the rows carry labels of two classes or more.
        const labelled = d.type === "classification" || first.artifacts.some((a) => a.kind === "influence");
        index = await o().withProgress("index", (onProgress) =>
          c.ol.attribution.waitIndexed(v.id, {
            kinds: labelled ? ["span", "influence"] : ["span"],
            onProgress,
            ...wait(c, 300_000),
          }),
        );
      }
      o().result({ version: registered, index }, () => {
        o().fields([
          ["version", registered.version],
          ["id", registered.id],
          ["rows", registered.rowCount],
          ["contributors", registered.contributorCount],
          ["merkle root", registered.merkleRoot],
          ["status", registered.status],
          ["chain tx", registered.chainTxHash],
        ]);
        if (index)
          o().table(
            ["artifact", "status", "rows", "tokens"],
            index.artifacts.map((a) => [a.kind, a.status, a.rowCount, a.tokenCount]),
          );
      });
    });
  datanet
    .command("approve <datanet> <builder>")
    .description(
      "(owner) sign an EIP-712 BuilderApproval so <builder> may register the datanet's models; prints it",
    )
    .option("--ttl <seconds>", "how long it is valid", "3600")
    .action(async (idOrSlug: string, builder: string, opts: { ttl: string }) => {
      const c = await ctx();
      const d = await resolveDatanet(c, idOrSlug);
      const approval = await c.ol.chain.signBuilderApproval(
        chainIdOf(d),
        parseAddress(builder),
        Number(opts.ttl),
      );
      o().result(approval, () => o().line(JSON.stringify(approval)));
    });

  // ---------------------------------------------------------------- models
  const adapter = program.command("adapter").description("LoRA adapters on the OpenLoRA gateway");
  adapter
    .command("upload <path>")
    .description(
      "register a PEFT adapter: a folder (adapter_config.json + adapter_model.safetensors) or a .tar/.tar.gz",
    )
    .option("--id <id>", "model id clients pass as `model`")
    .requiredOption("--price-in <amount>", "price per 1,000 input tokens (e.g. 2 = 2 OPEN, 5wei)")
    .requiredOption("--price-out <amount>", "price per 1,000 output tokens")
    .option("--version <id...>", "datanet version ids it was trained on")
    .action(
      async (path: string, opts: { id?: string; priceIn: string; priceOut: string; version?: string[] }) => {
        const c = await ctx();
        await c.ensureApiKey();
        const files = /\.(tar|tgz|tar\.gz)$/.test(path) ? { archive: path } : { dir: path };
        const a = await o().withProgress("upload", (onProgress) =>
          c.ol.gateway.uploadAdapter(
            {
              ...(opts.id ? { id: opts.id } : {}),
              files,
              priceInPer1kWei: parseAmount(opts.priceIn),
              priceOutPer1kWei: parseAmount(opts.priceOut),
              datanetVersionIds: opts.version ?? [],
            },
            { onProgress },
          ),
        );
        o().result(a, () =>
          o().fields([
            ["id", a.id],
            ["owner", a.owner],
            ["rank", a.rank],
            ["size", `${a.sizeBytes} bytes`],
            ["content", a.contentHash],
            ["price in / 1k", open(a.pricePer1kInputWei)],
            ["price out / 1k", open(a.pricePer1kOutputWei)],
            ["trained on", a.datanetVersionIds.join(", ") || "-"],
            [
              "on chain",
              `${a.chain.status}${a.chain.chainModelId ? ` (model #${a.chain.chainModelId})` : ""}`,
            ],
          ]),
        );
      },
    );
  adapter
    .command("list")
    .description("your active adapters")
    .action(async () => {
      const c = await ctx();
      await c.ensureApiKey();
      const list = await c.ol.gateway.adapters();
      o().result(list.data, () =>
        o().table(
          ["id", "price in / 1k", "price out / 1k", "content", "created"],
          list.data.map((a) => [
            a.id,
            open(a.pricePer1kInputWei),
            open(a.pricePer1kOutputWei),
            `${a.contentHash.slice(0, 12)}…`,
            a.createdAt,
          ]),
        ),
      );
    });
  const model = program
    .command("model")
    .description("small models (a labelled version's influence classifier)");
  model
    .command("register <version-id>")
    .description("register the influence model of a labelled datanet version as a small model")
    .requiredOption("--id <id>", "model id clients pass as `model`")
    .requiredOption("--price-in <amount>", "price per 1,000 input tokens")
    .requiredOption("--price-out <amount>", "price per 1,000 output tokens")
    .option(
      "--approval <json|file>",
      "the datanet owner's approval (openledger datanet approve), when you are not the owner",
    )
    .action(
      async (
        versionId: string,
        opts: { id: string; priceIn: string; priceOut: string; approval?: string },
      ) => {
        const c = await ctx();
        await c.ensureApiKey();
        let approval: { deadline: string; signature: string } | undefined;
        if (opts.approval) {
          const text = opts.approval.trim().startsWith("{")
            ? opts.approval
            : await readFile(opts.approval, "utf8");
          approval = JSON.parse(text) as { deadline: string; signature: string };
        }
        const m = await c.ol.gateway.registerSmallModelWhenReady(
          {
            id: opts.id,
            datanet_version_id: versionId,
            price_in_per_1k_wei: parseAmount(opts.priceIn).toString(),
            price_out_per_1k_wei: parseAmount(opts.priceOut).toString(),
            ...(approval ? { datanet_owner_approval: approval } : {}),
          },
          wait(c, 120_000),
        );
        o().result(m, () =>
          o().fields([
            ["id", m.id],
            ["owner", m.owner],
            ["classes", m.classes.join(", ")],
            ["version", m.datanetVersionId],
            ["price in / 1k", open(m.pricePer1kInputWei)],
            ["price out / 1k", open(m.pricePer1kOutputWei)],
            [
              "on chain",
              `${m.chain.status}${m.chain.chainModelId ? ` (model #${m.chain.chainModelId})` : ""}`,
            ],
          ]),
        );
      },
    );
  model
    .command("list")
    .description("your small models")
    .action(async () => {
      const c = await ctx();
      await c.ensureApiKey();
      const list = await c.ol.gateway.smallModels();
      o().result(list.data, () =>
        o().table(
          ["id", "version", "price in / 1k", "price out / 1k"],
          list.data.map((m) => [
            m.id,
            m.datanetVersionId,
            open(m.pricePer1kInputWei),
            open(m.pricePer1kOutputWei),
          ]),
        ),
      );
    });

  // ---------------------------------------------------------------- fine-tuning (ModelFactory)
  const finetune = program
    .command("finetune")
    .description("fine-tune a LoRA adapter on published datanet versions (ModelFactory, OpenAI's API shape)");
  finetune
    .command("create")
    .description(
      "start a fine-tuning job (its fee's upper bound is held in your escrow) and follow it with a progress bar",
    )
    .option("--datanet <datanet...>", "train on the newest published version of each (id or slug)")
    .option("--version-id <id...>", "train on these published datanet version ids")
    .option("--base <model>", "base model id (default: the one the gateway serves)")
    .option("--suffix <suffix>", "part of the adapter's name (ft-<base>-<suffix>-…)")
    .option("--epochs <n>", "passes over the data (n_epochs)")
    .option("--batch-size <n>", "windows per step")
    .option("--lr-multiplier <x>", "learning_rate_multiplier (x 2e-3)")
    .option("--rank <r>", "LoRA rank (at most the gateway's slot rank)")
    .option("--seq-len <n>", "tokens per training window")
    .option("--max-steps <n>", "stop after this many steps")
    .option("--seed <n>", "data order and initialisation seed (same seed, same adapter)")
    .option("--price-in <amount>", "the adapter's price per 1,000 input tokens (default: the factory's)")
    .option("--price-out <amount>", "the adapter's price per 1,000 output tokens")
    .option("--no-follow", "return once the job is created")
    .action(
      async (opts: {
        datanet?: string[];
        versionId?: string[];
        base?: string;
        suffix?: string;
        epochs?: string;
        batchSize?: string;
        lrMultiplier?: string;
        rank?: string;
        seqLen?: string;
        maxSteps?: string;
        seed?: string;
        priceIn?: string;
        priceOut?: string;
        follow: boolean;
      }) => {
        const c = await ctx();
        const versionIds = [...(opts.versionId ?? [])];
        for (const idOrSlug of opts.datanet ?? []) {
          const d = await resolveDatanet(c, idOrSlug);
          const published = (await c.ol.datanets.versions(d.id)).items
            .filter((v) => v.status !== "pending")
            .sort((a, b) => b.version - a.version)[0];
          if (!published)
            throw new OpenLedgerError(
              "DATANET_VERSION_NOT_PUBLISHED",
              `datanet ${d.slug} has no published version yet (openledger datanet publish ${d.slug})`,
              { status: 409 },
            );
          versionIds.push(published.id);
        }
        if (versionIds.length === 0)
          throw new OpenLedgerError("USAGE", "name what to train on: --datanet <slug> or --version-id <id>");
        await c.ensureApiKey();
        const hyperparameters = {
          ...(opts.epochs ? { n_epochs: intOption("--epochs", opts.epochs) } : {}),
          ...(opts.batchSize ? { batch_size: intOption("--batch-size", opts.batchSize) } : {}),
          ...(opts.lrMultiplier
            ? { learning_rate_multiplier: numberOption("--lr-multiplier", opts.lrMultiplier) }
            : {}),
          ...(opts.rank ? { lora_rank: intOption("--rank", opts.rank) } : {}),
          ...(opts.seqLen ? { seq_len: intOption("--seq-len", opts.seqLen) } : {}),
          ...(opts.maxSteps ? { max_steps: intOption("--max-steps", opts.maxSteps) } : {}),
        };
        const created = await c.ol.factory.create({
          model: opts.base ?? (await c.ol.gateway.status()).baseModel.id,
          training_file: versionIds.join(","),
          hyperparameters,
          ...(opts.suffix ? { suffix: opts.suffix } : {}),
          ...(opts.seed ? { seed: intOption("--seed", opts.seed) } : {}),
          ...(opts.priceIn ? { price_in_per_1k_wei: parseAmount(opts.priceIn).toString() } : {}),
          ...(opts.priceOut ? { price_out_per_1k_wei: parseAmount(opts.priceOut).toString() } : {}),
        });
        o().note(
          `job ${created.id} on ${created.datanet_version_ids.length} version(s); ${open(created.fee.escrow_hold_wei)} held in your escrow`,
        );
        const job = opts.follow ? await followJob(c, created.id) : created;
        o().result(job, () => printJob(o(), job));
      },
    );
  finetune
    .command("list")
    .description("your fine-tuning jobs, newest first")
    .option("--limit <n>", "how many", "20")
    .action(async (opts: { limit: string }) => {
      const c = await ctx();
      await c.ensureApiKey();
      const page = await c.ol.factory.list({ limit: intOption("--limit", opts.limit) });
      o().result(page.data, () =>
        o().table(
          ["job", "status", "steps", "loss", "model", "created"],
          page.data.map((j) => [
            j.id,
            j.status,
            `${j.progress.step}/${j.progress.total_steps ?? "?"}`,
            j.progress.loss?.toFixed(4),
            j.fine_tuned_model,
            new Date(j.created_at * 1000).toISOString(),
          ]),
        ),
      );
    });
  finetune
    .command("show <job>")
    .description("a job: status, progress, fee, its adapter, the fee's settlement; and its latest events")
    .option("--events <n>", "how many latest events", "10")
    .option("--wait-settled", "(a succeeded job) wait until its training fee is settled")
    .action(async (id: string, opts: { events: string; waitSettled?: boolean }) => {
      const c = await ctx();
      await c.ensureApiKey();
      const [job, events] = await Promise.all([
        c.ol.factory.get(id),
        c.ol.factory.events(id, { limit: intOption("--events", opts.events) }),
      ]);
      if (opts.waitSettled && job.status !== "succeeded")
        throw new OpenLedgerError("FINE_TUNE_NOT_SUCCEEDED", `${id} is ${job.status}: no fee to settle`, {
          status: 409,
        });
      const settlement = opts.waitSettled
        ? await c.ol.waitTrainingSettled(job, wait(c, 120_000))
        : ((await c.ol.trainingSettlement(job)) ?? null);
      o().result({ job, settlement, events: events.data }, () => {
        printJob(o(), job);
        if (settlement)
          o().line(
            `training fee ${open(settlement.feeWei)} settled (inference ${settlement.inferenceId}, epoch ${settlement.epochId ?? "not yet"})`,
          );
        o().table(
          ["time", "level", "event"],
          [...events.data]
            .reverse()
            .map((e) => [new Date(e.created_at * 1000).toISOString(), e.level, e.message]),
        );
      });
    });
  finetune
    .command("follow <job>")
    .description("follow a job to its end with a progress bar (step, loss, tokens/s, ETA)")
    .action(async (id: string) => {
      const c = await ctx();
      await c.ensureApiKey();
      const job = await followJob(c, id);
      o().result(job, () => printJob(o(), job));
    });
  finetune
    .command("cancel <job>")
    .description("cancel a job (its training stops and your escrow hold is released)")
    .action(async (id: string) => {
      const c = await ctx();
      await c.ensureApiKey();
      const job = await c.ol.factory.cancel(id);
      o().result(job, () => o().line(`${job.id}: ${job.status}`));
    });

  /** Follows a job with a bar of steps, labelled with its loss, tokens/s and the factory's ETA. */
  const followJob = (c: CliContext, id: string) =>
    o().withProgress("fine-tune", (onProgress) => {
      let detail = "";
      let status = "";
      return c.ol.factory.follow(id, {
        ...wait(c, 1_800_000),
        onJob: (j) => {
          const p = j.progress;
          const eta = j.estimated_finish === null ? null : j.estimated_finish - Math.floor(Date.now() / 1000);
          detail = [
            p.loss === null ? null : `loss ${p.loss.toFixed(4)}`,
            p.tokens_per_second === null ? null : `${Math.round(p.tokens_per_second)} tokens/s`,
            eta === null ? null : `ETA ${duration(Math.max(0, eta))}`,
          ]
            .filter(Boolean)
            .join(" | ");
          if (j.status !== status) {
            status = j.status;
            o().note(`${id}: ${status}`);
          }
        },
        onProgress: (p) => onProgress({ ...p, ...(detail ? { detail } : {}) }),
      });
    });

  // ---------------------------------------------------------------- escrow, inference
  const escrow = program.command("escrow").description("your inference escrow (InferenceEscrow)");
  escrow
    .command("deposit <amount>")
    .description("deposit OPEN that pays your inferences (approves the escrow first when needed)")
    .action(async (amount: string) => {
      const c = await ctx();
      const sent = await c.ol.chain.depositEscrow(parseAmount(amount));
      const e = await c.ol.chain.escrow(c.ol.address);
      o().result({ tx: sent.hash, ...e }, () =>
        o().line(`escrow balance ${open(e.balance)} (tx ${sent.hash})`),
      );
    });
  escrow
    .command("withdraw [amount]")
    .description(
      "request a withdrawal of <amount> (a delay follows); without an amount, complete a due request",
    )
    .action(async (amount: string | undefined) => {
      const c = await ctx();
      if (amount !== undefined) {
        const sent = await c.ol.chain.requestEscrowWithdrawal(parseAmount(amount));
        const e = await c.ol.chain.escrow(c.ol.address);
        o().result({ tx: sent.hash, ...e }, () =>
          o().line(
            `withdrawal of ${open(e.pendingWithdrawal)} requested; run \`openledger escrow withdraw\` after ${new Date(Number(e.withdrawableAt) * 1000).toISOString()} (chain clock)`,
          ),
        );
        return;
      }
      const before = await c.ol.chain.openBalance(c.ol.address);
      const sent = await c.ol.chain.withdrawEscrow();
      const got = (await c.ol.chain.openBalance(c.ol.address)) - before;
      o().result({ tx: sent.hash, withdrawnWei: got }, () =>
        o().line(`withdrew ${open(got)} from the escrow`),
      );
    });
  escrow
    .command("show")
    .description("balance, spendable and pending withdrawal")
    .action(async () => {
      const c = await ctx();
      const e = await c.ol.chain.escrow(c.ol.address);
      o().result(e, () =>
        o().fields([
          ["balance", open(e.balance)],
          ["spendable", open(e.spendable)],
          ["pending withdrawal", open(e.pendingWithdrawal)],
        ]),
      );
    });
  program
    .command("chat <model> <message...>")
    .description(
      "ask a model (adapter, small model or the base model); prints the answer and its inference id",
    )
    .option("--max-tokens <n>", "longest answer", "64")
    .option("--temperature <t>", "sampling temperature", "0")
    .option("--stream", "print the answer as it is generated")
    .action(
      async (
        modelId: string,
        words: string[],
        opts: { maxTokens: string; temperature: string; stream?: boolean },
      ) => {
        const c = await ctx();
        await c.ensureApiKey();
        const request = {
          model: modelId,
          messages: [{ role: "user" as const, content: words.join(" ") }],
          max_tokens: Number(opts.maxTokens),
          temperature: Number(opts.temperature),
        };
        if (opts.stream && !globals().json) {
          const r = await c.ol.gateway.chatStream(request, (t) => process.stdout.write(t));
          process.stdout.write(`\n`);
          o().note(
            `inference ${r.inferenceId} (${r.data.usage?.prompt_tokens ?? "?"} + ${r.data.usage?.completion_tokens ?? "?"} tokens)`,
          );
          return;
        }
        const r = await c.ol.gateway.chat(request);
        const text = r.data.choices[0]?.message.content ?? "";
        o().result({ inferenceId: r.inferenceId, text, usage: r.data.usage }, () => {
          o().line(text);
          o().note(
            `inference ${r.inferenceId} (${r.data.usage?.prompt_tokens} + ${r.data.usage?.completion_tokens} tokens)`,
          );
        });
      },
    );

  // ---------------------------------------------------------------- attribution, earnings, claims
  program
    .command("attribution")
    .description("Proof of Attribution")
    .command("show <inference>")
    .description("who the validators credited for an inference, and how its fee was split")
    .option("--wait", "wait for the validators' quorum and the settlement")
    .action(async (inferenceId: string, opts: { wait?: boolean }) => {
      const c = await ctx();
      const quorum = c.ol.chain.addresses.params.quorum;
      const att = opts.wait
        ? await c.ol.attribution.waitAttributed(inferenceId, { quorum, ...wait(c, 120_000) })
        : await c.ol.attribution.inference(inferenceId);
      const settlement = opts.wait
        ? await c.ol.settlement.waitSettled(inferenceId, wait(c, 120_000))
        : await c.ol.settlement.inference(inferenceId).catch((err: unknown) => {
            if (err instanceof OpenLedgerError && err.status === 404) return null;
            throw err;
          });
      const winner = att.results.find((r) => r.resultHash === att.consensusHash);
      o().result({ attribution: att, settlement }, () => {
        o().fields([
          ["inference", att.inferenceId],
          ["model", att.modelId],
          [
            "validators agree",
            `${att.agree} (${att.consensusCount} signed ${att.consensusHash?.slice(0, 18) ?? "-"}…)`,
          ],
          ["method", winner?.method],
        ]);
        o().table(
          ["contributor", "weight (ppm)"],
          (winner?.weights ?? []).map((w) => [w.contributorAddress, w.ppm]),
        );
        if (settlement) {
          o().line(`fee ${open(settlement.feeWei)} (epoch ${settlement.epochId ?? "not yet"})`);
          o().table(
            ["account", "amount"],
            settlement.entries.map((e) => [e.account, `${e.amountWei} wei`]),
          );
        }
      });
    });
  program
    .command("earnings [address]")
    .description("what an address earned, by role (ledger), and what it can claim now")
    .action(async (address: string | undefined) => {
      const c = await ctx();
      const who = address ? parseAddress(address) : c.ol.address;
      const [e, claim] = await Promise.all([c.ol.settlement.earnings(who), c.ol.settlement.claim(who)]);
      o().result({ ...e, claim }, () => {
        o().table(
          ["role", "ledger balance"],
          e.accounts.map((a) => [a.role, open(a.balanceWei)]),
        );
        o().fields([
          ["earned", open(e.totalWei)],
          [
            "in epoch",
            claim.epoch === null ? "-" : `${claim.epoch}${claim.active ? "" : " (not active yet)"}`,
          ],
          ["claimed", open(claim.claimed)],
          ["claimable", open(claim.claimable)],
        ]);
      });
    });
  program
    .command("claim")
    .description("claim your earnings from RewardDistributor with the settlement service's proof")
    .option("--wait", "wait until the epoch holding your earnings is active and claimable > 0")
    .action(async (opts: { wait?: boolean }) => {
      const c = await ctx();
      const me = c.ol.address;
      let info = await c.ol.settlement.claim(me);
      if (opts.wait) {
        const { poll } = await import("../http.ts");
        info = await poll(
          "a claimable epoch",
          async () => {
            const i = await c.ol.settlement.claim(me);
            return i.active && BigInt(i.claimable) > 0n ? i : undefined;
          },
          { timeoutMs: c.timeoutMs ?? 400_000, intervalMs: 1000 },
        );
      }
      const r = await c.ol.chain.claim(info);
      o().result(
        {
          epoch: info.epoch,
          cumulativeWei: info.cumulativeAmount,
          claimedWei: r.amountWei,
          tx: r.sent?.hash ?? null,
        },
        () =>
          o().line(
            r.sent
              ? `claimed ${open(r.amountWei)} (epoch ${info.epoch}, cumulative ${open(info.cumulativeAmount)}, tx ${r.sent.hash})`
              : "nothing to claim",
          ),
      );
    });

  // ---------------------------------------------------------------- epochs (operators)
  const epoch = program.command("epoch").description("settlement epochs");
  epoch
    .command("close")
    .description("(operator) close the current epoch now and post it on chain (SETTLEMENT_ADMIN_TOKEN)")
    .option("--wait-for <inference...>", "repeat until these inferences are in a confirmed epoch")
    .action(async (opts: { waitFor?: string[] }) => {
      const c = await ctx();
      const e = opts.waitFor?.length
        ? await c.ol.settlement.waitEpochConfirmed(opts.waitFor, wait(c, 400_000))
        : (await c.ol.settlement.closeEpoch()).epoch;
      o().result(e, () => (e ? printEpoch(o(), e) : o().line("nothing to close")));
    });
  epoch
    .command("show [id]")
    .description("an epoch (default: the newest)")
    .action(async (id: string | undefined) => {
      const c = await ctx();
      const e = id ? await c.ol.settlement.epoch(Number(id)) : (await c.ol.settlement.epochs()).epochs[0];
      o().result(e ?? null, () => (e ? printEpoch(o(), e) : o().line("no epoch yet")));
    });

  // ---------------------------------------------------------------- validators
  const validator = program.command("validator").description("attribution validators");
  validator
    .command("register")
    .description(
      "stake the Validator minimum; joining the set is governance's call (--dev-admin on a local chain)",
    )
    .option("--stake <amount>", "stake this much instead of the minimum")
    .option("--dev-admin", "local dev chain: also add yourself to the set with the dev admin (Hardhat #0)")
    .action(async (opts: { stake?: string; devAdmin?: boolean }) => {
      const c = await ctx();
      const r = await c.ol.chain.registerValidator(opts.stake ? { stakeWei: parseAmount(opts.stake) } : {});
      let status = r.status;
      if (!status.registered && opts.devAdmin) {
        await c.ol.chain.addValidatorAsDevAdmin(
          L.privateKeyToAccount(HARDHAT_DEV_ACCOUNTS[0]!.privateKey),
          c.ol.address,
        );
        status = await c.ol.chain.validatorStatus(c.ol.address);
      }
      const call = c.ol.chain.addValidatorCall(c.ol.address);
      o().result(
        { stakeTx: r.staked?.hash ?? null, status, governanceCall: status.registered ? null : call },
        () => {
          printValidator(o(), status);
          if (!status.registered)
            o().line(
              `To join the validator set, governance executes RewardDistributor(${call.address}).addValidator(${c.ol.address}) through the timelock.`,
            );
        },
      );
    });
  validator
    .command("status [address]")
    .description("registered? active (staked)? the active set and the signatures a root needs")
    .action(async (address: string | undefined) => {
      const c = await ctx();
      const s = await c.ol.chain.validatorStatus(address ? parseAddress(address) : c.ol.address);
      o().result(s, () => printValidator(o(), s));
    });
  validator
    .command("unbond <amount>")
    .description("start unbonding validator stake (below the minimum you leave the active set)")
    .action(async (amount: string) => {
      const c = await ctx();
      const sent = await c.ol.chain.unbond("Validator", L.ZERO_SUBJECT, parseAmount(amount));
      o().result({ tx: sent.hash }, () => o().line(`unbonding started (tx ${sent.hash})`));
    });

  // ---------------------------------------------------------------- dev
  program
    .command("dev")
    .description("local dev chain helpers")
    .command("faucet [address]")
    .description("local dev chain: gas and OPEN for an address (default: your key's) from Hardhat account #0")
    .option("--open <amount>", "OPEN to send", "10000")
    .action(async (address: string | undefined, opts: { open: string }) => {
      const c = await ctx();
      const to = address ? parseAddress(address) : c.ol.address;
      const funder = L.privateKeyToAccount(HARDHAT_DEV_ACCOUNTS[0]!.privateKey);
      const sent = await c.ol.chain.faucet(funder, to, { openWei: parseAmount(opts.open) });
      const [eth, openBal] = await Promise.all([c.ol.chain.ethBalance(to), c.ol.chain.openBalance(to)]);
      o().result({ address: to, tx: sent?.hash ?? null, ethWei: eth, openWei: openBal }, () =>
        o().line(`${to}: ${open(openBal)}, ${Number(eth / 10n ** 15n) / 1000} ETH for gas`),
      );
    });

  program.commands
    .find((c) => c.name() === "dev")!
    .command("random-adapter")
    .description("write a random PEFT LoRA adapter shaped for the gateway's base model (to try uploads)")
    .requiredOption("--out <dir>", "folder to write adapter_config.json + adapter_model.safetensors into")
    .option("--rank <r>", "LoRA rank", "4")
    .option("--seed <seed>", "deterministic seed", "openledger")
    .action(async (opts: { out: string; rank: string; seed: string }) => {
      const c = await ctx();
      const status = await c.ol.gateway.status();
      const { generateRandomPeft } = await import("@openledger/model-runtime");
      const peft = generateRandomPeft(status.baseModel.config as Parameters<typeof generateRandomPeft>[0], {
        rank: Number(opts.rank),
        seed: opts.seed,
      });
      const { mkdir, writeFile } = await import("node:fs/promises");
      await mkdir(opts.out, { recursive: true });
      await writeFile(`${opts.out}/adapter_config.json`, JSON.stringify(peft.adapterConfig, null, 2));
      await writeFile(`${opts.out}/adapter_model.safetensors`, peft.safetensors);
      o().result({ dir: opts.out, baseModel: status.baseModel.id, rank: Number(opts.rank) }, () =>
        o().line(`adapter for ${status.baseModel.id} (rank ${opts.rank}) in ${opts.out}`),
      );
    });

  return program;
}

function intOption(name: string, text: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 0) throw new OpenLedgerError("USAGE", `${name} takes a whole number`);
  return n;
}

function numberOption(name: string, text: string): number {
  const n = Number(text);
  if (!Number.isFinite(n) || n <= 0) throw new OpenLedgerError("USAGE", `${name} takes a positive number`);
  return n;
}

/** 95 -> "1m35s". */
function duration(seconds: number): string {
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  return h ? `${h}h${String(m).padStart(2, "0")}m` : m ? `${m}m${String(s).padStart(2, "0")}s` : `${s}s`;
}

function printJob(o: Output, j: FineTuneJob): void {
  o.fields([
    ["job", j.id],
    ["status", j.error ? `${j.status} (${j.error.code}: ${j.error.message})` : j.status],
    ["base", j.model],
    ["trained on", j.datanet_version_ids.join(", ")],
    ["steps", `${j.progress.step}/${j.progress.total_steps ?? "?"}`],
    ["loss", j.progress.loss?.toFixed(4)],
    ["trained tokens", j.progress.trained_tokens],
    ["escrow hold", open(j.fee.escrow_hold_wei)],
    ["fee", j.fee.fee_wei === null ? "-" : open(j.fee.fee_wei)],
    ["model", j.fine_tuned_model ?? "-"],
  ]);
}

function printDatanet(o: Output, d: Datanet): void {
  o.fields([
    ["id", d.id],
    ["slug", d.slug],
    ["name", d.name],
    ["type", d.type],
    ["license", d.license],
    ["owner", d.ownerAddress],
    ["min stake", open(d.minStakeWei)],
    [
      "on chain",
      d.chainDatanetId === null
        ? `not yet (${d.registration?.status ?? "-"})`
        : `datanet #${d.chainDatanetId}`,
    ],
  ]);
}

function printEpoch(
  o: Output,
  e: {
    id: number;
    status: string;
    totalWei: string;
    recipientCount: number;
    settlementCount: number;
    merkleRoot: string | null;
    postTxHash: string | null;
  },
): void {
  o.fields([
    ["epoch", e.id],
    ["status", e.status],
    ["settlements", e.settlementCount],
    ["recipients", e.recipientCount],
    ["total", open(e.totalWei)],
    ["root", e.merkleRoot],
    ["tx", e.postTxHash],
  ]);
}

function printValidator(
  o: Output,
  s: Awaited<ReturnType<import("../chain.ts").ChainSteps["validatorStatus"]>>,
): void {
  o.fields([
    ["address", s.address],
    ["in the set", s.registered],
    ["active (staked)", s.active],
    ["stake", `${open(s.stake.active)} (minimum ${open(s.minStakeWei)})`],
    ["unbonding", open(s.stake.unbonding)],
    ["active validators", s.activeValidators.length],
    ["signatures per root", s.requiredSignatures],
  ]);
}

/** Runs the CLI; returns the exit code. */
export async function run(argv: string[]): Promise<number> {
  const out = { current: new Output(argv.includes("--json")) };
  const program = buildProgram(out);
  try {
    await program.parseAsync(argv, { from: "user" });
    return typeof process.exitCode === "number" ? process.exitCode : EXIT.ok;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === "commander.helpDisplayed" || err.code === "commander.version" || err.exitCode === 0)
        return EXIT.ok;
      return EXIT.usage;
    }
    out.current.error(err);
    return exitCodeOf(err);
  }
}
