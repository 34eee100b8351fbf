import { describe, expect, it } from 'vitest';
import { ErrorCode, SpillwayError } from '@spillway/common';
import { EXIT, UsageError, errorLine, exitCodeOf } from './errors.js';
import { errorFromBody } from './rest.js';

describe('exit codes and error lines', () => {
  it.each([
    [new UsageError('bad'), EXIT.USAGE],
    [
      new SpillwayError(ErrorCode.INVALID_CONFIG, 'no kubeconfig', { field: '--kubeconfig' }),
      EXIT.USAGE,
    ],
    [
      new SpillwayError(ErrorCode.INVALID_CONFIG, 'broken pki', { field: '--pki-dir' }),
      EXIT.FAILED,
    ],
    [new SpillwayError(ErrorCode.NOT_FOUND, 'no such cluster'), EXIT.FAILED],
    [new SpillwayError(ErrorCode.TIMEOUT, 'too slow'), EXIT.FAILED],
    [new SpillwayError(ErrorCode.CANCELLED, 'cancelled'), EXIT.INTERRUPTED],
    [new Error('boom'), EXIT.FAILED],
  ])('%s -> %i', (err, code) => {
    expect(exitCodeOf(err)).toBe(code);
  });

  it('is one line with the stable code when it helps', () => {
    expect(errorLine(new SpillwayError(ErrorCode.NOT_FOUND, 'cluster x is not known'))).toBe(
      'cluster x is not known (NOT_FOUND)',
    );
    expect(errorLine(new UsageError('two\nlines'))).toBe('two; lines');
    expect(errorLine('plain')).toBe('plain');
  });

  it("maps the broker's error body, and says what to do about a bad token", () => {
    const e = errorFromBody(
      404,
      { error: { code: 'NOT_FOUND', message: 'id: cluster x is not known', field: 'id' } },
      'GET /x',
    );
    expect(e.code).toBe('NOT_FOUND');
    expect(e.field).toBe('id');
    const auth = errorFromBody(
      401,
      { error: { code: 'UNAUTHENTICATED', message: 'the bearer token is not valid' } },
      'GET /x',
    );
    expect(auth.message).toMatch(/--token or SPILLWAY_TOKEN/);
    const odd = errorFromBody(502, '<html>bad gateway</html>', 'GET /api/v1/clusters');
    expect(odd.code).toBe('INTERNAL');
    expect(odd.message).toBe('GET /api/v1/clusters answered HTTP 502');
    expect(errorFromBody(403, {}, 'PATCH /x').code).toBe('PERMISSION_DENIED');
  });
});
