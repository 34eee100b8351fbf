import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * REST API tokens look like `<id>.<secret>`. The id is public (it names the record in the
 * store); only the SHA-256 of the secret is ever stored.
 */
export const API_TOKEN_ID_PATTERN = /^[a-z0-9][-a-z0-9]{0,62}$/;

/** admin may change anything; viewer may only read (and simulate). */
export type ApiRole = 'admin' | 'viewer';

/**
 * A REST API token as the broker's store and api-tokens.json keep it. Lives here, not in
 * the broker, because `spillctl broker init` writes it too.
 */
export interface ApiTokenRecord {
  id: string;
  secretHash: string;
  role: ApiRole;
  description: string;
  createdAt: string;
}

export function sha256Hex(value: string): string {
  return createHash('sha256').update(value, 'utf8').digest('hex');
}

/** Compares two hex digests without leaking where they differ. */
export function digestsEqual(aHex: string, bHex: string): boolean {
  const a = Buffer.from(aHex, 'hex');
  const b = Buffer.from(bHex, 'hex');
  return a.length === b.length && a.length > 0 && timingSafeEqual(a, b);
}

export function parseApiToken(token: string): { id: string; secret: string } | undefined {
  const dot = token.indexOf('.');
  if (dot <= 0 || dot === token.length - 1) return undefined;
  const id = token.slice(0, dot);
  const secret = token.slice(dot + 1);
  if (!API_TOKEN_ID_PATTERN.test(id) || secret.length > 512) return undefined;
  return { id, secret };
}

/** A fresh token: the record to store and the token to show its owner once. */
export function newApiToken(
  role: ApiRole,
  description: string,
  now: Date = new Date(),
): { token: string; record: ApiTokenRecord } {
  const id = `at-${randomBytes(6).toString('hex')}`;
  const secret = randomBytes(32).toString('base64url');
  return {
    token: `${id}.${secret}`,
    record: { id, secretHash: sha256Hex(secret), role, description, createdAt: now.toISOString() },
  };
}
