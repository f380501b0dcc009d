import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import replyFrom from "@fastify/reply-from";
import fastifyStatic from "@fastify/static";
import { type ExplorerConfig, explorerEnv, parseConfig } from "@openledger/config";
import { AppError } from "@openledger/errors";
import { type BuildOptions, buildService, defineService } from "@openledger/service-kit";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { z } from "zod";

/** The services whose public APIs the explorer reads, and the variable naming each one's URL. */
export const UPSTREAMS = ["datanets", "attribution", "gateway", "settlement"] as const;
export type Upstream = (typeof UPSTREAMS)[number];

const upstreamUrl = (config: ExplorerConfig, name: Upstream): string =>
  ({
    datanets: config.EXPLORER_DATANETS_URL,
    attribution: config.EXPLORER_ATTRIBUTION_URL,
    gateway: config.EXPLORER_GATEWAY_URL,
    settlement: config.EXPLORER_SETTLEMENT_URL,
  })[name];

/**
 * The pages of the single-page app (apps/explorer/web): each answers index.html and the app's
 * router draws the page. Listed rather than a catch-all so an unknown path stays a JSON 404.
 */
export const PAGES = ["/", "/datanets/*", "/inferences/*", "/models/*", "/epochs/*", "/accounts/*"] as const;

/**
 * What the explorer's browser code may ask the services through this server: reads of their public
 * `/v1` APIs (GET), and the one read that is a POST (`/v1/attribute`: attribute a text, nothing stored).
 * Everything else (writes, /metrics, /docs) is refused here with 404, so the explorer cannot be
 * used as an open relay to the services' write APIs.
 */
const POST_READS: ReadonlySet<string> = new Set(["attribution /v1/attribute"]);

export const DEFAULT_STATIC_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "dist");

async function explorerRoutes(app: FastifyInstance, { config }: { config: ExplorerConfig }) {
  const staticDir = config.EXPLORER_STATIC_DIR ?? DEFAULT_STATIC_DIR;
  // Same origin for the pages and the APIs they read: no CORS on the services, one address to expose.
  await app.register(replyFrom, {
    undici: { headersTimeout: 30_000, bodyTimeout: 30_000 },
    disableRequestLogging: true,
  });

  const forward =
    (service: Upstream, rest: string, { withKey = false } = {}) =>
    (request: FastifyRequest, reply: FastifyReply) => {
      const query = request.url.includes("?") ? request.url.slice(request.url.indexOf("?")) : "";
      // `rest` arrives decoded: encode it again, segment by segment, so an encoded "?", "#" or "%"
      // stays part of the path it was sent in (and never becomes the upstream's query).
      const upstreamPath = rest.split("/").map(encodeURIComponent).join("/");
      return reply.from(`${upstreamUrl(config, service)}/v1/${upstreamPath}${query}`, {
        rewriteRequestHeaders: (_req, headers) => {
          // Only what a read needs: never the browser's cookies or credentials — except, on the POST
          // reads, the user's own API key (they cost CPU: the service wants a key, and the explorer
          // holds none of its own, so it cannot be used to reopen them).
          const out: Record<string, string> = { accept: "application/json" };
          if (headers["content-type"]) out["content-type"] = String(headers["content-type"]);
          if (withKey && headers.authorization) out.authorization = String(headers.authorization);
          return out;
        },
        onError: (r, { error }) => {
          request.log.warn({ service, err: error.message }, "upstream unavailable");
          return r
            .code(502)
            .type("application/json")
            .send({
              error: { code: "UPSTREAM_UNAVAILABLE", message: `the ${service} service did not answer` },
            });
        },
      });
    };

  const Params = z.object({ service: z.enum(UPSTREAMS), "*": z.string() });
  app.get(
    "/api/:service/v1/*",
    {
      schema: {
        tags: ["explorer"],
        summary: "Read a service's public API (GET /v1/...) through the explorer",
        description:
          "Forwards the request to the named service (EXPLORER_<SERVICE>_URL) without the caller's headers. " +
          "502 UPSTREAM_UNAVAILABLE when the service does not answer.",
        params: Params,
      },
    },
    async (request, reply) => {
      const { service, "*": rest } = request.params as z.infer<typeof Params>;
      return forward(service, rest)(request, reply);
    },
  );
  app.post(
    "/api/:service/v1/*",
    {
      schema: {
        tags: ["explorer"],
        summary:
          "The reads that are POSTs (attribution: POST /v1/attribute, with the caller's own API key); anything else is 404",
        params: Params,
      },
      bodyLimit: 256 * 1024,
    },
    async (request, reply) => {
      const { service, "*": rest } = request.params as z.infer<typeof Params>;
      if (!POST_READS.has(`${service} /v1/${rest}`))
        throw new AppError("NOT_FOUND", `the explorer does not forward POST /v1/${rest} to ${service}`);
      return forward(service, rest, { withKey: true })(request, reply);
    },
  );

  app.get(
    "/api/config",
    {
      schema: {
        tags: ["explorer"],
        summary: "What the web app needs to know: the chain (id, contract addresses) when reachable",
        response: {
          200: z.object({
            services: z.array(z.enum(UPSTREAMS)),
            chain: z
              .object({ chainId: z.number().int(), contracts: z.record(z.string(), z.string()) })
              .nullable()
              .describe("null while the chain or its addresses file cannot be read"),
          }),
        },
      },
    },
    async () => {
      const chain = await app.chain.get().catch(() => null);
      return {
        services: [...UPSTREAMS],
        chain: chain
          ? { chainId: chain.chainId, contracts: { ...chain.addresses.contracts } as Record<string, string> }
          : null,
      };
    },
  );

  // The built app: hashed assets under /assets (cached for long), index.html for every page.
  if (!existsSync(path.join(staticDir, "index.html"))) {
    app.log.warn(
      { staticDir },
      "the web app is not built (npm run build -w @openledger/explorer): pages answer 503",
    );
  }
  await app.register(fastifyStatic, { root: staticDir, serve: false });
  app.get("/assets/*", { schema: { hide: true } }, (request, reply) => {
    const file = (request.params as { "*": string })["*"];
    return reply.sendFile(path.join("assets", file), { maxAge: "365d", immutable: true });
  });
  const page = (_request: FastifyRequest, reply: FastifyReply) => {
    if (!existsSync(path.join(staticDir, "index.html")))
      throw new AppError("NOT_BUILT", "the explorer's web app is not built", { status: 503 });
    return reply.header("cache-control", "no-cache").sendFile("index.html", { cacheControl: false });
  };
  for (const url of PAGES) app.get(url, { schema: { hide: true } }, page);
}

/**
 * Readiness: the web app is built. The services it reads are not part of it: a page whose service is
 * down says so itself, and the other pages keep working.
 */
function builtCheck(_app: FastifyInstance, config: ExplorerConfig) {
  const index = path.join(config.EXPLORER_STATIC_DIR ?? DEFAULT_STATIC_DIR, "index.html");
  return [
    {
      name: "web app",
      whenDown: "unready" as const,
      check: async () => {
        if (!existsSync(index))
          throw new Error(`${index} is missing (npm run build -w @openledger/explorer)`);
      },
    },
  ];
}

/**
 * The explorer: the built web app (apps/explorer/web) and the read-only paths it uses to reach the
 * services' public APIs. It keeps no state: no Postgres, no Redis, no queue.
 */
export const explorerService = defineService({
  name: "explorer",
  title: "OpenLedger Explorer",
  description:
    "A web app for datanets, inference traces, models, epochs' reward flows and accounts, reading the services' public APIs.",
  infra: false,
  checks: builtCheck,
  routes: explorerRoutes,
});

export function buildExplorer(config: ExplorerConfig, options?: BuildOptions) {
  return buildService(explorerService, config, options);
}

export function explorerConfig(env: Record<string, string | undefined>): ExplorerConfig {
  return parseConfig("explorer", explorerEnv, env);
}
