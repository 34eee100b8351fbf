import * as crypto from 'node:crypto';
import fc from 'fast-check';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { isSpillwayError } from '@spillway/common';
import type { ApiTokenRecord } from '../model.js';
import type { Store } from '../store/store.js';
import { RestAuth } from './auth.js';
import { newApiToken } from './tokens.js';

// Every comparison of a secret must go through timingSafeEqual; spy on it where auth imports it.
vi.mock('node:crypto', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:crypto')>();
  return { ...real, timingSafeEqual: vi.fn(real.timingSafeEqual) };
});

/**
 * REST tokens are compared in constant time. This is tested structurally, not by timing:
 * on a shared 2-core CI machine a timing test either has a bound so loose it cannot fail or
 * flakes. Instead, for any presented token, the test asserts that the decision was made by
 * crypto.timingSafeEqual on two 32-byte SHA-256 digests (fixed length, so neither the
 * length nor the first differing byte of the secret can show in the time), once per
 * bootstrap token whatever matched, and once more for a stored token whose id exists.
 * Replacing the comparison with `===` or a length-revealing compare fails it.
 */

const RUNS = Number(process.env.SPILLWAY_FUZZ_RUNS ?? 500);
const ADMIN = 'admin-token-0123456789abcdef';
const VIEWER = 'viewer-token-0123456789abcdef';
const stored = newApiToken('viewer', 'grafana');
const spy = vi.mocked(crypto.timingSafeEqual);

const store = {
  getApiToken: (id: string): Promise<ApiTokenRecord | undefined> =>
    Promise.resolve(id === stored.record.id ? stored.record : undefined),
} as unknown as Store;

function auth(): RestAuth {
  return new RestAuth({
    store,
    adminToken: ADMIN,
    viewerToken: VIEWER,
    failureLimit: Number.MAX_SAFE_INTEGER,
  });
}

/** Tokens near the real ones: same prefix, one character changed, cut, extended. */
const nearMiss = (real: string): fc.Arbitrary<string> =>
  fc.oneof(
    fc
      .tuple(fc.nat({ max: real.length - 1 }), fc.constantFrom(...'abcXYZ019-_.'))
      .map(([i, c]) => real.slice(0, i) + c + real.slice(i + 1)),
    fc.nat({ max: real.length - 1 }).map((n) => real.slice(0, n + 1)),
    fc.string({ minLength: 1, maxLength: 8 }).map((s) => real + s.replace(/\s/g, 'x')),
  );

const presented = fc.oneof(
  fc.constantFrom(ADMIN, VIEWER, stored.token),
  nearMiss(ADMIN),
  nearMiss(stored.token),
  fc.string({ minLength: 1, maxLength: 600 }).map((s) => s.replace(/\s/g, '_') || 'x'),
  fc
    .tuple(fc.constantFrom(stored.record.id, 'at-000000000000'), fc.string({ maxLength: 60 }))
    .map(([id, s]) => `${id}.${s.replace(/\s/g, '_') || 'x'}`),
);

afterEach(() => {
  spy.mockClear();
});

describe('REST token comparison', () => {
  it(`decides every bearer token with timingSafeEqual on 32-byte digests (${RUNS} cases)`, async () => {
    const a = auth();
    await fc.assert(
      fc.asyncProperty(presented, async (token) => {
        spy.mockClear();
        let role: string | undefined;
        try {
          role = (
            await a.authenticate({ ip: '10.0.0.1', authorization: `Bearer ${token}`, socket: {} })
          ).role;
        } catch (err) {
          expect(isSpillwayError(err, 'UNAUTHENTICATED'), String(err)).toBe(true);
        }
        const want =
          token === ADMIN
            ? 'admin'
            : token === VIEWER || token === stored.token
              ? 'viewer'
              : undefined;
        expect(role).toBe(want);
        // Both bootstrap tokens are always compared, so which one matched does not show.
        const calls = spy.mock.calls;
        expect(calls.length).toBeGreaterThanOrEqual(2);
        for (const [x, y] of calls) {
          expect((x as Buffer).length).toBe(32);
          expect((y as Buffer).length).toBe(32);
        }
        // A stored token's secret is compared when its id names a record and it parses.
        const secret = token.startsWith(`${stored.record.id}.`)
          ? token.slice(stored.record.id.length + 1)
          : '';
        if (secret.length > 0 && secret.length <= 512) expect(calls.length).toBe(3);
      }),
      { numRuns: RUNS },
    );
  });
});
