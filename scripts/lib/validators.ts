// Where `npm start` runs its validator processes: the attribution service (validator #1, Hardhat #5) on
// ATTRIBUTION_PORT, and one more attribution process per further local validator (#6, #7) on the ports
// of PLATFORM_VALIDATOR_PORTS, by default ATTRIBUTION_PORT + 10, + 20. Each signs with exactly one key.

/** Validator processes `npm start` runs: the local deployment's three validators. */
export const LOCAL_VALIDATOR_PROCESSES = 3;
export const VALIDATOR_PORT_STEP = 10;

/**
 * The port of validator process `i` (0 = the attribution service itself): the i-th of `configured`
 * (PLATFORM_VALIDATOR_PORTS, the further processes' ports) when given, else attributionPort + 10 i.
 */
export function validatorPort(
  attributionPort: number,
  i: number,
  configured: readonly number[] = [],
): number {
  if (i === 0) return attributionPort;
  return configured[i - 1] ?? attributionPort + i * VALIDATOR_PORT_STEP;
}

/** The URLs of the validator processes, from the attribution service's URL (and PLATFORM_VALIDATOR_PORTS). */
export function validatorUrls(attributionUrl: string, configured: readonly number[] = []): string[] {
  const u = new URL(attributionUrl);
  return Array.from({ length: LOCAL_VALIDATOR_PROCESSES }, (_, i) => {
    const v = new URL(u);
    v.port = String(validatorPort(Number(u.port), i, configured));
    return v.origin;
  });
}
