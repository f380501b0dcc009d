import { createHash, timingSafeEqual } from "node:crypto";

/**
 * Whether an Authorization header carries exactly `Bearer <token>`, compared in constant
 * time (hashing both sides first so lengths leak nothing either).
 */
export function bearerMatches(header: string | undefined, token: string): boolean {
  if (!header || !token) return false;
  const given = createHash("sha256").update(header).digest();
  const expected = createHash("sha256").update(`Bearer ${token}`).digest();
  return timingSafeEqual(given, expected);
}
