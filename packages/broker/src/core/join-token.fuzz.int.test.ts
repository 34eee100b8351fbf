import * as crypto from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  createCertificateAuthority,
  createCsr,
  generateKeyPair,
  isSpillwayError,
  silentLogger,
} from '@spillway/common';
import { openSqliteStore } from '../store/sqlite.js';
import type { Store } from '../store/store.js';
import { Core } from './broker-core.js';

vi.mock('node:crypto', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:crypto')>();
  return { ...real, timingSafeEqual: vi.fn(real.timingSafeEqual) };
});

/**
 * Join tokens: `<id>.<secret>`, id = 8 random bytes in hex (public, names the record),
 * secret = 32 random bytes (256 bits) in base64url, of which the store keeps only the
 * SHA-256. A token works once, expires, and a wrong secret for a real id is refused the
 * same way as any other bad token, compared in constant time, without using the token up.
 * SPILLWAY_FUZZ_RUNS sets the guesses per property (500 by default).
 */

const RUNS = Number(process.env.SPILLWAY_FUZZ_RUNS ?? 500);
const TOKEN_FORMAT = /^([0-9a-f]{16})\.([A-Za-z0-9_-]{43})$/;
const spy = vi.mocked(crypto.timingSafeEqual);

let dir: string;
let store: Store;
let core: Core;
let now = Date.parse('2026-01-01T00:00:00Z');
let csr: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'spillway-join-fuzz-'));
  const logger = silentLogger();
  store = await openSqliteStore({ path: join(dir, 'broker.db'), logger });
  core = new Core({
    store,
    ca: createCertificateAuthority(),
    logger,
    brokerId: 'join-fuzz',
    clock: () => new Date(now),
    joinTokenTtlMs: 15 * 60_000,
  });
  csr = createCsr(generateKeyPair().privateKeyPem, 'anything');
});

afterAll(async () => {
  await core?.stop();
  await store?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function refusal(token: string): Promise<{ code: string; message: string } | undefined> {
  try {
    await core.join(token, csr);
    return undefined;
  } catch (err) {
    if (!isSpillwayError(err)) throw err;
    return { code: err.code, message: err.message };
  }
}

describe('join tokens', () => {
  it('are 16 hex characters of id and 43 base64url characters (256 bits) of secret, 1,000 distinct', async () => {
    const ids = new Set<string>();
    const secrets = new Set<string>();
    for (let i = 0; i < 1_000; i++) {
      const { token, id } = await core.createJoinToken({ clusterId: `c${i}`, role: 'donor' });
      const m = TOKEN_FORMAT.exec(token);
      expect(m, token).not.toBeNull();
      expect(m![1]).toBe(id);
      // 43 base64url characters carry 258 bits; the last one only 2 of them: 32 bytes.
      expect(Buffer.from(m![2]!, 'base64url')).toHaveLength(32);
      ids.add(m![1]!);
      secrets.add(m![2]!);
    }
    expect(ids.size).toBe(1_000);
    expect(secrets.size).toBe(1_000);
    // Only the digest of a secret is stored.
    const stored = JSON.stringify(await store.listJoinTokens());
    for (const s of [...secrets].slice(0, 50)) expect(stored).not.toContain(s);
  });

  it(`refuses a wrong secret for a real id like any bad token, in constant time, without using it up (${RUNS} guesses)`, async () => {
    const { token, id } = await core.createJoinToken({ clusterId: 'guessed', role: 'donor' });
    const secret = token.slice(id.length + 1);
    const generic = await refusal('0000000000000000.' + 'A'.repeat(43));
    expect(generic?.code).toBe('TOKEN_INVALID');
    const guess = fc.oneof(
      fc
        .tuple(fc.nat({ max: 42 }), fc.constantFrom(...'AZaz09-_'))
        .map(([i, c]) => secret.slice(0, i) + c + secret.slice(i + 1)),
      fc
        .uint8Array({ minLength: 32, maxLength: 32 })
        .map((b) => Buffer.from(b).toString('base64url')),
      fc.string({ maxLength: 60 }),
    );
    await fc.assert(
      fc.asyncProperty(guess, async (g) => {
        fc.pre(g !== secret);
        spy.mockClear();
        const r = await refusal(`${id}.${g}`);
        // The same answer as for a token that never existed: nothing to probe.
        expect(r).toEqual(generic);
        for (const [a, b] of spy.mock.calls) {
          expect((a as Buffer).length).toBe(32);
          expect((b as Buffer).length).toBe(32);
        }
        // A well-formed guess reached the comparison, and only through timingSafeEqual.
        if (TOKEN_FORMAT.test(`${id}.${g}`)) expect(spy).toHaveBeenCalled();
      }),
      { numRuns: RUNS },
    );
    // After all those guesses the real token still works, once.
    const joined = await core.join(token, csr);
    expect(joined.clusterId).toBe('guessed');
    expect((await refusal(token))?.code).toBe('TOKEN_INVALID');
    expect(await refusal(token)).toEqual(generic);
  });

  it('expires at its TTL and not before', async () => {
    const { token } = await core.createJoinToken({ clusterId: 'late', role: 'origin' });
    const early = await core.createJoinToken({ clusterId: 'early', role: 'origin' });
    now += 15 * 60_000 - 1_000;
    expect((await core.join(early.token, csr)).clusterId).toBe('early');
    now += 1_000;
    expect((await refusal(token))?.code).toBe('TOKEN_INVALID');
  });
});
