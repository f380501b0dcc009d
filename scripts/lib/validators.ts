// Where `npm start` runs its validator processes: the attribution service (validator #1, Hardhat #5) on
// ATTRIBUTION_PORT, and one more attribution process per further local validator (#6, #7) on
// ATTRIBUTION_PORT + 10, + 20. Each signs with exactly one key.

/** Validator processes `npm start` runs: the local deployment's three validators. */
export const LOCAL_VALIDATOR_PROCESSES = 3;
export const VALIDATOR_PORT_STEP = 10;

/** The port of validator process `i` (0 = the attribution service itself). */
export const validatorPort = (attributionPort: number, i: number) =>
  attributionPort + i * VALIDATOR_PORT_STEP;

/** The URLs of the validator processes, from the attribution service's URL. */
export function validatorUrls(attributionUrl: string): string[] {
  const u = new URL(attributionUrl);
  return Array.from({ length: LOCAL_VALIDATOR_PROCESSES }, (_, i) => {
    const v = new URL(u);
    v.port = String(validatorPort(Number(u.port), i));
    return v.origin;
  });
}
