import { describe, expect, it } from 'vitest';
import { AuthFailureLimiter, roleAllows } from './auth.js';
import { digestsEqual, newApiToken, parseApiToken, sha256Hex } from './tokens.js';

describe('AuthFailureLimiter', () => {
  it('blocks an IP after the limit within a window and forgives after it', () => {
    let now = 1_000_000;
    const limiter = new AuthFailureLimiter(3, 60_000, () => now);
    for (let i = 0; i < 2; i++) limiter.fail('10.0.0.1');
    expect(limiter.retryAfter('10.0.0.1')).toBe(0);
    limiter.fail('10.0.0.1');
    expect(limiter.retryAfter('10.0.0.1')).toBe(60);
    expect(limiter.retryAfter('10.0.0.2')).toBe(0);
    now += 30_000;
    expect(limiter.retryAfter('10.0.0.1')).toBe(30);
    now += 30_000;
    expect(limiter.retryAfter('10.0.0.1')).toBe(0);
    limiter.fail('10.0.0.1');
    expect(limiter.retryAfter('10.0.0.1')).toBe(0);
  });
});

describe('tokens', () => {
  it('round-trips a new token and stores only the hash of its secret', () => {
    const { token, record } = newApiToken('viewer', 'grafana');
    const parsed = parseApiToken(token);
    expect(parsed?.id).toBe(record.id);
    expect(token).not.toContain(record.secretHash);
    expect(digestsEqual(sha256Hex(parsed!.secret), record.secretHash)).toBe(true);
    expect(digestsEqual(sha256Hex(`${parsed!.secret}x`), record.secretHash)).toBe(false);
  });

  it.each(['', 'nodot', '.secret', 'id.', 'UPPER.secret'])('refuses malformed %j', (t) => {
    expect(parseApiToken(t)).toBeUndefined();
  });

  it('ranks roles', () => {
    expect(roleAllows('admin', 'viewer')).toBe(true);
    expect(roleAllows('viewer', 'admin')).toBe(false);
  });
});
