import { isIP } from "node:net";
import { type BaseConfig, ConfigError, EXPOSED_REQUIRES, type ServiceName } from "@openledger/config";

/**
 * Whether binding `host` keeps the service on this machine: `localhost`, 127.0.0.0/8, `::1` (and
 * 127.x written as an IPv4-mapped IPv6 address). Anything else — 0.0.0.0, `::`, a LAN address, a
 * host name that may resolve to one — is reachable from elsewhere.
 */
export function isLoopbackHost(host: string): boolean {
  const h = host
    .trim()
    .toLowerCase()
    .replace(/^\[|\]$/g, "");
  if (h === "localhost") return true;
  const v4 = h.startsWith("::ffff:") ? h.slice("::ffff:".length) : h;
  if (isIP(v4) === 4) return v4.startsWith("127.");
  if (isIP(h) === 6) return h === "::1" || /^(0{1,4}:){7}0{0,3}1$/.test(h);
  return false;
}

/**
 * The one start-up check of how a service is exposed (every service runs it, in `buildService`): on a
 * HOST that is not loopback, every variable `EXPOSED_REQUIRES` names for the service must be set, or
 * it refuses to start (ConfigError: `runService` prints it and exits 78) — an admin route left open, or
 * a service that can only answer 401 to its own platform, is never what an operator meant. On loopback
 * (`npm start`, tests) nothing is required. Returns warnings worth logging for an exposed service.
 */
export function assertSafeExposure(service: ServiceName, config: BaseConfig): string[] {
  if (isLoopbackHost(config.HOST)) return [];
  const values = config as unknown as Record<string, unknown>;
  const missing = EXPOSED_REQUIRES[service].filter(
    (r) => values[r.variable] === undefined || values[r.variable] === "",
  );
  if (missing.length > 0) {
    throw new ConfigError(
      service,
      missing.map((r) => ({
        variable: r.variable,
        reason:
          `required when HOST=${config.HOST} (not loopback: reachable from other machines); it protects ` +
          `${r.guards}. Set it (e.g. \`openssl rand -hex 32\`), or bind HOST=127.0.0.1`,
      })),
    );
  }
  return config.CHAIN_PROFILE === "dev"
    ? [
        `HOST=${config.HOST} is not loopback and CHAIN_PROFILE=dev: keys left unset are the local chain's ` +
          "well-known Hardhat accounts — fine behind a private network (docker-compose publishes on 127.0.0.1), " +
          "never on a public chain",
      ]
    : [];
}
